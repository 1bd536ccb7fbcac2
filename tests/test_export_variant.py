"""export.variant: a variant directory gets every graph converted and a manifest with the new precision."""
import shutil

import pytest

from export.variant import write_variant
from genrt.contract import FACES_KIND, ManifestError, read_manifest


def test_every_graph_is_converted_and_the_precision_relabelled(tiny_poems_dir, tmp_path):
    seen = []

    def copy(src, dst):
        seen.append(src.name)
        shutil.copy(src, dst)

    out = write_variant(tiny_poems_dir, tmp_path / "v", "int8", copy)
    assert sorted(seen) == ["decoder.onnx", "encoder.onnx"]
    assert read_manifest(out).precision == "int8"
    assert read_manifest(out).vocab == read_manifest(tiny_poems_dir).vocab


def test_wrong_kind_is_refused(tiny_poems_dir, tmp_path):
    with pytest.raises(ManifestError):
        write_variant(tiny_poems_dir, tmp_path / "v", "int8", shutil.copy, expected_kind=FACES_KIND)
