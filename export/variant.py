"""A precision variant of an exported model directory: every graph converted, the manifest copied with the new
precision, then read back through the contract. export/quantize.py (int8) and export/fp16.py use it."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from genrt.contract import Manifest, read_manifest, write_manifest


def write_variant(src_dir: str | Path, out_dir: str | Path, precision: str,
                  convert_graph: Callable[[Path, Path], None], expected_kind: str | None = None) -> Path:
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    manifest: Manifest = read_manifest(src_dir, expected_kind=expected_kind)
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in manifest.graph_files():
        convert_graph(src_dir / file, out_dir / file)
    write_manifest(out_dir, dataclasses.replace(manifest, precision=precision))
    read_manifest(out_dir)
    return out_dir
