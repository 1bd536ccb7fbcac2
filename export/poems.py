"""Poem checkpoint -> encoder.onnx + decoder.onnx (KV cache) + manifest.json, checked against torch.

    python -m export.poems --checkpoint runs/poems/checkpoint.pt --out genrt/models/poems [--int8] \
        [--calibrate cache/poems]

Every attention block (encoder and decoder) is one onnxruntime fused MultiHeadAttention node (export/poems_fused.py;
genrt runs on onnxruntime only); `--plain-attention` writes them as standard ONNX ops instead, for other runtimes.
Checks: onnx.checker; graph I/O against genrt.contract; per-step decoder logits and log_norm vs torch (<= 1e-4) at
several batch sizes and cache lengths; greedy and beam outputs identical to torch decoding without a cache.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path
from typing import Sequence

import onnx
import torch
import torch.nn as nn

from export.model_dir import check_target, command_errors, portable_paths, require, staged_model_dir
from export.poem_extras import with_extras
from export.poem_invariance import declare_batch_invariance
from export.poems_fused import MHA_DOMAIN, insert_unused_inputs
from genrt.contract import GraphSpec, PoemsManifest, write_manifest
from genrt.graph_io import check_graph_io, session_io
from trainers.poems import load_model
from trainers.poems_model import PoemTransformer

OPSET = 17
POEMS_LICENCE = "chinese-poetry corpus (MIT licence)"


class EncoderGraph(nn.Module):
    def __init__(self, model: PoemTransformer):
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor, src_mask: torch.Tensor):
        return tuple(t for kv in self.model.encode(src_ids, src_mask) for t in kv)


class DecoderGraph(nn.Module):
    """Flat positional signature in the contract's input order: ids, positions, source mask, self mask, past K/V...,
    cross K/V..."""

    def __init__(self, model: PoemTransformer):
        super().__init__()
        self.model = model
        self.layers = model.config.num_decoder_layers

    def forward(self, input_ids, position_ids, src_mask, self_mask, *kv):
        past = [(kv[2 * i], kv[2 * i + 1]) for i in range(self.layers)]
        cross = [(kv[2 * (self.layers + i)], kv[2 * (self.layers + i) + 1]) for i in range(self.layers)]
        all_logits, present = self.model.decode(input_ids, position_ids, src_mask, past, cross, last_only=False,
                                                self_keep=self_mask)
        logits = all_logits[:, -1]                                                          # (B, V)
        # log-sum-exp through LogSoftmax: onnxruntime's ReduceLogSumExp is slower than numpy, its LogSoftmax is not
        log_norm = logits[:, 0] - torch.log_softmax(logits, dim=-1)[:, 0]                   # (B,)
        return (logits, *[t for kv_ in present for t in kv_], all_logits, log_norm)        # ..., (B, N, V), (B,)


def manifest_for(model: PoemTransformer, vocab: Sequence[str], state: dict, precision: str = "fp32"
                 ) -> PoemsManifest:
    c = model.config
    history = state.get("history") or []
    return PoemsManifest(
        vocab=tuple(vocab), **c.architecture(), precision=precision, scoring=True, log_norm=True,
        training=portable_paths({"steps": state.get("step"), "tokens_seen": state.get("tokens_seen"),
                                 "config": state.get("config"), "corpus": state.get("corpus")}),
        metrics=history[-1] if history else {}, data_licence=POEMS_LICENCE)


def dynamic_axes(spec: GraphSpec) -> dict[str, dict[int, str]]:
    return {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in spec.inputs + spec.outputs}


def example_inputs(model: PoemTransformer, batch: int = 2, src_len: int = 5, past_len: int = 3, new_len: int = 2):
    c = model.config
    g = torch.Generator().manual_seed(0)
    src = torch.randint(6, c.vocab_size, (batch, src_len), generator=g)
    mask = torch.ones(batch, src_len)
    mask[0, -1] = 0.0
    cross = [t for kv in model.encode(src, mask) for t in kv]
    dh = c.d_model // c.num_heads
    past = [torch.randn(batch, c.num_heads, past_len, dh, generator=g) for _ in range(2 * c.num_decoder_layers)]
    ids = torch.randint(6, c.vocab_size, (batch, new_len), generator=g)
    pos = torch.arange(past_len, past_len + new_len).expand(batch, new_len).contiguous()
    self_mask = torch.ones(batch, past_len + new_len)
    self_mask[0, past_len - 1] = 0.0                     # a slot row 0 has not filled
    return (src, mask), (ids, pos, mask, self_mask, *past, *cross)


def export_graph(module: nn.Module, args: tuple, spec: GraphSpec, path: Path, contrib_ops: bool = False) -> None:
    torch.onnx.export(module, args, str(path), input_names=[t.name for t in spec.inputs],
                      output_names=[t.name for t in spec.outputs], dynamic_axes=dynamic_axes(spec),
                      opset_version=OPSET, do_constant_folding=True, dynamo=False,
                      custom_opsets={MHA_DOMAIN: 1} if contrib_ops else None)
    model = onnx.load(str(path))
    if contrib_ops and insert_unused_inputs(model):
        onnx.save(model, str(path))
    onnx.checker.check_model(model)


def calibrate(model: PoemTransformer, vocab: Sequence[str], state: dict, cache: str | Path, batches: int) -> dict:
    """Fit the logit temperature on `batches` batches of the corpus's *training* pairs and fold it into `model`
    (trainers.poems_calibration). -> what the manifest records of it."""
    from trainers.poems import PairSet, first_batches, saved_tokens_per_batch
    from trainers.poems_calibration import fit_temperature, fold_temperature
    from trainers.poems_corpus import load_corpus
    arrays, corpus_vocab, _ = load_corpus(cache)
    require(list(corpus_vocab) == list(vocab), f"--calibrate {cache}: the corpus vocabulary differs from the model's")
    pairs = PairSet(arrays, "train", model.config.max_len)
    temperature, nll = fit_temperature(model, pairs, first_batches(pairs, saved_tokens_per_batch(state), batches))
    fold_temperature(model, temperature)
    return {"temperature": temperature, "fitted_on": f"{batches} batches of training pairs",
            "train_nll_uncalibrated": nll[1.0], "train_nll_at_best_grid_temperature": min(nll.values())}


def export_poems(checkpoint: str | Path, out_dir: str | Path, check_prompts: int = 20,
                 fused_attention: bool = True, force: bool = False, calibrate_on: str | Path | None = None,
                 calibration_batches: int = 40) -> Path:
    """Both graphs, the manifest and the export report, written and checked in a temporary directory that is
    renamed to `out_dir` only when every check passed. A non-empty `out_dir` is refused unless `force`.
    `calibrate_on` (a corpus cache): fold a logit temperature fitted on its training pairs into the model first;
    the checks then hold the graphs to the calibrated model."""
    final_dir = check_target(out_dir, force)
    model, vocab, state = load_model(checkpoint)
    calibration = calibrate(model, vocab, state, calibrate_on, calibration_batches) if calibrate_on else None
    lean = copy.deepcopy(model).fold_for_inference()   # the graphs; `model` stays the untouched reference
    manifest = manifest_for(model, vocab, state)
    if calibration:
        manifest = dataclasses.replace(manifest, training={**manifest.training, "calibration": calibration})
    enc_args, dec_args = example_inputs(lean)
    decoder = DecoderGraph(lean.use_fused_attention() if fused_attention else lean)
    with staged_model_dir(final_dir, force) as out:
        with torch.no_grad():
            export_graph(EncoderGraph(lean), enc_args, manifest.encoder(), out / manifest.encoder_file,
                         fused_attention)
            export_graph(decoder, dec_args, manifest.decoder(), out / manifest.decoder_file, fused_attention)
        manifest = with_extras(out, manifest)
        write_manifest(out, manifest)
        report = {"attention": "fused" if fused_attention else "plain",
                  **check_export(model, out, manifest, check_prompts),
                  "batch_invariant": declare_batch_invariance(out)}
        (out / "export_report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return final_dir


# ---------------------------------------------------------------- checks

def check_export(model: PoemTransformer, out: Path, manifest: PoemsManifest, prompts: int) -> dict:
    """Contract I/O, step-logit parity and identical greedy/beam tokens. Raises ExportError on failure."""
    from genrt.poems.model import PoemModel
    from export.poems_reference import TorchNoCacheModel, compare_decoding, step_logit_parity

    onnx_model = PoemModel.load(out, provider="cpu")
    for spec, sess in ((manifest.encoder(), onnx_model.encoder), (manifest.decoder(), onnx_model.decoder)):
        problems = check_graph_io(spec, *session_io(sess))
        require(not problems, f"{spec.file} breaks the contract: {'; '.join(problems)}")
    max_diff = step_logit_parity(model, onnx_model)
    require(max_diff <= 1e-4, f"decoder logits differ from torch by {max_diff:.2e} (> 1e-4)")
    agreement = compare_decoding(TorchNoCacheModel(model), onnx_model, prompts)
    require(agreement["greedy_identical"] == agreement["prompts"], f"greedy tokens differ from torch: {agreement}")
    require(agreement["beam_identical"] == agreement["prompts"], f"beam tokens differ from torch: {agreement}")
    return {"max_abs_logit_diff": max_diff, **agreement}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="runs/poems/checkpoint.pt")
    parser.add_argument("--out", required=True, help="model directory to write (e.g. genrt/models/poems)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out (and <out>_int8)")
    parser.add_argument("--check-prompts", type=int, default=20)
    parser.add_argument("--plain-attention", action="store_true",
                        help="standard ONNX ops for attention instead of onnxruntime's fused MultiHeadAttention")
    parser.add_argument("--int8", action="store_true", help="also write <out>_int8 with per-row int8 MatMuls (export/quantize.py)")
    parser.add_argument("--calibrate", metavar="CACHE", default=None,
                        help="fold a logit temperature fitted on this corpus cache's training pairs into the model "
                             "(trainers/poems_calibration.py)")
    parser.add_argument("--calibration-batches", type=int, default=40)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with command_errors():
        if args.int8:
            check_target(str(Path(args.out)) + "_int8", args.force)
        out = export_poems(args.checkpoint, args.out, args.check_prompts, fused_attention=not args.plain_attention,
                           force=args.force, calibrate_on=args.calibrate, calibration_batches=args.calibration_batches)
        print(f"wrote {out}: " + (out / "export_report.json").read_text(encoding="utf-8"))
        if args.int8:
            from export.quantize import quantize_poems
            print(f"wrote {quantize_poems(out, Path(str(out) + '_int8'), force=args.force)}")


if __name__ == "__main__":
    main()
