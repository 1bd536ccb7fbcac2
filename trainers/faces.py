"""DCGAN on aligned CelebA at 64x64, in the spirit of pytorch/examples dcgan.

    python -m trainers.faces --data ../shared/data/celeba --out runs/faces --steps 20000
    torchrun --nproc_per_node 2 -m trainers.faces ...      # DDP, unchanged
    python -m trainers.faces --dry-run                      # a few steps on a handful of images
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from trainers.common import (
    DistInfo, changed_settings, config_dict, config_from_checkpoint, load_checkpoint, one_line_errors, parse_config,
    pick_device, save_checkpoint, seed_everything, setup_distributed, teardown_distributed, unwrap,
)
from trainers.diffaugment import diff_augment, parse_policy
from trainers.faces_model import Discriminator, Generator, init_weights, recalibrate_batchnorm, update_ema

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class FacesConfig:
    data: str = "../shared/data/celeba"
    out: str = "runs/faces"
    image_size: int = 64
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    batch_size: int = 64          # per process
    steps: int = 20000
    lr: float = 2e-4
    lr_decay_start: int = 0       # from this step on, both learning rates fall linearly to 0 at `steps`; 0 = constant
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 1234
    max_images: int = 0           # 0 = all (before the held-out split)
    holdout: int = 1000           # the last N images by name never train: benchmarks.faces_swd scores against them
    ema_decay: float = 0.999      # exponential moving average of G's weights (what export uses); 0 = off
    augment: str = "color,translation,cutout"   # DiffAugment policy for every image D sees; "" = off
    d_batch: str = "separate"     # "joint": real and fake go through D as one batch, so D's BatchNorm statistics mix
                                  # both and D sees a fake batch's contrast and spread against the real one;
                                  # "separate": one batch each (pytorch/examples), blind to batch-level statistics
    moment_match: float = 0.0     # weight of a G loss term pulling the fake batch's per-channel mean and std toward the
                                  # training set's (squared error, summed over 2x3 moments); 0 = off
    r1: float = 0.0               # gamma of an R1 penalty on D (gamma/2 * E|grad_x D(x)|^2 on the real faces as D sees
                                  # them; Mescheder et al. 2018), which keeps D smooth around the data; 0 = off
    r1_every: int = 16            # lazy regularisation (StyleGAN2): the penalty every N steps, scaled by N
    snapshot_every: int = 1000    # write the EMA generator to snapshots/ every N steps (for SWD vs steps); 0 = off
    sample_every: int = 0         # 0 = once per epoch
    checkpoint_every: int = 250
    threads: int = 0              # 0 = leave torch's default
    amp: bool = False             # bf16 autocast (CPU with AVX512-BF16, or CUDA)
    device: str = "auto"
    max_minutes: float = 0.0      # stop (and checkpoint) after this much wall-clock training time; 0 = run all steps
    resume: bool = False
    init_from: str = ""           # weights-only checkpoint (save_weights) to warm-start from; fresh optimizers
    dry_run: bool = False


# ---------------------------------------------------------------- data

def load_face(path: Path, size: int) -> np.ndarray:
    """Centre-crop to a square, resize with Lanczos. Returns (size, size, 3) uint8."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8)


def face_paths(folder: str | Path, split: str = "train", holdout: int = 1000, limit: int = 0) -> list[Path]:
    """Image files of a folder sorted by name; split "train" drops the last `holdout`, "holdout" keeps only them."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if limit:
        paths = paths[:limit]
    if split not in ("train", "holdout", "all"):
        raise ValueError(f"split must be train, holdout or all, not {split!r}")
    if split == "all" or holdout <= 0:
        return paths
    if holdout >= len(paths):
        raise SystemExit(f"{folder}: {len(paths)} images, too few to hold {holdout} out")
    return paths[:-holdout] if split == "train" else paths[-holdout:]


def load_faces(folder: str | Path, size: int, limit: int = 0, split: str = "all",
               holdout: int = 1000) -> tuple[torch.Tensor, int]:
    """One split of a folder's images as one uint8 tensor (N, 3, size, size); unreadable files are skipped and
    counted."""
    paths = face_paths(folder, split, holdout, limit)
    images, skipped = [], 0
    for p in paths:
        try:
            images.append(load_face(p, size))
        except (OSError, UnidentifiedImageError, ValueError):
            skipped += 1
    if not images:
        raise SystemExit(f"no readable images in {folder} ({skipped} unreadable)")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), skipped


def to_unit_range(batch_u8: torch.Tensor) -> torch.Tensor:
    return batch_u8.float().div_(127.5).sub_(1.0)  # (B, 3, H, W) in [-1, 1]


def channel_moments(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (2, 3) float32: per-channel mean (row 0) and std (row 1) over batch and pixels."""
    x = images.float()
    return torch.stack([x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))])


