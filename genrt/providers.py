"""The execution-provider table: one record per onnxruntime execution provider genrt knows, and the rules for
naming, choosing and installing one. Everything that depends on the provider (default precision, where the poem
KV cache lives, the install hint of an error) reads it from here.

    genrt poem 春江 --provider openvino                         # a short name from the table
    genrt poem 春江 --provider DmlExecutionProvider             # or any name the installed onnxruntime offers
    genrt poem 春江 --provider cuda --provider-option device_id=1   # options passed through to onnxruntime
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import onnxruntime as ort

AUTO = "auto"
CPU = "cpu"

# onnxruntime lists it on every build, but it runs remote endpoints, not local graphs
NOT_FOR_LOCAL_GRAPHS = frozenset({"AzureExecutionProvider"})


class ProviderError(ValueError):
    """The requested execution provider is unknown, not installed, or failed to start."""


def swap_wheel(package: str, extra: str) -> str:
    """Install commands for an onnxruntime build that replaces the CPU one (the same `onnxruntime` module): pip
    cannot swap the two by itself, so the CPU wheel is removed first. Works for genrt installed from a checkout or
    from a wheel; a checkout can pin the version with its extra."""
    return (f"pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps \"{package}\" "
            f"(from a checkout: pip install \".[{extra}]\" first)")


@dataclass(frozen=True)
class ProviderSpec:
    name: str                    # short name: the --provider value and FaceGenerator.provider
    ort_name: str                # onnxruntime's name for it
    precision: Mapping[str, str] = field(default_factory=lambda: {"faces": "fp32", "poems": "fp32"})
                                 # bundled variant used when the caller names none, per model kind
    device_cache: bool = False   # the poem KV cache stays in the provider's memory between steps (IOBinding)
    ort_device: str = "cpu"      # OrtValue device of that memory (onnxruntime.OrtValue.ortvalue_from_numpy)
    install: str = ""            # how to get it, when the installed onnxruntime does not offer it
    auto: bool = False           # `--provider auto` may choose it (measured faster than the ones after it)


# Table order is the order `auto` tries, and the order providers are listed in. Precision defaults: on CPU int8
# where it is faster at equal quality (benchmarks/results/quality.md and latest.md); elsewhere fp32, because the
# int8 graphs (per-row int8 products, QDQ) are built for CPU integer kernels. OpenVINO takes the int8 faces graph whole and
# draws the CPU provider's images (benchmarks/results/providers.md), faster than its fp32; its int8 poems differ
# from the CPU provider's (8-bit integer products computed its own way) and are slower than its fp32, so poems are fp32
# there. `auto` does not choose OpenVINO: at batch 1 the CPU provider with its defaults was faster for both models,
# and no OpenVINO gain elsewhere was larger than the run-to-run spread of the machine measured.
PROVIDER_TABLE = (
    ProviderSpec("cuda", "CUDAExecutionProvider", device_cache=True, ort_device="cuda", auto=True,
                 install=swap_wheel("onnxruntime-gpu>=1.22", "gpu") + ", on a machine with an NVIDIA GPU, "
                 "CUDA 12 and cuDNN 9"),
    ProviderSpec(CPU, "CPUExecutionProvider", {"faces": "int8", "poems": "int8"}, auto=True,
                 install="pip install onnxruntime"),
    ProviderSpec("openvino", "OpenVINOExecutionProvider", {"faces": "int8", "poems": "fp32"},
                 install=swap_wheel("onnxruntime-openvino>=1.22", "openvino") + ", on an x86 CPU"),
    ProviderSpec("dml", "DmlExecutionProvider", install=swap_wheel("onnxruntime-directml>=1.22", "directml")
                 + ", on Windows"),
    ProviderSpec("coreml", "CoreMLExecutionProvider", install="pip install onnxruntime (the macOS wheel has it)"),
)
_BY_NAME = {spec.name: spec for spec in PROVIDER_TABLE}
_BY_ORT_NAME = {spec.ort_name.lower(): spec for spec in PROVIDER_TABLE}


def provider_spec(name: str) -> ProviderSpec:
    """The record of a provider named by its short name or its onnxruntime name (any case). A provider the table
    does not know gets a plain record: fp32, the cache on the host, its onnxruntime name as its short name."""
    key = name.lower()
    if key in _BY_NAME:
        return _BY_NAME[key]
    if key in _BY_ORT_NAME:
        return _BY_ORT_NAME[key]
    full = next((p for p in ort.get_all_providers() if p.lower() == key), name)
    return ProviderSpec(full, full, install=f"an onnxruntime build with {full}")


def available_providers() -> list[str]:
    """Short names of the providers the installed onnxruntime offers: the table's in table order (best first),
    then any other it offers by its onnxruntime name."""
    offered = [p for p in ort.get_available_providers() if p not in NOT_FOR_LOCAL_GRAPHS]
    known = [spec.name for spec in PROVIDER_TABLE if spec.ort_name in offered]
    return known + [p for p in offered if p.lower() not in _BY_ORT_NAME]


def known_names() -> list[str]:
    """What --provider accepts besides onnxruntime names: auto and the table's short names."""
    return [AUTO] + [spec.name for spec in PROVIDER_TABLE]


