"""genrt.providers: the provider table, names, choice, install hints, options; OpenVINO parity where installed."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from genrt import providers, runtime
from genrt.providers import (PROVIDER_TABLE, ProviderError, check_provider_options, parse_provider_option,
                             provider_spec, resolve_provider, session_providers)

OPENVINO = "OpenVINOExecutionProvider" in ort.get_available_providers()
needs_openvino = pytest.mark.skipif(not OPENVINO, reason="onnxruntime-openvino is not installed")


def test_every_record_is_complete_and_named_once():
    assert len({s.name for s in PROVIDER_TABLE}) == len({s.ort_name for s in PROVIDER_TABLE}) == len(PROVIDER_TABLE)
    for spec in PROVIDER_TABLE:
        assert spec.ort_name.endswith("ExecutionProvider") and spec.ort_name in ort.get_all_providers()
        assert set(spec.precision) == {"faces", "poems"} and set(spec.precision.values()) <= set(runtime.PRECISIONS)
        assert spec.install and spec.device_cache == (spec.ort_device != "cpu")


def test_the_table_holds_what_was_measured():
    assert provider_spec("cpu").precision == {"faces": "int8", "poems": "int8"}
    assert provider_spec("cuda").precision == {"faces": "fp32", "poems": "fp32"}
    assert provider_spec("cuda").device_cache and provider_spec("cuda").ort_device == "cuda"
    # OpenVINO: the int8 faces graph runs whole and matches the CPU provider; its int8 poems do not
    assert provider_spec("openvino").precision == {"faces": "int8", "poems": "fp32"}
    assert not provider_spec("openvino").device_cache and not provider_spec("openvino").auto


@pytest.mark.parametrize("name", ["openvino", "OpenVINO", "OpenVINOExecutionProvider", "openvinoexecutionprovider"])
def test_short_and_onnxruntime_names_find_the_same_record(name):
    assert provider_spec(name).name == "openvino"


def test_a_provider_outside_the_table_gets_a_plain_record():
    spec = provider_spec("xnnpackexecutionprovider")
    assert spec.name == spec.ort_name == "XnnpackExecutionProvider"
    assert spec.precision == {"faces": "fp32", "poems": "fp32"} and not spec.device_cache and not spec.auto


def test_auto_picks_cuda_then_cpu_and_never_openvino():
    assert resolve_provider("auto", ["cuda", "cpu", "openvino"]) == "cuda"
    assert resolve_provider("auto", ["cpu", "openvino"]) == "cpu"
    assert resolve_provider(None, ["cpu"]) == resolve_provider("", ["cpu"]) == "cpu"


def test_named_providers_resolve_to_short_names():
    assert resolve_provider("OpenVINOExecutionProvider", ["cpu", "openvino"]) == "openvino"
    assert resolve_provider("CPU", ["cpu"]) == "cpu"
    assert resolve_provider("XnnpackExecutionProvider", ["cpu", "XnnpackExecutionProvider"]) == \
        "XnnpackExecutionProvider"


def test_an_unavailable_provider_is_one_line_with_what_is_installed_and_how_to_get_it():
    with pytest.raises(ProviderError) as info:
        resolve_provider("openvino", ["cpu"])
    message = str(info.value)
    assert "\n" not in message and "offers: cpu" in message and "--provider cpu" in message
    # from a wheel or a checkout: swap the CPU wheel; a checkout can name the extra
    assert 'pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps "onnxruntime-openvino' in message
    assert 'pip install ".[openvino]"' in message
    with pytest.raises(ProviderError, match=r"'cuda' is not available.*onnxruntime-gpu.*\.\[gpu\]"):
        resolve_provider("cuda", ["cpu"])
    with pytest.raises(ProviderError, match="DmlExecutionProvider|onnxruntime-directml"):
        resolve_provider("DmlExecutionProvider", ["cpu"])


@pytest.mark.parametrize("requested", ["tpu", "gpu", "cuda:0", 3])
def test_unknown_names_list_the_choices(requested):
    with pytest.raises(ProviderError, match=r"unknown provider .*auto, cuda, cpu, openvino.*installed here: cpu"):
        resolve_provider(requested, ["cpu"])


def test_available_providers_leave_out_remote_endpoints(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["OpenVINOExecutionProvider", "AzureExecutionProvider", "XnnpackExecutionProvider",
                                 "CPUExecutionProvider"])
    assert providers.available_providers() == ["cpu", "openvino", "XnnpackExecutionProvider"]


def test_provider_options_become_strings():
    assert check_provider_options(None) == {}
    assert check_provider_options({"device_id": 1, "use_tf32": False, "precision": "FP32", "x": 0.5}) == \
        {"device_id": "1", "use_tf32": "false", "precision": "FP32", "x": "0.5"}
    for bad in ({"": "1"}, {1: "1"}, {"a": [1]}, ["a=1"]):
        with pytest.raises(ValueError):
            check_provider_options(bad)


def test_parse_provider_option():
    assert parse_provider_option("device_id=1") == ("device_id", "1")
    assert parse_provider_option(" cache_dir = a=b ") == ("cache_dir", "a=b")
    for bad in ("device_id", "=1", ""):
        with pytest.raises(ValueError, match="key=value"):
            parse_provider_option(bad)


def test_session_providers_put_the_cpu_provider_last():
    assert session_providers("cpu", {"a": "1"}) == [("CPUExecutionProvider", {"a": "1"})]
    assert session_providers("openvino", {"device_type": "CPU"}) == [
        ("OpenVINOExecutionProvider", {"device_type": "CPU"}), ("CPUExecutionProvider", {})]


def test_default_precision_comes_from_the_table(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "bundled_model_dir", lambda name: tmp_path / name)
    monkeypatch.setenv(runtime.USER_MODELS_ENV, str(tmp_path / "user"))
    for name in ("faces", "faces_int8", "poems", "poems_int8"):
        (tmp_path / name).mkdir()
    pick = lambda name, provider: runtime.model_dir_or_bundled(None, name, "hint", provider=provider).name  # noqa: E731
    assert [pick(k, "cpu") for k in ("faces", "poems")] == ["faces_int8", "poems_int8"]
    assert [pick(k, "openvino") for k in ("faces", "poems")] == ["faces_int8", "poems"]
    assert [pick(k, "cuda") for k in ("faces", "poems")] == ["faces", "poems"]
    assert [pick(k, "XnnpackExecutionProvider") for k in ("faces", "poems")] == ["faces", "poems"]


def test_the_cpu_provider_refuses_the_options_onnxruntime_would_ignore(tiny_faces_model):
    from genrt.faces import FaceGenerator
    with pytest.raises(ProviderError, match="CPU provider takes no provider options .*arena_extend_strategy"):
        FaceGenerator.load(tiny_faces_model, provider="CPUExecutionProvider", threads=1,
                           provider_options={"arena_extend_strategy": "kSameAsRequested"})


def test_sessions_never_fall_back_to_cpu_on_their_own(tiny_faces_model):
    """onnxruntime's own fallback would move a failing CUDA session to CPU (printing to stdout) while genrt still
    names CUDA: every session is made without it."""
    session = runtime.make_session(tiny_faces_model / "generator.onnx", "cpu", threads=1)
    assert session._enable_fallback is False


def test_a_provider_that_does_not_start_is_named(tiny_faces_model, monkeypatch):
    """onnxruntime falls back to CPU silently when a provider's libraries do not load: genrt says so."""
    monkeypatch.setattr(runtime, "available_providers", lambda: ["cuda", "cpu"])
    real = ort.InferenceSession
    monkeypatch.setattr(ort, "InferenceSession", lambda path, sess_options, providers, **kwargs: real(
        path, sess_options=sess_options, providers=["CPUExecutionProvider"], **kwargs))
    with pytest.raises(ProviderError, match="offers CUDAExecutionProvider but could not start it"):
        runtime.make_session(tiny_faces_model / "generator.onnx", "cuda", threads=1)


