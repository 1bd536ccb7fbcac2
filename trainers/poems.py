"""Train the poem Transformer on the cached corpus (see trainers.poems_corpus).

    python -m trainers.poems --cache cache/poems --out runs/poems --steps 20000
    torchrun --nproc_per_node 2 -m trainers.poems ...        # DDP, unchanged
    python -m trainers.poems --dry-run                        # a few steps on a tiny synthetic corpus
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from genrt.contract import EOS_ID, PAD_ID, SOS_ID
from trainers.common import (
    DistInfo, changed_settings, config_dict, config_from_checkpoint, load_checkpoint, main_process_first,
    one_line_errors, parse_config, pick_device, save_checkpoint, seed_everything, setup_distributed,
    teardown_distributed,
)
from trainers.poems_corpus import load_corpus
from trainers.poems_model import PoemTransformerConfig, PoemTransformer



@dataclass
class PoemsConfig:
    cache: str = "cache/poems"
    out: str = "runs/poems"
    # the architecture's defaults have one home, PoemTransformerConfig; here they are only overridable
    d_model: int = PoemTransformerConfig.d_model
    num_heads: int = PoemTransformerConfig.num_heads
    num_encoder_layers: int = PoemTransformerConfig.num_encoder_layers
    num_decoder_layers: int = PoemTransformerConfig.num_decoder_layers
    dim_feedforward: int = PoemTransformerConfig.dim_feedforward
    dropout: float = PoemTransformerConfig.dropout
    max_len: int = PoemTransformerConfig.max_len
    tokens_per_batch: int = 4096   # target tokens per step and process (batches are length-bucketed)
    steps: int = 20000
    lr: float = 7e-4
    warmup: int = 400
    cooldown: int = 0              # the last N steps fall linearly to lr 0 (warm-up, inverse sqrt, cool-down); 0 = off
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    clip: float = 1.0
    eval_every: int = 500
    eval_batches: int = 40
    checkpoint_every: int = 200
    seed: int = 1234
    threads: int = 0
    amp: bool = False              # bf16 autocast
    device: str = "auto"
    max_minutes: float = 0.0       # stop (and checkpoint) after this much wall-clock training time; 0 = run all steps
    resume: bool = False
    init_from: str = ""            # weights-only checkpoint (save_weights) to warm-start from; fresh optimizer
    dry_run: bool = False

    def model_config(self, vocab_size: int) -> PoemTransformerConfig:
        return PoemTransformerConfig.of(vocab_size, self, self.dropout, PAD_ID)


# ---------------------------------------------------------------- batches

class PairSet:
    """One split of the corpus: packed source and target ids, sliced on demand."""

    def __init__(self, arrays: dict[str, np.ndarray], split: str, max_len: int):
        self.src, self.src_off = arrays[f"{split}_src"], arrays[f"{split}_src_offsets"]
        self.tgt, self.tgt_off = arrays[f"{split}_tgt"], arrays[f"{split}_tgt_offsets"]
        self.max_len = max_len
        self.tgt_lens = np.minimum(np.diff(self.tgt_off), max_len - 1) + 1  # with <sos> or <eos>

    def __len__(self) -> int:
        return len(self.src_off) - 1

    def collate(self, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        """-> src_ids (B, S), src_mask (B, S), tgt_in (B, N), tgt_out (B, N), pad = 0."""
        srcs = [self.src[self.src_off[i]:self.src_off[i + 1]][: self.max_len] for i in idx]
        tgts = [self.tgt[self.tgt_off[i]:self.tgt_off[i + 1]][: self.max_len - 1] for i in idx]
        s_len, t_len = max(map(len, srcs)), max(map(len, tgts)) + 1
        src = np.zeros((len(idx), s_len), np.int64)
        tin = np.zeros((len(idx), t_len), np.int64)
        tout = np.zeros((len(idx), t_len), np.int64)
        for r, (s, t) in enumerate(zip(srcs, tgts)):
            src[r, :len(s)] = s
            tin[r, 0], tin[r, 1:len(t) + 1] = SOS_ID, t
            tout[r, :len(t)], tout[r, len(t)] = t, EOS_ID
        src_t = torch.from_numpy(src)
        return src_t, (src_t != PAD_ID).float(), torch.from_numpy(tin), torch.from_numpy(tout)


def make_batches(lengths: np.ndarray, tokens_per_batch: int, seed: int) -> list[np.ndarray]:
    """Length-bucketed batches of about `tokens_per_batch` padded target tokens, in a seeded random order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    order = order[np.argsort(lengths[order], kind="stable")]  # shuffled within equal lengths
    batches, start = [], 0
    while start < len(order):
        size = max(1, tokens_per_batch // int(lengths[order[min(len(order) - 1, start + 63)]]))
        batches.append(order[start:start + size])
        start += size
    return [batches[i] for i in rng.permutation(len(batches))]


def first_batches(pairs: PairSet, tokens_per_batch: int, count: int) -> list[np.ndarray]:
    """The fixed batches a split is scored on: the first `count` of seed 0 (validation: the trainer's own)."""
    return make_batches(pairs.tgt_lens, tokens_per_batch, seed=0)[:count]


def saved_tokens_per_batch(state: dict) -> int:
    """The batch size a checkpoint was trained with (scoring it the same way)."""
    return (state.get("config") or {}).get("tokens_per_batch", PoemsConfig.tokens_per_batch)


class BatchSchedule:
    """Batch for a global step, a pure function of (seed, step, rank): resume replays the data order exactly."""

    def __init__(self, pairs: PairSet, tokens_per_batch: int, seed: int, dist_info: DistInfo):
        self.pairs, self.tpb, self.seed, self.dist = pairs, tokens_per_batch, seed, dist_info
        self._epoch, self._batches = -1, []
        self.steps_per_epoch = len(make_batches(pairs.tgt_lens, tokens_per_batch, seed)) // dist_info.world_size

    def indices(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, max(1, self.steps_per_epoch))
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, make_batches(self.pairs.tgt_lens, self.tpb, self.seed + epoch)
        return self._batches[i * self.dist.world_size + self.dist.rank]


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: PoemTransformer, pairs: PairSet, batches: list[np.ndarray], device: torch.device) -> dict:
    """NLL per character and perplexity, plus KL and JS divergence between the data's character distribution and
    the model's (mean predicted next-character distribution over the same positions), all over `batches`."""
    model.eval()
    vocab = model.config.vocab_size
    nll_sum, count = 0.0, 0
    data_counts = torch.zeros(vocab, dtype=torch.float64)
    model_mass = torch.zeros(vocab, dtype=torch.float64)
    for idx in batches:
        src, src_mask, tin, tout = (t.to(device) for t in pairs.collate(idx))
        logits = model(src, src_mask, tin).float()                        # (B, N, V)
        keep = tout != PAD_ID
        logp = F.log_softmax(logits[keep], dim=-1)                         # (K, V)
        nll_sum += F.nll_loss(logp, tout[keep], reduction="sum").item()
        count += int(keep.sum())
        data_counts += torch.bincount(tout[keep].cpu(), minlength=vocab).double()
        model_mass += logp.exp().sum(0).double().cpu()
    model.train()
    p, q = data_counts / count, model_mass / count
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> float:
        nz = a > 0
        return float((a[nz] * (a[nz].log() - b[nz].clamp_min(1e-12).log())).sum())

    nll = nll_sum / max(1, count)
    return {"nll": nll, "ppl": math.exp(min(nll, 50)), "kl": kl(p, q), "js": 0.5 * kl(p, m) + 0.5 * kl(q, m),
            "tokens": count}


