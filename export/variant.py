"""A precision variant of an exported model directory: every graph converted, the manifest copied with the new
precision, then read back through the contract. export/quantize.py (int8) and export/fp16.py use it."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from export.model_dir import staged_model_dir
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
        if manifest.kind == POEMS_KIND:                 # what the converted graphs guarantee, not the source's
            declare_batch_invariance(tmp)
    return Path(out_dir)
