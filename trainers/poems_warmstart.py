"""Recover the torch weights of an exported fp32 poem model directory, as a weights-only checkpoint.

    python -m trainers.poems_warmstart --model genrt/models/poems --out runs/poems_init.pt

The exported graphs hold every parameter: named initializers for biases/norms/embeddings, anonymous MatMul
weights (stored transposed, in the order the model applies them) and attention scales folded into the query
weights (`Attention.fold_for_inference`). This undoes both, rebuilds `PoemTransformer` and checks it against the
ONNX decoder with the KV cache (logits within 1e-3) before writing anything, so a wrong mapping never trains.
A directory exported with `--calibrate` has its logit temperature taken back out, so the result is the weights as
trained. The result feeds `python -m trainers.poems --init-from`.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from genrt.contract import read_manifest
from trainers.poems_model import PoemTransformerConfig, PoemTransformer

PREFIX = "model."


def _initializers(path: Path) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """-> named initializers, and anonymous MatMul weights in graph order (each (in, out))."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(str(path)).graph
    named, by_name = {}, {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for name, value in by_name.items():
        if name.startswith(PREFIX):
            named[name[len(PREFIX):]] = value
    anonymous = []
    for node in graph.node:
        for name in node.input:
            if name in by_name and not name.startswith(PREFIX) and by_name[name].ndim == 2 \
                    and not any(a is by_name[name] for a in anonymous):
                anonymous.append(by_name[name])
    return named, anonymous


def state_from_model_dir(model_dir: Path) -> tuple[dict[str, torch.Tensor], PoemTransformerConfig, list[str], dict]:
    manifest = read_manifest(model_dir)
    if manifest.precision != "fp32":
        raise SystemExit(f"{model_dir}: warm start needs the fp32 model directory, not {manifest.precision}")
    cfg = PoemTransformerConfig.of(len(manifest.vocab), manifest, pad_id=manifest.pad_id)
    enc_named, enc_mats = _initializers(model_dir / manifest.encoder_file)
    dec_named, dec_mats = _initializers(model_dir / manifest.decoder_file)
    d, unscale = cfg.d_model, math.sqrt(cfg.d_model // cfg.num_heads)
    state: dict[str, np.ndarray] = {**enc_named, **dec_named}
    enc_mats, dec_mats = list(enc_mats), list(dec_mats)

    def put_linear(name: str, weight_in_out: np.ndarray) -> None:
        state[f"{name}.weight"] = weight_in_out.T

    def put_qkv(prefix: str, qkv_in_out: np.ndarray) -> None:
        bias = state.pop(f"{prefix}.qkv.bias")
        w = qkv_in_out.T                                                               # (3D, D)
        for part, sl in (("q", slice(0, d)), ("k", slice(d, 2 * d)), ("v", slice(2 * d, 3 * d))):
            scale = unscale if part == "q" else 1.0
            state[f"{prefix}.{part}.weight"], state[f"{prefix}.{part}.bias"] = w[sl] * scale, bias[sl] * scale

    for i in range(cfg.num_encoder_layers):
        p = f"encoder_layers.{i}"
        put_qkv(f"{p}.attn", enc_mats.pop(0))
        for name in ("attn.out", "ff.0", "ff.3"):
            put_linear(f"{p}.{name}", enc_mats.pop(0))
    for i in range(cfg.num_decoder_layers):
        put_linear(f"decoder_layers.{i}.cross_attn.k", enc_mats.pop(0))
        put_linear(f"decoder_layers.{i}.cross_attn.v", enc_mats.pop(0))
    for i in range(cfg.num_decoder_layers):
        p = f"decoder_layers.{i}"
        put_qkv(f"{p}.self_attn", dec_mats.pop(0))
        put_linear(f"{p}.self_attn.out", dec_mats.pop(0))
        put_linear(f"{p}.cross_attn.q", dec_mats.pop(0))
        state[f"{p}.cross_attn.q.weight"] = state[f"{p}.cross_attn.q.weight"] * unscale
        state[f"{p}.cross_attn.q.bias"] = state[f"{p}.cross_attn.q.bias"] * unscale
        for name in ("cross_attn.out", "ff.0", "ff.3"):
            put_linear(f"{p}.{name}", dec_mats.pop(0))
    output = dec_mats.pop(0)                                                           # (D, V), tied
    if enc_mats or dec_mats or not np.allclose(output.T, state["embed.weight"]):
        raise SystemExit(f"{model_dir}: graph weights do not follow the expected layer layout")
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
    return tensors, cfg, list(manifest.vocab), manifest.training or {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="genrt/models/poems", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16",
                        help="bf16: compact, for warm starts; fp32: exact, for re-exporting the same model")
    args = parser.parse_args(argv)
    from export.poems_reference import step_logit_parity
    from genrt.poems.model import PoemModel
    from trainers.poems import save_weights
    tensors, cfg, vocab, training = state_from_model_dir(args.model)
    metrics = read_manifest(args.model).metrics
    model = PoemTransformer(cfg)
    model.load_state_dict(tensors)
    diff = step_logit_parity(model.eval(), PoemModel.load(args.model, provider="cpu", precision="fp32"))
    if diff > 1e-3:
        raise SystemExit(f"recovered weights disagree with {args.model}: max |logit diff| {diff:.2e}")
    temperature = (training.get("calibration") or {}).get("temperature")
    if temperature:                  # an export with --calibrate folded 1/T into the last LayerNorm: take it out
        from trainers.poems_calibration import fold_temperature
        fold_temperature(model, 1.0 / temperature)
        print(f"took the calibration temperature {temperature} back out: these are the trained weights")
    save_weights(args.out, model, vocab, training.get("config", {}), int(training.get("steps", 0)),
                 int(training.get("tokens_seen", 0)), [metrics] if metrics else [],
                 torch.float32 if args.dtype == "fp32" else torch.bfloat16, training.get("corpus"))
    print(f"wrote {args.out} (step {training.get('steps', 0)}, max |logit diff| vs ONNX {diff:.2e})")


if __name__ == "__main__":
    main()
