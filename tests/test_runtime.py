"""genrt.runtime: provider choice, sessions, contract checks on load."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from genrt import runtime
from genrt.contract import FacesManifest, ManifestError
from genrt.runtime import ProviderError, bundled_model_dir, load_checked_session, make_session, resolve_provider


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(runtime, "available_providers", lambda: ["cpu"])


@pytest.fixture
def with_cuda(monkeypatch):
    monkeypatch.setattr(runtime, "available_providers", lambda: ["cuda", "cpu"])


def test_auto_falls_back_to_cpu_silently(cpu_only, capsys):
    assert resolve_provider("auto") == "cpu"
    assert resolve_provider("auto", quiet=False) == "cpu"   # auto asked for the best there is: CPU is an answer
    assert capsys.readouterr().err == ""


def test_auto_prefers_cuda_when_offered(with_cuda, capsys):
    assert resolve_provider("auto", quiet=False) == "cuda"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("requested", ["cpu", "CPU", "Cpu"])
def test_cpu_is_always_available(cpu_only, requested):
    assert resolve_provider(requested) == "cpu"


def test_empty_or_none_means_auto(cpu_only):
    assert resolve_provider(None) == resolve_provider("") == "cpu"


def test_cuda_when_missing_is_an_error_with_a_hint(cpu_only):
    with pytest.raises(ProviderError, match="'cuda' is not available.*--provider cpu"):
        resolve_provider("cuda")


def test_cuda_when_offered(with_cuda):
    assert resolve_provider("cuda") == "cuda"


@pytest.mark.parametrize("requested", ["tpu", "gpu", "cuda:0"])
def test_unknown_provider_lists_the_choices(requested):
    with pytest.raises(ProviderError, match=r"unknown provider .*auto, cuda, cpu, openvino"):
        resolve_provider(requested)


def test_provider_error_is_a_value_error():
    assert issubclass(ProviderError, ValueError)


def test_available_providers_always_include_cpu():
    assert "cpu" in runtime.available_providers()


def test_physical_cores_is_positive():
    assert runtime.physical_cores() >= 1


def test_physical_cores_count_hyperthread_siblings_once_within_the_affinity(tmp_path, monkeypatch):
    """From the kernel's topology, on any architecture: CPUs 0/2 and 1/3 are sibling pairs."""
    for cpu, siblings in enumerate(["0,2", "1,3", "0,2", "1,3"]):
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(siblings + "\n")
    for affinity, cores in (({0, 1, 2, 3}, 2), ({0, 2}, 1), ({0, 1}, 2)):
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid, a=affinity: a, raising=False)
        assert runtime.physical_cores(tmp_path) == cores
    bare = tmp_path / "bare"                                 # no topology: SMT off -> every usable CPU
    (bare / "smt").mkdir(parents=True)
    (bare / "smt" / "active").write_text("0\n")
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert runtime.physical_cores(bare) == 4
    (bare / "smt" / "active").write_text("1\n")
    assert runtime.physical_cores(bare) == 2