# ---------------------------------------------------------------- the command line

def run(*args):
    from genrt.cli import main
    return CliRunner().invoke(main, list(args))


@pytest.mark.skipif(OPENVINO, reason="OpenVINO is installed")
def test_cli_names_the_install_for_a_missing_provider(tiny_faces_model, tmp_path):
    result = run("faces", "--n", "1", "-o", str(tmp_path), "--model", str(tiny_faces_model), "--provider", "openvino")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "onnxruntime-openvino" in result.output and ".[openvino]" in result.output


def test_cli_refuses_an_unknown_provider_and_a_bad_option(tiny_faces_model, tmp_path):
    result = run("faces", "-o", str(tmp_path), "--provider", "tpu")
    assert result.exit_code == 2 and "--provider" in result.output and "openvino" in result.output
    result = run("faces", "-o", str(tmp_path), "--provider-option", "device_id")
    assert result.exit_code == 2 and "--provider-option" in result.output and "key=value" in result.output


def test_cli_passes_provider_options(tiny_faces_model, tmp_path, monkeypatch):
    seen = {}
    real = runtime.make_session

    def spy(path, provider="cpu", threads=None, spin=True, provider_options=None):
        seen.update(provider=provider, options=provider_options)
        return real(path, provider, threads, spin)         # the CPU provider itself takes no options
    monkeypatch.setattr(runtime, "make_session", spy)
    result = run("faces", "--n", "1", "-o", str(tmp_path), "--model", str(tiny_faces_model), "--seed", "1",
                 "--provider", "CPUExecutionProvider", "--provider-option", "arena_extend_strategy=kSameAsRequested",
                 "--threads", "1")
    assert result.exit_code == 0, result.output
    assert seen == {"provider": "cpu", "options": {"arena_extend_strategy": "kSameAsRequested"}}