def dataset_moments(data_u8: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Per-channel mean and std (2, 3) of a whole uint8 image set (N, 3, H, W) in the [-1, 1] scale, in chunks."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for i in range(0, len(data_u8), chunk):
        x = to_unit_range(data_u8[i:i + chunk]).double()
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = data_u8.numel() // 3
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).mul(count / max(1, count - 1)).sqrt()
    return torch.stack([mean, std]).float()


# ---------------------------------------------------------------- models

def build_generator(cfg: FacesConfig) -> Generator:
    return Generator(cfg.nz, cfg.ngf)


def exported_generator(G_ema: nn.Module, cfg: "FacesConfig") -> nn.Module:
    """A copy of the EMA generator with its own BatchNorm statistics, in eval mode: what snapshots and export use."""
    return recalibrate_batchnorm(copy.deepcopy(G_ema), cfg.nz, cfg.seed + 17)


# ---------------------------------------------------------------- training

def save_sample_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """images (N, 3, H, W) in [-1, 1] -> one PNG grid."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    n, h, w, _ = x.shape
    rows = (n + nrow - 1) // nrow
    grid = np.zeros((rows * h, nrow * w, 3), np.uint8)
    for i, img in enumerate(x):
        r, c = divmod(i, nrow)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def step_generator(cfg: FacesConfig, step: int, rank: int) -> torch.Generator:
    """Randomness of one step depends only on (seed, step, rank): resuming replays it exactly."""
    return torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + rank)


def epoch_order(cfg: FacesConfig, epoch: int, n: int, dist_info: DistInfo) -> torch.Tensor:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 7919 * epoch))
    return perm[dist_info.rank::dist_info.world_size]


def batch_at(cfg: FacesConfig, data_u8: torch.Tensor, step: int, dist_info: DistInfo) -> torch.Tensor:
    per_rank = len(data_u8) // dist_info.world_size
    steps_per_epoch = max(1, per_rank // cfg.batch_size)
    epoch, index = divmod(step, steps_per_epoch)
    order = epoch_order(cfg, epoch, len(data_u8), dist_info)
    batch = data_u8[order[index * cfg.batch_size:(index + 1) * cfg.batch_size]]
    flip = torch.rand(len(batch), generator=step_generator(cfg, step, dist_info.rank)) < 0.5
    batch[flip] = batch[flip].flip(-1)  # horizontal flip augmentation
    return to_unit_range(batch)


def lr_at(cfg: FacesConfig, step: int) -> float:
    """Learning rate of step `step` (0-based): constant, then linear to 0 at cfg.steps from cfg.lr_decay_start."""
    if not cfg.lr_decay_start or step < cfg.lr_decay_start:
        return cfg.lr
    return cfg.lr * max(0.0, (cfg.steps - step) / max(1, cfg.steps - cfg.lr_decay_start))


def check_config(cfg: FacesConfig) -> None:
    for name in ("batch_size", "steps", "checkpoint_every"):
        if getattr(cfg, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.d_batch not in D_BATCH_MODES:
        raise SystemExit(f"--d-batch must be one of {', '.join(D_BATCH_MODES)}, got {cfg.d_batch!r}")
    if cfg.moment_match < 0:
        raise SystemExit(f"--moment-match must be >= 0, got {cfg.moment_match}")
    if cfg.r1 < 0:
        raise SystemExit(f"--r1 must be >= 0, got {cfg.r1}")
    if cfg.r1_every < 1:
        raise SystemExit(f"--r1-every must be >= 1, got {cfg.r1_every}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise SystemExit(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.lr_decay_start < 0 or (cfg.lr_decay_start and cfg.lr_decay_start >= cfg.steps):
        raise SystemExit(f"--lr-decay-start must be 0 (off) or below --steps ({cfg.steps}), got {cfg.lr_decay_start}")


D_BATCH_MODES = ("separate", "joint")
# where and how a run executes, not what it trains: a resume may change these freely
PLACE_SETTINGS = {"data", "out", "resume", "init_from", "dry_run", "threads", "device", "max_minutes",
                  "checkpoint_every", "sample_every", "snapshot_every"}


def discriminate(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, policy, aug_gen: torch.Generator,
                 joint: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """D's logits for real (B, 3, H, W) and fake (B', 3, H, W), each seen through DiffAugment: in one call when
    `joint` (BatchNorm statistics over both), else one call each. -> (logits_real (B,), logits_fake (B',)) float32."""
    if joint:
        logits = D(diff_augment(torch.cat([real, fake]), policy, aug_gen)).float()
        return logits[:len(real)], logits[len(real):]
    return (D(diff_augment(real, policy, aug_gen)).float(), D(diff_augment(fake, policy, aug_gen)).float())


def r1_penalty(D: nn.Module, real: torch.Tensor, policy, aug_gen: torch.Generator) -> torch.Tensor:
    """E |grad_x D(aug(x))|^2 over real (B, 3, H, W): the squared norm of D's input gradient at the real faces,
    through the same DiffAugment draws D trains on -> scalar, differentiable in D's weights."""
    real = real.detach().float().requires_grad_(True)
    logits = D(diff_augment(real, policy, aug_gen)).float()
    grad, = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


@dataclass
class TrainState:
    """Everything a step changes: the two networks, G's moving average, both optimizers, the step reached."""
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0

    def checkpoint(self, cfg: FacesConfig) -> dict:
        return {"config": config_dict(cfg), "step": self.step, "kind": "faces-dcgan",
                "generator": unwrap(self.G).state_dict(), "generator_ema": self.G_ema.state_dict(),
                "discriminator": unwrap(self.D).state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}


def build_state(cfg: FacesConfig, device: torch.device, dist_info: DistInfo, ckpt_path: Path) -> TrainState:
    """Fresh DCGAN-initialised networks, then --resume (everything) or --init-from (weights, fresh Adam)."""
    G, D = build_generator(cfg).to(device), Discriminator(cfg.ndf).to(device)
    G.apply(init_weights)
    D.apply(init_weights)
    state = TrainState(G, D, copy.deepcopy(G).eval().requires_grad_(False),
                       torch.optim.Adam(G.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2)),
                       torch.optim.Adam(D.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2)))
    if cfg.resume and not ckpt_path.exists():
        raise SystemExit(f"--resume: no checkpoint at {ckpt_path}")
    if cfg.resume:
        saved = load_checkpoint(ckpt_path, device, expected_kind="faces-dcgan")
        G.load_state_dict(saved["generator"])
        state.G_ema.load_state_dict(saved.get("generator_ema", saved["generator"]))
        D.load_state_dict(saved["discriminator"])
        state.opt_g.load_state_dict(saved["opt_g"])
        state.opt_d.load_state_dict(saved["opt_d"])
        state.step = saved["step"]
        if dist_info.is_main:
            print(f"resumed from {ckpt_path} at step {state.step}")
            for line in changed_settings(saved.get("config") or {}, cfg, PLACE_SETTINGS):
                print(line)
    elif cfg.init_from:
        saved = load_checkpoint(cfg.init_from, device, expected_kind=WEIGHTS_KIND)
        for module, key in ((G, "generator"), (state.G_ema, "generator_ema"), (D, "discriminator")):
            module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved[key].items()})
        state.step = saved["step"]
        if dist_info.is_main:
            print(f"warm start from {cfg.init_from} at step {state.step} (fresh Adam moments)")
    if dist_info.world_size > 1:
        state.G = nn.parallel.DistributedDataParallel(G)
        state.D = nn.parallel.DistributedDataParallel(D)
    if device.type == "cpu":
        state.G, state.D = state.G.to(memory_format=torch.channels_last), state.D.to(memory_format=torch.channels_last)
    return state


