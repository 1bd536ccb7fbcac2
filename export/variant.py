"""A precision variant of an exported model directory: every graph converted, the manifest copied with the new
precision, then read back through the contract. export/quantize.py (int8) and export/fp16.py use it."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from export.model_dir import require, staged_model_dir
from export.poem_invariance import declare_batch_invariance
from genrt.contract import POEMS_KIND, Manifest, read_manifest, write_manifest


def write_variant(src_dir: str | Path, out_dir: str | Path, precision: str,
                  convert_graph: Callable[[Path, Path], None], expected_kind: str | None = None,
                  force: bool = False, **manifest_changes) -> Path:
    """Convert every graph into a temporary directory, manifest last (with `manifest_changes`, fields the
    conversion changed besides the precision), read it back, then rename into place."""
    src_dir = Path(src_dir)
    manifest: Manifest = read_manifest(src_dir, expected_kind=expected_kind)
    with staged_model_dir(out_dir, force) as tmp:
        for file in manifest.graph_files():
            convert_graph(src_dir / file, tmp / file)
        for extra in manifest.extra_files():
            (tmp / extra).write_bytes((src_dir / extra).read_bytes())
        write_manifest(tmp, dataclasses.replace(manifest, precision=precision, **manifest_changes))
        read_manifest(tmp)
        check_against_source(src_dir, tmp, precision, manifest.kind)
        if manifest.kind == POEMS_KIND:                 # what the converted graphs guarantee, not the source's
            declare_batch_invariance(tmp)
    return Path(out_dir)


# How far a variant may stray from its source before the conversion counts as broken: poems, the largest |logit|
# difference over a few greedy steps as a share of the source's largest |logit| (the bundled int8 model: 2.4 %,
# the tiny test models: 0.5 %); faces, uint8 levels. A broken conversion is off by far more.
LOGIT_TOLERANCE = {"fp16": 0.01, "int8": 0.08}
PIXEL_TOLERANCE = {"fp16": 3, "int8": 32}


def check_against_source(src_dir: Path, variant_dir: Path, precision: str, kind: str) -> None:
    """The variant, loaded through the contract on the CPU provider, computes what its source computes within
    the precision's tolerance (ExportError otherwise)."""
    if kind == POEMS_KIND:
        from export.poems_reference import lockstep_logits, random_sources
        from genrt.poems.model import PoemModel
        source = PoemModel.load(src_dir, provider="cpu", threads=1)
        variant = PoemModel.load(variant_dir, provider="cpu", threads=1)
        sources = random_sources(len(source.manifest.vocab), 3, seed=11)
        worst = max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-6))
                    for a, b, _ in lockstep_logits(source, variant, sources, steps=5))
        require(worst <= LOGIT_TOLERANCE[precision], f"{precision} logits differ from the source's by {worst:.1%} "
                f"of their largest magnitude (at most {LOGIT_TOLERANCE[precision]:.0%}): a broken conversion")
        return
    from genrt.faces.generator import FaceGenerator
    images = [FaceGenerator.load(d, provider="cpu", threads=1).generate(4, seed=1).astype(np.int16)
              for d in (src_dir, variant_dir)]
    worst = int(np.abs(images[0] - images[1]).max())
    require(worst <= PIXEL_TOLERANCE[precision], f"{precision} faces differ from the source's by up to {worst} "
            f"levels (at most {PIXEL_TOLERANCE[precision]}): a broken conversion")