def is_provider_name(name: str) -> bool:
    """auto, a short name from the table, or an execution provider onnxruntime knows of (installed or not)."""
    key = name.lower()
    return key == AUTO or key in _BY_NAME or key in _BY_ORT_NAME or any(
        p.lower() == key for p in ort.get_all_providers())


def resolve_provider(requested: str | None, offered: list[str]) -> str:
    """The short name to run on. auto -> the first table provider that `auto` may choose and `offered` has,
    silently. A named provider that is not offered is a ProviderError, one line: what is installed, how to get
    the one asked for; never a quiet fallback."""
    if requested is None or requested == "":
        requested = AUTO
    if not isinstance(requested, str) or not is_provider_name(requested):
        raise ProviderError(f"unknown provider {requested!r}; choose {', '.join(known_names())} or an onnxruntime "
                            f"execution provider name (installed here: {', '.join(offered) or 'none'})")
    if requested.lower() == AUTO:
        return next((spec.name for spec in PROVIDER_TABLE if spec.auto and spec.name in offered), CPU)
    spec = provider_spec(requested)
    if spec.name not in offered:
        raise ProviderError(f"provider {spec.name!r} is not available (onnxruntime {ort.__version__} here offers: "
                            f"{', '.join(offered) or 'none'}); get it with: {spec.install}; or use --provider cpu")
    return spec.name


def check_provider_options(options: Mapping[str, object] | None) -> dict[str, str]:
    """Provider options as onnxruntime takes them: {str: str}. Keys are non-empty strings; values strings or
    numbers (bools as 'true'/'false'), passed through unchecked: onnxruntime names a bad one when the session
    starts."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"provider_options must be a mapping of option names to values, got {options!r}")
    out = {}
    for key, value in options.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"provider option names must be non-empty strings, got {key!r}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, (str, int, float)):
            raise ValueError(f"provider option {key} must be a string or a number, got {value!r}")
        out[key] = str(value)
    return out


def parse_provider_option(text: str) -> tuple[str, str]:
    """'key=value' (the CLI's --provider-option) -> (key, value); the value may contain '='."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"a provider option is key=value, got {text!r}")
    return key.strip(), value.strip()


def session_providers(name: str, options: Mapping[str, str] | None = None) -> list:
    """onnxruntime's `providers` argument for a session on `name`: the provider with its options, then the CPU
    provider for the nodes it does not take (none for the CPU provider itself)."""
    spec = provider_spec(name)
    first = (spec.ort_name, dict(options or {}))
    return [first] if spec.name == CPU else [first, (_BY_NAME[CPU].ort_name, {})]