def train_step(state: TrainState, cfg: FacesConfig, real: torch.Tensor, noise: torch.Tensor,
               policy: list[str], aug_gen: torch.Generator, autocast,
               target_moments: torch.Tensor | None = None) -> dict[str, float]:
    """One D update then one G update at lr_at(step). real (B, 3, 64, 64) in [-1, 1], noise (B, nz, 1, 1);
    target_moments (2, 3): the training set's channel_moments, pulled on by cfg.moment_match."""
    for opt in (state.opt_g, state.opt_d):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, state.step)
    G, D = state.G, state.D
    joint = cfg.d_batch == "joint"
    # (1) Update D: maximise log D(x) + log(1 - D(G(z))), both seen through the same kind of augmentation
    with autocast:
        fake = G(noise)
        logit_real, logit_fake = discriminate(D, real, fake.detach(), policy, aug_gen, joint)
    loss_d = (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
              + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    stats = {}
    if cfg.r1 and state.step % cfg.r1_every == 0:
        # in float32 and outside autocast: a gradient penalty differentiates twice, bf16 would swamp it
        penalty = r1_penalty(D, real, policy, aug_gen)
        (cfg.r1 / 2 * cfg.r1_every * penalty).backward()
        stats["r1"] = penalty.item()
    state.opt_d.step()

    # (2) Update G: maximise log D(G(z)) (joint: judged in a batch with real faces, as D was trained)
    with autocast:
        if joint:
            _, logit_gen = discriminate(D, real, fake, policy, aug_gen, joint)
        else:
            logit_gen = D(diff_augment(fake, policy, aug_gen)).float()
    loss_g = F.binary_cross_entropy_with_logits(logit_gen, torch.ones_like(logit_gen))
    if cfg.moment_match and target_moments is not None:
        gap = channel_moments(fake) - target_moments                                      # (2, 3)
        loss_g = loss_g + cfg.moment_match * gap.square().sum()
        stats["std_gap"] = gap[1].mean().item()
    state.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.opt_g.step()
    update_ema(state.G_ema, unwrap(G), cfg.ema_decay)
    state.step += 1
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
            "D_x": torch.sigmoid(logit_real).mean().item(), "D_G_z": torch.sigmoid(logit_fake).mean().item(), **stats}


