"""Poem checkpoint -> CTranslate2 Transformer model (benchmark baseline on the same weights), checked against torch.

    python -m export.ctranslate2 --checkpoint runs/poems/checkpoint.pt --out /tmp/poems_ct2 [--quantization int8]

Needs the optional `bench` extra (`pip install ctranslate2`). The model maps one to one onto CTranslate2's
TransformerSpec: pre-norm layers with final LayerNorms, exact (erf) GELU, learned positions from index 0 for
source and target, embeddings times sqrt(d_model), one embedding table shared by encoder, decoder and the tied
output projection (no bias), LayerNorm eps 1e-5. The source is exactly our ids (mode token + characters, no added
bos/eos); the target starts with <sos> and ends at <eos>.

Checks (raise ExportError when broken): per-token log-probabilities from `score_batch` vs torch, and greedy
tokens identical to genrt's greedy decoding of the torch model (TorchNoCacheModel + genrt.decoding.scheduler.decode_greedy) over random
prompts. Beam search (size 4) is compared and reported, not asserted: CTranslate2 stops a beam search once
`beam_size` hypotheses have finished and ranks them with its own length normalisation, so where scores are close
its pick may legitimately differ from genrt's. An int8 conversion is checked through an fp32 conversion of the same
spec (wiring), and its own agreement with torch is reported only (quantization changes the numbers).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Sequence

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: `decode_options` and the benchmarks need only ctranslate2
    import torch
    from trainers.poems_model import PoemTransformer

from export.model_dir import command_errors, require, staged_model_dir  # noqa: E402
from genrt.contract import EOS_ID, NEVER_GENERATED_SPECIAL_IDS, SOS_ID, UNK_ID  # noqa: E402

SUPPRESSED_IDS = NEVER_GENERATED_SPECIAL_IDS   # what genrt bans: <pad> <sos> <unk> <title> <first>
REPORT_NAME = "ct2_report.json"
MAX_LOGPROB_DIFF = 1e-3


def _np(t: torch.Tensor) -> np.ndarray:
    """A copy: CTranslate2's optimize() (quantization) rewrites arrays in place, which must not reach the model."""
    return t.detach().cpu().float().numpy().copy()