# ---------------------------------------------------------------- training

def lr_at(cfg: PoemsConfig, step: int, restart: int = 0) -> float:
    """Linear warm-up, then inverse square-root decay. After a warm start at step `restart` (fresh Adam moments)
    the schedule goes on from there, ramped up again over `warmup` steps. With `cooldown`, the last `cooldown`
    steps before `steps` scale it linearly down to 0. `step` counts from 1."""
    step = max(1, step)
    ramp = min(1.0, (step - restart) / cfg.warmup) if restart else 1.0
    cool = min(1.0, (cfg.steps - step + 1) / cfg.cooldown) if cfg.cooldown else 1.0
    return cfg.lr * min(step / cfg.warmup, math.sqrt(cfg.warmup / step)) * ramp * cool


WEIGHTS_KIND = "poems-transformer-weights"


def save_weights(path: Path, model: PoemTransformer, vocab: list[str], config: dict, step: int, tokens_seen: int,
                 history: list[dict], dtype: torch.dtype = torch.bfloat16, corpus: dict | None = None) -> None:
    """A compact weights-only checkpoint (no optimizer state, bf16 by default): enough to export or warm-start."""
    state = {k: v.detach().to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_checkpoint(path, {"kind": WEIGHTS_KIND, "config": dict(config), "model_config": asdict(model.config),
                           "vocab": list(vocab), "step": step, "tokens_seen": tokens_seen, "history": history,
                           "corpus": corpus or {}, "model": state})


def compact_checkpoint(checkpoint: str | Path, out: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """A training checkpoint's weights-only copy (save_weights): its step, tokens and whole history kept, no
    optimizer state, bf16 by default; for --init-from on another machine."""
    model, vocab, state = load_model(checkpoint)
    save_weights(Path(out), model, vocab, state["config"], state["step"], state["tokens_seen"], state["history"],
                 dtype, state.get("corpus"))
    return Path(out)


def synthetic_cache(folder: Path, write: bool = True) -> Path:
    """A tiny corpus made on the spot, for --dry-run without the real data. Returns its cache directory;
    with write=False only the path (another rank writes it)."""
    from trainers.poems_corpus import CorpusConfig, build_corpus
    if not write:
        return folder / "cache"
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    import json
    lines = ["春眠不觉晓", "处处闻啼鸟", "夜来风雨声", "花落知多少", "床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"]
    poems = [{"title": f"春晓{i}", "id": f"p{i}",
              "paragraphs": [f"{lines[(i + k) % 8]}，{lines[(i + k + 1) % 8]}。" for k in range(0, 4, 2)]}
             for i in range(64)]
    (data / "poet.tang.0.json").write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    return build_corpus(CorpusConfig(data=str(data), cache=str(folder / "cache"), min_freq=1, val_percent=20))


def grow_vocab(state: dict, vocab: list[str], model: PoemTransformer, params: list[nn.Parameter]) -> dict:
    """Let a checkpoint resume on a corpus whose vocab extends its own (e.g. form tokens appended): the tied
    embedding gets the fresh model's rows for the new tokens, and Adam's moments for them start at zero."""
    old = list(state["vocab"])
    if old == list(vocab):
        return state
    if list(vocab[:len(old)]) != old:
        raise SystemExit(f"cannot resume: the corpus vocab ({len(vocab)} tokens) does not extend the checkpoint's "
                         f"({len(old)} tokens); rebuild the corpus with the same settings or start a new run")
    weight = state["model"]["embed.weight"]                                        # (V_old, d_model)
    fresh = model.embed.weight.detach()[len(old):].to(weight)                      # (V_new - V_old, d_model)
    state["model"]["embed.weight"] = torch.cat([weight, fresh])
    slot = next(i for i, p in enumerate(params) if p is model.embed.weight)
    for name, moment in state["optimizer"]["state"].get(slot, {}).items():
        if torch.is_tensor(moment) and moment.shape == weight.shape:
            state["optimizer"]["state"][slot][name] = torch.cat([moment, moment.new_zeros(fresh.shape)])
    state["vocab"] = list(vocab)
    print(f"vocab grown from {len(old)} to {len(vocab)} tokens: {', '.join(vocab[len(old):])}")
    return state


def check_config(cfg: PoemsConfig) -> None:
    for name in ("tokens_per_batch", "steps", "checkpoint_every", "eval_every", "eval_batches", "warmup"):
        if getattr(cfg, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.cooldown <= cfg.steps:
        raise SystemExit(f"--cooldown must be between 0 and --steps ({cfg.steps}), got {cfg.cooldown}")


@dataclass
class TrainState:
    """Everything a step changes: the model, its optimizer, the step reached, tokens seen, the eval history, and
    the step of the last warm start (`restart`, where the learning rate ramps up again)."""
    model: PoemTransformer
    opt: torch.optim.Optimizer
    params: list[nn.Parameter]          # in the optimizer's order (decay group, then no-decay group)
    step: int = 0
    tokens_seen: int = 0
    history: list[dict] = field(default_factory=list)
    restart: int = 0

    def checkpoint(self, cfg: PoemsConfig, vocab: list[str], corpus_stats: dict) -> dict:
        return {"config": config_dict(cfg), "model_config": asdict(self.model.config), "kind": "poems-transformer",
                "vocab": vocab, "corpus": corpus_stats, "step": self.step, "tokens_seen": self.tokens_seen,
                "history": self.history, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "restart": self.restart,
                # dropout masks: a resume on one process replays them exactly (on CUDA, from the device's stream)
                "torch_rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state_all()} if torch.cuda.is_initialized() else {})}


def build_state(cfg: PoemsConfig, vocab: list[str], device: torch.device, dist_info: DistInfo,
                ckpt_path: Path) -> TrainState:
    """A fresh model and AdamW, then --resume (everything) or --init-from (weights, fresh moments)."""
    model = PoemTransformer(cfg.model_config(len(vocab))).to(device)
    with_decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n and "pos" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n and "pos" not in n)]
    opt = torch.optim.AdamW([{"params": with_decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-9)
    state = TrainState(model, opt, [*with_decay, *no_decay])
    if cfg.resume and not ckpt_path.exists() and not cfg.init_from:
        raise SystemExit(f"--resume: no checkpoint at {ckpt_path}")
    if cfg.init_from and not (cfg.resume and ckpt_path.exists()):
        saved = load_checkpoint(cfg.init_from, device, expected_kind=(WEIGHTS_KIND, "poems-transformer"))
        if list(saved["vocab"]) != list(vocab):
            raise SystemExit(f"--init-from {cfg.init_from}: its vocab ({len(saved['vocab'])} tokens) differs from "
                             f"the corpus's ({len(vocab)}); build the corpus with the settings it was trained on")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved["model"].items()})
        state.step, state.tokens_seen, state.history = saved["step"], saved["tokens_seen"], list(saved["history"])
        state.restart = state.step
        if dist_info.is_main:
            print(f"warm start from {cfg.init_from} at step {state.step} ({state.tokens_seen / 1e6:.1f}M tokens seen)")
    elif cfg.resume and ckpt_path.exists():
        saved = grow_vocab(load_checkpoint(ckpt_path, device, expected_kind="poems-transformer"), vocab, model,
                           state.params)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state.step, state.tokens_seen, state.history = saved["step"], saved["tokens_seen"], saved["history"]
        state.restart = saved.get("restart", 0)
        if "torch_rng" in saved and dist_info.world_size == 1:
            torch.set_rng_state(saved["torch_rng"].cpu())
            if "cuda_rng" in saved and device.type == "cuda" and len(saved["cuda_rng"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([r.cpu() for r in saved["cuda_rng"]])
        elif dist_info.world_size > 1 and dist_info.is_main:
            print("resuming on several processes: dropout draws a fresh random stream (the data order is exact)")
        if dist_info.is_main:
            print(f"resumed from {ckpt_path} at step {state.step}")
            for line in changed_settings(saved.get("config") or {}, cfg, _PLACE_SETTINGS):
                print(line)
    return state


# where a run's files are and how it runs on this machine: changing them on resume changes nothing it learns
# where and how a run executes, not what it trains: a resume may change these freely
_PLACE_SETTINGS = {"cache", "out", "resume", "init_from", "dry_run", "threads", "device", "max_minutes"}


def train_step(state: TrainState, cfg: PoemsConfig, ddp_model: nn.Module, batch: tuple[torch.Tensor, ...],
               autocast, world_size: int) -> float:
    """One AdamW update at lr_at(step + 1). batch: src (B, S) int64, src_mask (B, S) bool, tgt_in and tgt_out
    (B, N) int64 (tgt_out is tgt_in shifted left, PAD_ID where ignored). Returns the loss."""
    src, src_mask, tgt_in, tgt_out = batch
    for group in state.opt.param_groups:
        group["lr"] = lr_at(cfg, state.step + 1, state.restart)
    with autocast:
        logits = ddp_model(src, src_mask, tgt_in)                                # (B, N, V)
    loss = F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID,
                           label_smoothing=cfg.label_smoothing)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.clip)
    state.opt.step()
    state.tokens_seen += int((tgt_out != PAD_ID).sum()) * world_size
    state.step += 1
    return loss.item()


def train(cfg: PoemsConfig) -> Path:
    check_config(cfg)
    dist_info = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if cfg.dry_run:
        with main_process_first(dist_info):
            cfg.cache = str(synthetic_cache(out / "dry_run", write=dist_info.is_main))
        cfg.steps, cfg.tokens_per_batch, cfg.eval_every, cfg.checkpoint_every = min(cfg.steps, 4), 256, 2, 2
        cfg.eval_batches = 2
    seed_everything(cfg.seed + dist_info.rank)
    device = pick_device(cfg.device, dist_info)
    arrays, vocab, corpus_stats = load_corpus(cfg.cache)
    train_pairs, val_pairs = PairSet(arrays, "train", cfg.max_len), PairSet(arrays, "val", cfg.max_len)
    val_batches = first_batches(val_pairs, cfg.tokens_per_batch, cfg.eval_batches)
    schedule = BatchSchedule(train_pairs, cfg.tokens_per_batch, cfg.seed, dist_info)
    ckpt_path = out / "checkpoint.pt"
    state = build_state(cfg, vocab, device, dist_info, ckpt_path)
    if dist_info.is_main:
        n_params = sum(p.numel() for p in state.model.parameters())
        print(f"poems: vocab {len(vocab)}, {len(train_pairs)} train pairs, {n_params / 1e6:.1f}M parameters, "
              f"{schedule.steps_per_epoch} steps/epoch")
    ddp_model = nn.parallel.DistributedDataParallel(state.model) if dist_info.world_size > 1 else state.model

    def save() -> None:
        if dist_info.is_main:
            save_checkpoint(ckpt_path, state.checkpoint(cfg, vocab, corpus_stats))

    def record_eval(loss: float | None) -> None:
        with autocast:
            metrics = evaluate(state.model, val_pairs, val_batches, device)
        state.history.append({"step": state.step, "tokens_seen": state.tokens_seen,
                              **({} if loss is None else {"train_loss": loss}), **metrics})
        if dist_info.is_main:
            tqdm.write(f"step {state.step}: val nll {metrics['nll']:.3f} ppl {metrics['ppl']:.1f} "
                       f"KL {metrics['kl']:.4f} JS {metrics['js']:.4f} ({state.tokens_seen / 1e6:.2f}M tokens seen)")

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp)
    start = state.step
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not dist_info.is_main,
               dynamic_ncols=True, desc="poems")
    t0, tokens_at_t0 = time.time(), state.tokens_seen
    for step in bar:
        batch = tuple(t.to(device) for t in train_pairs.collate(schedule.indices(step)))
        loss = train_step(state, cfg, ddp_model, batch, autocast, dist_info.world_size)
        done = state.step
        rate = (state.tokens_seen - tokens_at_t0) / max(1e-9, time.time() - t0)
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}",
                        lr=f"{lr_at(cfg, done, state.restart):.1e}")
        if done % cfg.eval_every == 0 or done == cfg.steps:
            record_eval(loss)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save()
        if cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes:   # resume goes on from here
            break
    if not state.history or state.history[-1]["step"] != state.step:  # `--resume --steps N` on a run stopped at N
        record_eval(None)
        save()
    elif not ckpt_path.exists():                                       # e.g. a warm start with no steps left
        save()
    teardown_distributed()
    return ckpt_path


def load_model(path: str | Path) -> tuple[PoemTransformer, list[str], dict]:
    """Rebuild the model from a checkpoint alone (config and vocab travel inside)."""
    state = load_checkpoint(path, expected_kind=("poems-transformer", WEIGHTS_KIND))
    if "model_config" in state:          # the network's own config, as saved with it
        model = PoemTransformer(PoemTransformerConfig(**state["model_config"]))
    else:                                # older checkpoints: rebuilt from the training config
        model = PoemTransformer(config_from_checkpoint(PoemsConfig, state).model_config(len(state["vocab"])))
    model.load_state_dict(state["model"])
    return model.eval(), state["vocab"], state


def main(argv: list[str] | None = None) -> None:
    with one_line_errors():
        train(parse_config(PoemsConfig, argv, description=__doc__))


if __name__ == "__main__":
    main()