def train(cfg: FacesConfig) -> Path:
    dist_info = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.dry_run:
        cfg.steps, cfg.max_images, cfg.batch_size = min(cfg.steps, 3), cfg.max_images or 16, min(cfg.batch_size, 8)
        cfg.checkpoint_every = cfg.sample_every = 2
    seed_everything(cfg.seed + dist_info.rank)
    device = pick_device(cfg.device, dist_info)
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"

    policy = parse_policy(cfg.augment)
    check_config(cfg)
    data_u8, skipped = load_faces(cfg.data, cfg.image_size, cfg.max_images, "train",
                                  0 if cfg.dry_run else cfg.holdout)
    if dist_info.is_main:
        print(f"faces: {len(data_u8)} training images from {cfg.data} ({skipped} unreadable, skipped); "
              f"last {0 if cfg.dry_run else cfg.holdout} by name held out; augment {','.join(policy) or 'off'}; "
              f"EMA {cfg.ema_decay or 'off'}; D batches {cfg.d_batch}"
              + (f"; moment match {cfg.moment_match}" if cfg.moment_match else "")
              + (f"; R1 {cfg.r1} every {cfg.r1_every} steps" if cfg.r1 else ""))
    state = build_state(cfg, device, dist_info, ckpt_path)
    start = state.step
    target_moments = dataset_moments(data_u8).to(device) if cfg.moment_match else None  # (2, 3)

    fixed_noise = torch.randn(64, cfg.nz, 1, 1, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    steps_per_epoch = max(1, len(data_u8) // dist_info.world_size // cfg.batch_size)
    sample_every = cfg.sample_every or steps_per_epoch
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not dist_info.is_main,
               dynamic_ncols=True, desc="faces")
    t0 = time.time()
    for step in bar:
        real = batch_at(cfg, data_u8, step, dist_info).to(device)                        # (B, 3, 64, 64)
        noise = torch.randn(len(real), cfg.nz, 1, 1,                                       # (B, nz, 1, 1)
                            generator=step_generator(cfg, step + 10**9, dist_info.rank)).to(device)
        if device.type == "cpu":
            real = real.contiguous(memory_format=torch.channels_last)
        aug_gen = step_generator(cfg, step + 2 * 10**9, dist_info.rank)   # DiffAugment draws, replayed on resume
        stats = train_step(state, cfg, real, noise, policy, aug_gen, autocast, target_moments)
        bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items()}, lr=f"{lr_at(cfg, step):.1e}")

        done = state.step
        if dist_info.is_main and (done % sample_every == 0 or done == cfg.steps):
            with torch.no_grad():   # the EMA copy, not the DDP wrapper (its forward would wait for other ranks)
                save_sample_grid(exported_generator(state.G_ema, cfg)(fixed_noise),
                                 out / "samples" / f"step_{done:06d}.png")
        if dist_info.is_main and cfg.snapshot_every and (done % cfg.snapshot_every == 0 or done == cfg.steps):
            save_checkpoint(out / "snapshots" / f"step_{done:06d}.pt", {   # the EMA generator alone, for SWD
                "config": config_dict(cfg), "step": done, "kind": "faces-dcgan",
                "generator": exported_generator(state.G_ema, cfg).state_dict()})
        out_of_time = cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes
        if dist_info.is_main and (done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time):
            save_checkpoint(ckpt_path, state.checkpoint(cfg))
        if out_of_time:                                    # resume goes on from here (--resume)
            break
    if dist_info.is_main:
        print(f"faces: {state.step - start} steps in {time.time() - t0:.0f}s; checkpoint {ckpt_path}")
    teardown_distributed()
    return ckpt_path