def _layer_norm(spec, ln: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _np(ln.weight), _np(ln.bias)


def _linear(spec, *linears: torch.nn.Linear) -> None:
    """One linear, or several fused along the output dimension (q|k|v, k|v)."""
    spec.weight = np.concatenate([_np(m.weight) for m in linears], axis=0)
    spec.bias = np.concatenate([_np(m.bias) for m in linears], axis=0)


def _self_attention(spec, attn, ln) -> None:
    _layer_norm(spec.layer_norm, ln)
    _linear(spec.linear[0], attn.q, attn.k, attn.v)
    _linear(spec.linear[1], attn.out)


def _cross_attention(spec, attn, ln) -> None:
    _layer_norm(spec.layer_norm, ln)
    _linear(spec.linear[0], attn.q)
    _linear(spec.linear[1], attn.k, attn.v)
    _linear(spec.linear[2], attn.out)


def _ffn(spec, ff, ln) -> None:
    _layer_norm(spec.layer_norm, ln)
    _linear(spec.linear_0, ff[0])   # Linear -> GELU -> Dropout -> Linear
    _linear(spec.linear_1, ff[3])


def build_spec(model: PoemTransformer, vocab: Sequence[str]):
    """The CTranslate2 TransformerSpec holding `model`'s weights (unoptimized, unquantized)."""
    import torch
    from ctranslate2.specs import Activation, TransformerSpec

    c = model.config
    gelu = model.encoder_layers[0].ff[1]
    require(isinstance(gelu, torch.nn.GELU) and gelu.approximate == "none", "expected exact (erf) GELU")
    require(len(vocab) == c.vocab_size and len(set(vocab)) == len(vocab), "vocab must be unique, one per id")
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    require(len(eps) == 1, f"CTranslate2 takes one LayerNorm epsilon, the model has {sorted(eps)}")
    spec = TransformerSpec.from_config((c.num_encoder_layers, c.num_decoder_layers), c.num_heads, pre_norm=True,
                                       activation=Activation.GELU)
    embed, pos = _np(model.embed.weight), _np(model.pos.weight)
    for side in (spec.encoder, spec.decoder):
        side.scale_embeddings = True                    # x = embed * sqrt(d_model) + pos[position], from 0
        side.position_encodings.encodings = pos
    spec.encoder.embeddings[0].weight = embed
    spec.decoder.embeddings.weight = embed
    spec.decoder.projection.weight = embed              # tied output projection, no bias
    _layer_norm(spec.encoder.layer_norm, model.enc_norm)
    _layer_norm(spec.decoder.layer_norm, model.dec_norm)
    for ls, layer in zip(spec.encoder.layer, model.encoder_layers):
        _self_attention(ls.self_attention, layer.attn, layer.ln1)
        _ffn(ls.ffn, layer.ff, layer.ln2)
    for ls, layer in zip(spec.decoder.layer, model.decoder_layers):
        _self_attention(ls.self_attention, layer.self_attn, layer.ln1)
        _cross_attention(ls.attention, layer.cross_attn, layer.ln2)
        _ffn(ls.ffn, layer.ff, layer.ln3)
    cfg = spec.config
    cfg.unk_token, cfg.bos_token, cfg.eos_token = vocab[UNK_ID], vocab[SOS_ID], vocab[EOS_ID]
    cfg.decoder_start_token = vocab[SOS_ID]
    cfg.add_source_bos = cfg.add_source_eos = False     # the source is exactly our ids
    cfg.layer_norm_epsilon = eps.pop()                  # 1e-5 (nn.LayerNorm default)
    spec.register_source_vocabulary(list(vocab))
    spec.register_target_vocabulary(list(vocab))
    return spec


def save_spec(spec, out_dir: Path, quantization: str | None) -> Path:
    """Validate, optimize (alias the shared embedding/position tables; quantize) and write into `out_dir` (a new
    or empty folder)."""
    spec.validate()
    spec.optimize(quantization=quantization)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    return out_dir


def decode_options(vocab: Sequence[str]) -> dict:
    """translate_batch options equal to genrt's SuppressTokens([<pad>, <sos>, <unk>, <title>, <first>])."""
    return {"disable_unk": True, "suppress_sequences": [[vocab[i]] for i in SUPPRESSED_IDS if i != UNK_ID]}


# ---------------------------------------------------------------- checks

def _torch_logprobs(model: PoemTransformer, src: list[int], tgt: list[int]) -> np.ndarray:
    """log P(tgt + <eos>) per position under teacher forcing with <sos> + tgt."""
    import torch
    s = torch.tensor([src])
    tin = torch.tensor([[SOS_ID] + tgt])
    with torch.no_grad():
        logp = torch.log_softmax(model(s, torch.ones_like(s, dtype=torch.float32), tin)[0].float(), dim=-1)
    return logp[torch.arange(len(tgt) + 1), torch.tensor(tgt + [EOS_ID])].numpy()


def _sum_logprob(model: PoemTransformer, src: list[int], tokens: list[int], finished: bool) -> float:
    """Torch sum of log-probs of a hypothesis (with the <eos> term only when it finished)."""
    lp = _torch_logprobs(model, src, tokens)
    return float(lp.sum() if finished else lp[:-1].sum())


def check_ctranslate2(model: PoemTransformer, vocab: Sequence[str], model_dir: Path, prompts: int = 20,
                      max_new: int = 24, num_beams: int = 4, beam: bool = True, threads: int = 1) -> dict:
    """Compare the CTranslate2 model at `model_dir` with genrt decoding of the torch model. Returns counts."""
    import ctranslate2
    from export.poems_reference import TorchNoCacheModel, random_sources
    from genrt.decoding.processors import SuppressTokens
    from genrt.decoding.scheduler import decode_beams, decode_greedy

    index = {t: i for i, t in enumerate(vocab)}
    translator = ctranslate2.Translator(str(model_dir), device="cpu", intra_threads=threads, inter_threads=1)
    sources = random_sources(len(vocab), prompts, seed=1)
    src_tokens = [[vocab[i] for i in s] for s in sources]
    ref = TorchNoCacheModel(model)
    suppress = [SuppressTokens(list(SUPPRESSED_IDS))]
    opts = decode_options(vocab)

    want_greedy = [decode_greedy(ref, s, SOS_ID, max_new, EOS_ID, suppress).tokens for s in sources]
    got = translator.translate_batch(src_tokens, beam_size=1, max_decoding_length=max_new, **opts)
    got_greedy = [[index[t] for t in r.hypotheses[0]] for r in got]
    greedy_same = [g == w for g, w in zip(got_greedy, want_greedy)]

    # per-token log-probs, CTranslate2 (score_batch, batched and padded) vs torch, of the reference outputs and of
    # random targets (greedy outputs of a random or barely trained model repeat one character)
    rng = np.random.default_rng(2)
    targets = want_greedy + [rng.integers(6, len(vocab), int(rng.integers(1, max_new))).tolist() for _ in sources]
    scored = translator.score_batch(src_tokens * 2, [[vocab[i] for i in t] for t in targets])
    logprob_diff = max(float(np.abs(np.asarray(r.log_probs) - _torch_logprobs(model, s, t)).max())
                       for r, s, t in zip(scored, sources * 2, targets))

    report = {"prompts": prompts, "max_new": max_new, "greedy_identical": int(sum(greedy_same)),
              "max_abs_logprob_diff": logprob_diff}
    if beam:
        got = translator.translate_batch(src_tokens, beam_size=num_beams, max_decoding_length=max_new,
                                         length_penalty=1.0, num_hypotheses=1, return_scores=True, **opts)
        same, differ = 0, []
        for s, r in zip(sources, got):
            want = decode_beams(ref, s, SOS_ID, num_beams, max_new, EOS_ID, suppress)[0]
            ct2 = [index[t] for t in r.hypotheses[0]]
            if ct2 == want.tokens:
                same += 1
                continue
            ct2_finished = len(ct2) < max_new
            differ.append({"source": s,
                           "genrt": {"len": len(want.tokens), "finished": want.finished,
                                     "logprob": _sum_logprob(model, s, want.tokens, want.finished)},
                           "ctranslate2": {"len": len(ct2), "finished": ct2_finished,
                                           "logprob": _sum_logprob(model, s, ct2, ct2_finished),
                                           "score": float(r.scores[0])}})
        report.update({"num_beams": num_beams, "beam_identical": same, "beam_differences": differ})
    return report


def convert_to_ctranslate2(checkpoint: str | Path, out_dir: str | Path, quantization: str | None = None,
                           check_prompts: int = 20, check_beam: bool = True, threads: int = 1,
                           force: bool = False) -> Path:
    """Write a CTranslate2 model directory for the poem checkpoint (`quantization` None = float32, or "int8") and
    its check report (ct2_report.json), checked in a temporary folder before it takes `out_dir`'s place (an
    existing non-empty `out_dir` only with `force`). Raises ExportError when the float32 model's greedy tokens or
    log-probabilities differ from torch."""
    if quantization not in (None, "float32", "int8"):
        raise ValueError(f"quantization must be None, 'float32' or 'int8', not {quantization!r}")
    from trainers.poems import load_model
    model, vocab, _ = load_model(checkpoint)
    with staged_model_dir(out_dir, force) as out:
        _convert_checked(model, vocab, out, quantization, check_prompts, check_beam, threads)
    return Path(out_dir)


def _convert_checked(model, vocab, out: Path, quantization: str | None, check_prompts: int, check_beam: bool,
                     threads: int) -> None:
    if quantization == "int8":
        with tempfile.TemporaryDirectory() as tmp:   # the wiring is checked on an fp32 twin, asserted
            fp32 = save_spec(build_spec(model, vocab), Path(tmp) / "fp32", None)
            report = {"fp32_check": _assert_ok(check_ctranslate2(model, vocab, fp32, check_prompts,
                                                                 beam=check_beam, threads=threads))}
        save_spec(build_spec(model, vocab), out, "int8")
        report["int8"] = check_ctranslate2(model, vocab, out, check_prompts, beam=check_beam, threads=threads)
    else:
        save_spec(build_spec(model, vocab), out, None)
        report = {"fp32": _assert_ok(check_ctranslate2(model, vocab, out, check_prompts, beam=check_beam,
                                                       threads=threads))}
    report["quantization"] = quantization or "float32"
    (out / REPORT_NAME).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def _assert_ok(report: dict) -> dict:
    require(report["max_abs_logprob_diff"] <= MAX_LOGPROB_DIFF,
            f"CTranslate2 log-probs differ from torch by {report['max_abs_logprob_diff']:.2e} (> {MAX_LOGPROB_DIFF})")
    require(report["greedy_identical"] == report["prompts"], f"CTranslate2 greedy tokens differ from torch: {report}")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="runs/poems/checkpoint.pt")
    parser.add_argument("--out", required=True, help="output CTranslate2 model directory")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quantization", choices=["float32", "int8"], default=None)
    parser.add_argument("--check-prompts", type=int, default=20)
    parser.add_argument("--no-beam-check", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    with command_errors():
        out = convert_to_ctranslate2(args.checkpoint, args.out, args.quantization, args.check_prompts,
                                     not args.no_beam_check, args.threads, args.force)
    print(f"wrote {out}: " + (out / REPORT_NAME).read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