def test_make_session_honours_threads(tiny_faces_model):
    session = make_session(tiny_faces_model / "generator.onnx", "cpu", threads=1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("threads", [2.5, 0, -1, True, "2", np.float64(2.0)])
def test_bad_thread_counts_are_refused_before_any_file_is_opened(tmp_path, threads):
    message = f"threads must be a positive integer, got {threads!r}"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_session(tmp_path / "missing.onnx", "cpu", threads)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        load_checked_session(tmp_path, FacesManifest(nz=3, image_size=16).graph(), "cpu", threads)
    from genrt.poems.model import PoemModel
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        PoemModel.load(tmp_path / "nowhere", provider="cpu", threads=threads)


def test_numpy_thread_counts_are_integers(tiny_faces_model):
    session = make_session(tiny_faces_model / "generator.onnx", "cpu", threads=np.int64(2))
    assert session.get_session_options().intra_op_num_threads == 2


def test_face_generator_load_refuses_bad_threads_before_opening_the_graph(tiny_faces_model, monkeypatch):
    from genrt.faces import FaceGenerator

    def opened(*args, **kwargs):
        raise AssertionError("the graph was opened")
    monkeypatch.setattr(ort, "InferenceSession", opened)
    with pytest.raises(ValueError, match="threads must be a positive integer, got 2.5"):
        FaceGenerator.load(tiny_faces_model, provider="cpu", threads=2.5)


@pytest.mark.parametrize("name, problem", [("../generator.onnx", "contains '..'"),
                                           ("/tmp/generator.onnx", "is an absolute path")])
def test_load_checked_session_opens_only_files_inside_the_model_directory(tiny_faces_model, name, problem):
    spec = FacesManifest(nz=3, image_size=16, graph_file=name).graph()
    with pytest.raises(ManifestError, match=f"graph file {problem}"):
        load_checked_session(tiny_faces_model, spec, "cpu", 1)


def test_load_checked_session_accepts_a_conforming_graph(tiny_faces_model):
    import json
    nz = json.loads((tiny_faces_model / "manifest.json").read_text())["nz"]
    spec = FacesManifest(nz=nz, image_size=64).graph()
    assert load_checked_session(tiny_faces_model, spec, "cpu", 1).get_inputs()[0].name == "z"


def test_load_checked_session_names_each_mismatch(tiny_faces_model):
    spec = FacesManifest(nz=3, image_size=16, channels=4).graph()
    with pytest.raises(ManifestError) as info:
        load_checked_session(tiny_faces_model, spec, "cpu", 1)
    assert len(info.value.problems) == 2                                # one for z, one for images


def test_bundled_model_dir_points_inside_the_package():
    path = bundled_model_dir("faces")
    assert path.parts[-3:] == ("genrt", "models", "faces")


def test_bundled_precision_variants(tmp_path, monkeypatch):
    import genrt.runtime as rt
    from genrt.contract import ManifestError
    monkeypatch.setattr(rt, "bundled_model_dir", lambda name: tmp_path / name)
    monkeypatch.setenv(rt.USER_MODELS_ENV, str(tmp_path / "user"))
    (tmp_path / "poems").mkdir()
    # default int8 variant not shipped -> falls back to fp32; an explicit int8 request is an error
    assert rt.model_dir_or_bundled(None, "poems", "hint") == tmp_path / "poems"
    with pytest.raises(ManifestError, match="poems model \\(int8\\) is neither in .*user"):
        rt.model_dir_or_bundled(None, "poems", "hint", precision="int8")
    (tmp_path / "poems_int8").mkdir()
    assert rt.model_dir_or_bundled(None, "poems", "hint") == tmp_path / "poems_int8"
    assert rt.model_dir_or_bundled(None, "poems", "hint", precision="fp32") == tmp_path / "poems"
    # on CUDA the default is fp32: the int8 graphs are built for CPU integer kernels
    assert rt.model_dir_or_bundled(None, "poems", "hint", provider="cuda") == tmp_path / "poems"
    assert rt.model_dir_or_bundled(None, "poems", "hint", precision="int8", provider="cuda") == tmp_path / "poems_int8"
    with pytest.raises(ValueError, match="unknown precision"):
        rt.model_dir_or_bundled(None, "poems", "hint", precision="fp8")
    # a variant in the user models folder is found by precision, before the bundled one; a folder there without
    # a manifest is not a model
    (tmp_path / "user" / "poems_fp16").mkdir(parents=True)
    with pytest.raises(ManifestError, match="fp16"):
        rt.model_dir_or_bundled(None, "poems", "hint", precision="fp16")
    (tmp_path / "user" / "poems_fp16" / "manifest.json").write_text("{}")
    assert rt.model_dir_or_bundled(None, "poems", "hint", precision="fp16") == tmp_path / "user" / "poems_fp16"


def test_default_user_models_folder(monkeypatch):
    import genrt.runtime as rt
    monkeypatch.delenv(rt.USER_MODELS_ENV, raising=False)
    assert rt.user_models_dir() == Path("~/.genrt/models").expanduser()


def test_precision_mismatch_is_reported(tiny_poems_dir):
    from click.testing import CliRunner
    from genrt.cli import main
    result = CliRunner().invoke(main, ["poem", "春江", "--model", str(tiny_poems_dir), "--precision", "int8"])
    assert result.exit_code == 2 and "precision is 'fp32', asked for 'int8'" in result.output


def test_fp16_is_not_bundled_and_the_error_says_how_to_make_it(monkeypatch, tmp_path):
    rt = runtime
    monkeypatch.setenv(rt.USER_MODELS_ENV, str(tmp_path))
    if rt.bundled_model_dir("poems_fp16").is_dir():
        pytest.skip("an fp16 variant is installed")
    with pytest.raises(ManifestError, match=r"python -m export.fp16 genrt/models/poems ~/.genrt/models/poems_fp16` "
                                            r"in a genrt checkout with the training extras \(pip install "):
        rt.model_dir_or_bundled(None, "poems", "hint", precision="fp16")


def test_only_graphs_run_in_a_loop_keep_spinning_threads(tiny_poems_dir, tiny_faces_model):
    """The poem encoder runs once per call, right before the decoder's per-character loop: its idle threads must
    sleep, not spin on the cores the decoder's pool needs. The decoder and the faces generator keep spinning."""
    from genrt.contract import FACES_KIND, POEMS_KIND
    spinning = "session.intra_op.allow_spinning"
    poems = runtime.open_model_dir(tiny_poems_dir, POEMS_KIND, "cpu", 2)
    assert poems.sessions["encoder"].get_session_options().get_session_config_entry(spinning) == "0"
    assert poems.sessions["decoder"].get_session_options().get_session_config_entry(spinning) == "1"
    faces = runtime.open_model_dir(tiny_faces_model, FACES_KIND, "cpu", 2)
    assert faces.sessions["generator"].get_session_options().get_session_config_entry(spinning) == "1"
    assert poems.sessions["decoder"].get_session_options().intra_op_num_threads == 2
    beside = runtime.open_model_dir(tiny_faces_model, FACES_KIND, "cpu", 2, spin=False)   # as genrt serve opens it
    assert beside.sessions["generator"].get_session_options().get_session_config_entry(spinning) == "0"


def test_poem_models_default_to_one_lane_per_physical_core(tiny_poems_dir):
    from genrt.poems.model import PoemModel
    model = PoemModel.load(tiny_poems_dir, provider="cpu")
    assert model.encoder.get_session_options().intra_op_num_threads == runtime.physical_cores()
    assert model.decoder.get_session_options().intra_op_num_threads == 1      # one call per lane, one thread each
    assert model.lanes == runtime.physical_cores()
    assert PoemModel.load(tiny_poems_dir, provider="cpu", threads=3).lanes == 3


def test_graph_threads_override_the_thread_count_of_named_graphs(tiny_poems_dir):
    from genrt.contract import POEMS_KIND
    opened = runtime.open_model_dir(tiny_poems_dir, POEMS_KIND, "cpu", 2, graph_threads={"decoder": 1})
    assert opened.sessions["encoder"].get_session_options().intra_op_num_threads == 2
    assert opened.sessions["decoder"].get_session_options().intra_op_num_threads == 1


def test_open_model_dir_serves_every_kind(tiny_poems_dir, tiny_faces_model):
    from genrt.contract import FACES_KIND, POEMS_KIND
    poems = runtime.open_model_dir(tiny_poems_dir, POEMS_KIND, "cpu", 1)
    assert set(poems.sessions) == {"encoder", "decoder"} and poems.provider == "cpu"
    faces = runtime.open_model_dir(tiny_faces_model, FACES_KIND, "cpu", 1)
    assert set(faces.sessions) == {"generator", "discriminator"} and faces.manifest.nz > 0
    with pytest.raises(ManifestError, match="kind"):
        runtime.open_model_dir(tiny_faces_model, POEMS_KIND, "cpu", 1)
    with pytest.raises(ValueError, match="threads"):
        runtime.open_model_dir(tiny_faces_model, FACES_KIND, "cpu", 0)


def test_hot_loop_run_gives_what_session_run_gives(tiny_faces_model):
    session = make_session(tiny_faces_model / "generator.onnx", threads=1)
    run = runtime.hot_loop_run(session)
    assert run is not session.run                      # the compiled session, called directly
    z = np.random.default_rng(0).standard_normal((2, session.get_inputs()[0].shape[1])).astype(np.float32)
    name = session.get_outputs()[0].name
    np.testing.assert_array_equal(run([name], {session.get_inputs()[0].name: z})[0],
                                  session.run([name], {session.get_inputs()[0].name: z})[0])


def test_hot_loop_run_keeps_session_run_for_anything_else():
    class Double:                                      # a test double, or an onnxruntime without `_sess`
        def run(self, names, feeds):
            return ["ran"]
    double = Double()
    assert runtime.hot_loop_run(double) == double.run
