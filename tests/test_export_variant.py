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


def _zeroed(src, dst):
    """A 'conversion' that keeps the graph's shape but zeroes every weight."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
    onnx.save(model, str(dst))


@pytest.mark.parametrize("model", ["tiny_poems_dir", "tiny_faces_model"])
def test_a_conversion_that_breaks_the_numbers_is_refused_and_nothing_is_written(model, tmp_path, request):
    from export.model_dir import ExportError
    with pytest.raises(ExportError, match="a broken conversion"):
        write_variant(request.getfixturevalue(model), tmp_path / "v", "fp16", _zeroed)
    assert not (tmp_path / "v").exists()


def test_a_variant_that_does_not_load_is_an_error_not_a_non_invariant_model(tiny_poems_dir, tmp_path):
    import onnx

    def renamed_output(src, dst):
        model = onnx.load(str(src))
        if src.name == "decoder.onnx":
            old = model.graph.output[0].name
            model.graph.output[0].name = "renamed"
            for node in model.graph.node:
                node.output[:] = ["renamed" if o == old else o for o in node.output]
        onnx.save(model, str(dst))
    with pytest.raises(ManifestError):
        write_variant(tiny_poems_dir, tmp_path / "v", "int8", renamed_output)
    assert not (tmp_path / "v").exists()
