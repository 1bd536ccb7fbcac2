"""genrt.graph_io: a graph's (name, dtype, shape) lists against its GraphSpec; every mismatch is named."""
from types import SimpleNamespace

from genrt.contract import FacesManifest, PoemsManifest
from genrt.graph_io import check_graph_io, session_io

from .fixtures_poems import TINY_VOCAB


def spec_io(spec):
    """The (name, dtype, shape) lists of a graph built exactly to `spec`, dynamic axes named as in the spec."""
    def describe(tensors):
        return [(t.name, t.dtype, list(t.shape)) for t in tensors]
    return describe(spec.inputs), describe(spec.outputs)


def poems_manifest():
    return PoemsManifest(vocab=tuple(TINY_VOCAB), d_model=32, num_heads=4, num_encoder_layers=2,
                         num_decoder_layers=2, dim_feedforward=64, max_len=80)


def test_a_graph_built_to_the_spec_conforms():
    for spec in poems_manifest().graphs().values():
        assert check_graph_io(spec, *spec_io(spec)) == []


def test_contract_check_names_every_mismatch():
    manifest = poems_manifest()
    inputs, outputs = spec_io(manifest.decoder())
    broken_inputs = [(n, "int32" if n == "input_ids" else d, s) for n, d, s in inputs if n != "past_key.0"]
    problems = check_graph_io(manifest.decoder(), broken_inputs, outputs + [("extra", "float32", [1])])
    text = "\n".join(problems)
    assert "missing input 'past_key.0'" in text
    assert "'input_ids' has dtype int32" in text
    assert "unexpected output 'extra'" in text


def test_dynamic_axes_may_have_any_name_but_fixed_ones_must_match():
    spec = FacesManifest(nz=8, image_size=16).graph()
    images = ("images", "uint8", ["N", 16, 16, 3])
    assert check_graph_io(spec, [("z", "float32", [None, 8])], [images]) == []
    problems = check_graph_io(spec, [("z", "float32", [4, 8])], [("images", "uint8", ["N", 16, 16])], where="x/")
    assert problems == ["x/generator.onnx: input 'z' has shape [4, 8], expected ['batch', 8]",
                        "x/generator.onnx: output 'images' has shape ['N', 16, 16], expected "
                        "['batch', 16, 16, 3]"]


def test_session_io_describes_a_session_with_numpy_dtype_names():
    arg = SimpleNamespace
    session = SimpleNamespace(
        get_inputs=lambda: [arg(name="z", type="tensor(float)", shape=["batch", 8])],
        get_outputs=lambda: [arg(name="images", type="tensor(uint8)", shape=("batch", 16, 16, 3)),
                             arg(name="odd", type="tensor(string)", shape=[])])
    assert session_io(session) == ([("z", "float32", ["batch", 8])],
                                   [("images", "uint8", ["batch", 16, 16, 3]), ("odd", "tensor(string)", [])])