def test_cli_passes_provider_options_to_the_poem_model(tiny_poems_dir, monkeypatch):
    seen = {}
    real = runtime.make_session

    def spy(path, provider="cpu", threads=None, spin=True, provider_options=None):
        seen[path.name] = provider_options
        return real(path, provider, threads, spin)
    monkeypatch.setattr(runtime, "make_session", spy)
    result = run("poem", "春江", "--model", str(tiny_poems_dir), "--greedy", "--free-shape", "--max-new-tokens", "4",
                 "--provider", "cpu", "--provider-option", "arena_extend_strategy=kSameAsRequested")
    assert result.exit_code == 0, result.output
    assert seen == {"encoder.onnx": {"arena_extend_strategy": "kSameAsRequested"},
                    "decoder.onnx": {"arena_extend_strategy": "kSameAsRequested"}}


# ---------------------------------------------------------------- OpenVINO, where onnxruntime-openvino is installed

PROMPTS = ["春江花月夜", "山居秋暝", "登高", "静夜思", "送别", "秋思", "江雪", "春望", "黄鹤楼", "望岳", "月下独酌",
           "将进酒", "春晓", "夜雨寄北", "枫桥夜泊", "凉州词", "出塞", "相思", "鹿柴", "游子吟"]


@needs_openvino
@pytest.mark.parametrize("precision, max_level, mean_level", [("fp32", 1, 0.01), ("int8", 8, 0.05)])
def test_openvino_faces_match_the_cpu_provider(precision, max_level, mean_level):
    """fp32: within one uint8 level, as the export's own torch parity; int8: QDQ computed by OpenVINO's kernels,
    far inside the int8-vs-fp32 gate (mean < 4 levels, tests/test_bundled_models.py)."""
    from genrt.faces import FaceGenerator
    cpu, ov = (FaceGenerator.load(provider=p, threads=1, precision=precision).generate(16, seed=3).astype(int)
               for p in ("cpu", "openvino"))
    assert np.abs(cpu - ov).max() <= max_level and np.abs(cpu - ov).mean() < mean_level


@needs_openvino
def test_openvino_poems_match_the_cpu_provider():
    """fp32 (OpenVINO's default): the same greedy and beam-4 poems as the CPU provider on 20 prompts."""
    from genrt import PoemGenerator
    cpu, ov = (PoemGenerator.load(provider=p, threads=1, precision="fp32") for p in ("cpu", "openvino"))
    assert ov.provider == "openvino"
    for options in ({"do_sample": False}, {"num_beams": 4, "do_sample": False}):
        assert [r[0].text for r in cpu.generate(PROMPTS, **options)] == \
            [r[0].text for r in ov.generate(PROMPTS, **options)]


@needs_openvino
def test_openvino_takes_options_and_a_full_name():
    from genrt.faces import FaceGenerator
    gen = FaceGenerator.load(provider="OpenVINOExecutionProvider", threads=1,
                             provider_options={"device_type": "CPU"})
    assert gen.provider == "openvino" and gen.manifest.precision == "int8"
    assert gen._session.get_providers()[0] == "OpenVINOExecutionProvider"
