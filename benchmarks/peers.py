"""Benchmark peers built from a model directory's own weights, so a fresh clone measures every row.

    python -m benchmarks.peers poems genrt/models/poems OUT.pt     # torch weights-only checkpoint (also feeds CT2)
    python -m benchmarks.peers faces genrt/models/faces OUT.pt

Poems: trainers.poems_warmstart recovers the exact PoemTransformer from the fp32 graphs (checked there against
the ONNX decoder). Faces: the exported generator has its BatchNorms folded into the transposed convolutions, so
the torch peer is that folded network (ConvTranspose2d + ReLU ... + Tanh, the weights read from the graph's named
initializers), checked here against the ONNX graph: the same arithmetic as the bundled model, and no slower than
the unfolded training generator would be.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

FACES_KIND = "faces-dcgan-folded"


def folded_faces_generator(model_dir: str | Path):
    """(torch nn.Module mapping z (B, nz) -> images (B, 3, 64, 64) in [-1, 1], nz) from an fp32 faces directory."""
    import onnx
    import torch
    from onnx import numpy_helper
    from torch import nn
    from genrt.contract import read_manifest
    manifest = read_manifest(model_dir, expected_kind="faces-dcgan")
    if manifest.precision != "fp32":
        raise ValueError(f"{model_dir}: the torch peer needs the fp32 model, not {manifest.precision}")
    graph = onnx.load(str(Path(model_dir) / manifest.graph_file)).graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer
               if i.name.startswith("net.")}
    layers: list[nn.Module] = []
    convs = sorted({int(name.split(".")[1]) for name in weights})
    for n, index in enumerate(convs):
        w = weights[f"net.{index}.weight"]                                   # (in, out, 4, 4)
        bias = f"net.{index}.bias" in weights
        conv = nn.ConvTranspose2d(w.shape[0], w.shape[1], w.shape[2], 1 if n == 0 else 2, 0 if n == 0 else 1,
                                  bias=bias)
        with torch.no_grad():
            conv.weight.copy_(w)
            if bias:
                conv.bias.copy_(weights[f"net.{index}.bias"])
        layers += [conv, nn.ReLU() if n < len(convs) - 1 else nn.Tanh()]

    class Folded(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(*layers)

        def forward(self, z):                                                # z (B, nz)
            return self.net(z[:, :, None, None])

    model = Folded().eval()
    _check_faces(model, model_dir, manifest.nz)
    return model, manifest.nz


def _check_faces(model, model_dir, nz: int) -> None:
    import torch
    from genrt.faces import FaceGenerator
    z = np.random.default_rng(0).standard_normal((4, nz), dtype=np.float32)
    ours = FaceGenerator.load(model_dir, provider="cpu", threads=1).generate_from_latents(z).astype(np.int16)
    with torch.inference_mode():
        ref = ((model(torch.from_numpy(z)) + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    diff = np.abs(ours - ref.astype(np.int16)).max()
    if diff > 1:
        raise RuntimeError(f"folded torch faces generator differs from {model_dir} by {diff} grey levels")


def poems_checkpoint(model_dir: str | Path, out: str | Path) -> Path:
    """Write the bundled poem model's exact torch weights as a weights-only checkpoint; return its path."""
    from trainers.poems_warmstart import main as warmstart
    warmstart(["--model", str(model_dir), "--out", str(out), "--dtype", "fp32"])
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["poems", "faces"])
    parser.add_argument("model_dir")
    parser.add_argument("out", nargs="?")
    args = parser.parse_args(argv)
    if args.kind == "poems":
        if not args.out:
            sys.exit("poems needs OUT (the checkpoint to write)")
        print(poems_checkpoint(args.model_dir, args.out))
    else:
        folded_faces_generator(args.model_dir)
        print(f"{args.model_dir}: folded torch generator matches the graph")


if __name__ == "__main__":
    main()