WEIGHTS_KIND = "faces-dcgan-weights"


def save_weights(checkpoint: str | Path, out: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """A compact copy of a training checkpoint: G, EMA G and D in fp16, no optimizer state (for --init-from). Its
    config records paths as a manifest does (export.model_dir.portable_paths): the file is committed."""
    from export.model_dir import portable_paths
    state = load_checkpoint(checkpoint, expected_kind="faces-dcgan")
    half = {key: {k: v.to(dtype) if v.is_floating_point() else v for k, v in state[key].items()}
            for key in ("generator", "generator_ema", "discriminator")}
    save_checkpoint(Path(out), {"kind": WEIGHTS_KIND, "config": portable_paths(state["config"]), "step": state["step"],
                                **half})
    return Path(out)


def load_generator(path: str | Path) -> tuple[Generator, FacesConfig, dict]:
    """Rebuild the generator from a checkpoint alone (its config travels inside)."""
    state = load_checkpoint(path, expected_kind="faces-dcgan")
    cfg = config_from_checkpoint(FacesConfig, state)
    G = build_generator(cfg)
    if "generator_ema" in state:  # a training checkpoint: export the EMA weights with their own statistics
        G.load_state_dict(state["generator_ema"])
        return exported_generator(G, cfg), cfg, state
    G.load_state_dict(state["generator"])
    return G.eval(), cfg, state


def load_discriminator(path: str | Path) -> Discriminator | None:
    """The checkpoint's discriminator in eval mode, or None when it holds none (a generator-only file)."""
    state = load_checkpoint(path, expected_kind="faces-dcgan")
    if "discriminator" not in state:
        return None
    D = Discriminator(config_from_checkpoint(FacesConfig, state).ndf)
    D.load_state_dict({k: v.float() for k, v in state["discriminator"].items()})
    return D.eval()


def main(argv: list[str] | None = None) -> None:
    with one_line_errors():
        train(parse_config(FacesConfig, argv, description=__doc__))


if __name__ == "__main__":
    main()
