"""onnxruntime sessions: provider choice (genrt.providers), thread count, graph checks against the contract."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnxruntime as ort

from genrt import limits, providers
from genrt.contract import FACES_KIND, POEMS_KIND, GraphSpec, ManifestError, contained_file, read_manifest
from genrt.graph_io import check_graph_io, session_io
from genrt.privacy import disable_onnxruntime_telemetry
from genrt.providers import (CPU, ProviderError, available_providers, check_provider_options, known_names,
                             provider_spec, session_providers)

PROVIDERS = known_names()      # what --provider accepts besides any onnxruntime execution provider name


class GraphRunError(RuntimeError):
    """A model graph failed while running (onnxruntime's message, first line), or returned what the contract
    forbids."""


# onnxruntime's own exception types (Fail, InvalidArgument, RuntimeException, ...): what a failing graph raises
GRAPH_RUN_ERRORS = tuple(e for e in vars(ort.capi.onnxruntime_pybind11_state).values()
                         if isinstance(e, type) and issubclass(e, Exception))


def resolve_provider(requested: str = "auto", quiet: bool = True) -> str:
    """The short name of the provider to run on (genrt.providers): 'auto' -> the best the installed onnxruntime
    offers (CUDA, else CPU), silently: auto asks for the best there is, and CPU is a fine answer. A provider
    named explicitly that is not offered is a ProviderError saying how to get it, never a quiet CPU fallback.
    `quiet` is accepted for the callers that pass it; nothing here prints."""
    return providers.resolve_provider(requested, available_providers())


SYSFS_CPU = Path("/sys/devices/system/cpu")


def physical_cores(sysfs: Path = SYSFS_CPU) -> int:
    """Physical cores this process may run on (onnxruntime is fastest with one thread per physical core): the
    CPUs of its affinity grouped by the kernel's topology (hyperthread siblings count once), on any Linux
    architecture; elsewhere half the logical CPUs (two threads per core, the common case)."""
    try:
        usable = sorted(os.sched_getaffinity(0))
    except AttributeError:                         # no affinity call: macOS, Windows
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in usable:
        try:
            cores.add((sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:                            # no topology to read: each usable CPU, halved when shared
            return max(1, len(usable) // 2 if len(usable) > 1 and _smt_active(sysfs) else len(usable))
    return max(1, len(cores))


def _smt_active(sysfs: Path) -> bool:
    try:
        return (sysfs / "smt" / "active").read_text().strip() == "1"
    except OSError:
        return True                                # unknown: assume hyperthreads, as most x86 servers have


def check_threads(threads: object) -> int | None:
    """None (= physical cores) or a positive integer (numpy integers too) up to limits.MAX_THREADS; anything else
    is a ValueError. Cheap: loaders call it before they open any model file."""
    return limits.check_threads(threads)


# Graphs run once per call before another graph's tight loop (the poem encoder, then the decoder once per new
# character): their worker threads must not spin after the call, or they hold the cores the decoder's lanes need
# (with a spinning encoder pool a 2-thread fp32 decoder once ran slower than a 1-thread one).
NON_SPINNING_GRAPHS = frozenset({"encoder"})


def make_session(path: str | Path, provider: str = "cpu", threads: int | None = None,
                 spin: bool = True, provider_options: dict | None = None) -> ort.InferenceSession:
    """One session per graph, created once and reused. spin=False: idle worker threads sleep at once instead of
    spinning for work (for a graph that runs once before another graph's loop). provider_options go to
    onnxruntime as they are (genrt.providers.check_provider_options)."""
    threads = check_threads(threads)
    provider_options = check_provider_options(provider_options)
    spec = provider_spec(provider)
    disable_onnxruntime_telemetry(ort)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        # no fallback: onnxruntime would otherwise move a session whose provider fails (at start or in a run)
        # to CPU on its own, printing to stdout, while genrt still names the provider asked for
        session = ort.InferenceSession(str(path), sess_options=opts,
                                       providers=session_providers(spec.name, provider_options), enable_fallback=0)
    except Exception as e:
        if not provider_options and spec.ort_name == provider_spec(CPU).ort_name:
            raise
        with_options = f" with the provider options {provider_options}" if provider_options else ""
        raise ProviderError(f"cannot open {Path(path).name} on {spec.ort_name}{with_options}: "
                            f"{str(e).splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    ignored = sorted(set(provider_options) - set(session.get_provider_options().get(spec.ort_name, {})))
    if ignored and spec.ort_name == provider_spec(CPU).ort_name:
        # onnxruntime's CPU provider takes no options and ignores any given without a word: say so instead
        raise ProviderError(f"the CPU provider takes no provider options (got {', '.join(ignored)}); its threads "
                            f"are --threads")
    if spec.ort_name not in session.get_providers():
        # onnxruntime falls back to CPU silently when a provider's libraries fail to load: say so instead
        raise ProviderError(f"onnxruntime offers {spec.ort_name} but could not start it (its libraries missing? "
                            f"for CUDA: CUDA 12 and cuDNN 9); use --provider cpu")
    return session


def hot_loop_run(session) -> Callable:
    """`session.run` for a call made once per generated token: onnxruntime's Python wrapper checks the feed names
    and every OrtValue's device on each call (~6 us of a 0.3 ms int8 decoder step); genrt checked the graph's
    inputs against the contract when it opened the session and feeds host arrays, so the compiled session is
    called directly. Sessions without that inner object (other versions, test doubles) and CUDA sessions (the
    wrapper's provider fallback) keep `session.run`."""
    inner = getattr(session, "_sess", None)
    running = getattr(session, "get_providers", lambda: [])()
    if inner is None or not callable(getattr(inner, "run", None)) or running[:1] != [provider_spec(CPU).ort_name]:
        return session.run
    return lambda output_names, feeds: inner.run(output_names, feeds, None)


def load_checked_session(model_dir: Path, spec: GraphSpec, provider: str, threads: int | None,
                         spin: bool = True, provider_options: dict | None = None) -> ort.InferenceSession:
    """Open a graph (a file inside model_dir) and check its inputs/outputs against the contract, naming every
    mismatch."""
    threads = check_threads(threads)
    path = contained_file(model_dir, spec.file)
    try:
        session = make_session(path, provider, threads, spin, provider_options)
    except ProviderError:
        raise
    except Exception as e:  # onnxruntime raises its own exception types for a corrupt file
        raise ManifestError(str(model_dir), [f"cannot load {spec.file}: {str(e).splitlines()[0]}"]) from None
    inputs, outputs = session_io(session)
    problems = check_graph_io(spec, inputs, outputs)
    if problems:
        raise ManifestError(str(model_dir), problems)
    return session


def bundled_model_dir(name: str) -> Path:
    """Directory of a model shipped inside the genrt package (genrt/models/<name>)."""
    return Path(__file__).resolve().parent / "models" / name


USER_MODELS_ENV = "GENRT_MODELS"
DEFAULT_USER_MODELS = "~/.genrt/models"


def user_models_dir() -> Path | None:
    """Where variants a user made live (e.g. poems_fp16), searched before the bundled ones: $GENRT_MODELS, else
    ~/.genrt/models. Nothing inside the installed package needs editing. None when there is no home directory
    (HOME unset and no password entry): then only the bundled models are searched."""
    try:
        return Path(os.environ.get(USER_MODELS_ENV) or DEFAULT_USER_MODELS).expanduser()
    except RuntimeError:
        return None


PRECISIONS = ("fp32", "int8", "fp16")
# The variant used when the caller names none is the provider's (genrt.providers.PROVIDER_TABLE); a variant lives
# in <models folder>/<name>_<precision>.


def model_dir_or_bundled(model_dir: str | Path | None, name: str, export_hint: str,
                         precision: str | None = None, provider: str = "cpu") -> Path:
    """The given model directory, or the one of the requested (or the provider's default) precision from the user
    models folder, else the package, with a clear error when there is none."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if model_dir is not None:
        if not isinstance(model_dir, (str, os.PathLike)) or not str(model_dir).strip():
            raise ValueError(f"model_dir must be a directory path (str or Path), got {model_dir!r:.60}")
        return Path(model_dir)
    chosen = precision or provider_spec(provider).precision[name]
    names = [name if chosen == "fp32" else f"{name}_{chosen}"]
    if precision is None and chosen != "fp32":
        names.append(name)  # default variant not shipped: fall back to fp32
    models = user_models_dir()
    for variant in names:
        if models is not None and (models / variant / "manifest.json").is_file():
            return models / variant
        if bundled_model_dir(variant).is_dir():
            return bundled_model_dir(variant)
    if chosen == "fp16":  # not shipped: made from the fp32 directory, for GPUs
        export_hint = (f"python -m export.fp16 genrt/models/{name} {DEFAULT_USER_MODELS}/{name}_fp16` in a genrt "
                       f"checkout with the training extras (pip install \".[train]\")")
    elif chosen == "fp32":  # kept in the checkout, not in the wheel (genrt.user_models)
        export_hint = "genrt models install fp32 --from <genrt checkout>"
    raise ManifestError(str(bundled_model_dir(names[0])), [
        f"the {name} model ({chosen}) is neither in {models or DEFAULT_USER_MODELS} (${USER_MODELS_ENV}) nor "
        f"bundled; get one with `{export_hint}{'' if chosen == 'fp16' else '`'} or pass a model directory"])


@dataclass(frozen=True)
class OpenModel:
    """A checked model directory: its manifest and one session per graph (manifest.graphs() names)."""
    model_dir: Path
    manifest: object
    sessions: dict
    provider: str


EXPORT_HINTS = {
    FACES_KIND: ("faces", "python -m export.faces --checkpoint runs/faces/checkpoint.pt --out genrt/models/faces"),
    POEMS_KIND: ("poems", "python -m export.poems --checkpoint runs/poems/checkpoint.pt --out genrt/models/poems"),
}


def open_model_dir(model_dir: str | Path | None, kind: str, provider: str = "auto", threads: int | None = None,
                   precision: str | None = None, default_threads: int | None = None,
                   provider_options: dict | None = None, spin: bool = True,
                   graph_threads: dict[str, int] | None = None) -> OpenModel:
    """The one way every generator opens a model: check the arguments, pick the provider and the directory
    (bundled / user variant of `precision` when None), read and check the manifest, then open and check every
    graph it names. threads None = default_threads (None = physical cores); provider_options go to onnxruntime.
    spin=False: no graph's idle threads spin (the model shares its cores with another loop, as in genrt serve).
    graph_threads: a thread count for some graphs by name, overriding `threads` (a graph run from several threads
    at once, one call per thread: genrt.decoding.lanes)."""
    threads = check_threads(threads)
    provider_options = check_provider_options(provider_options)
    chosen = resolve_provider(provider)
    name, hint = EXPORT_HINTS[kind]
    folder = model_dir_or_bundled(model_dir, name, hint, precision, chosen)
    try:
        manifest = read_manifest(folder, expected_kind=kind)
        check_precision(manifest.precision, precision, folder)
        graph_threads = graph_threads or {}
        sessions = {graph: load_checked_session(folder, spec, chosen,
                                                graph_threads.get(graph, threads or default_threads),
                                                spin=spin and graph not in NON_SPINNING_GRAPHS,
                                                provider_options=provider_options)
                    for graph, spec in manifest.graphs().items()}
    except ManifestError as e:
        models = user_models_dir()
        if model_dir is None and models is not None and folder.parent == models:    # an installed copy broke
            raise ManifestError(str(folder), e.problems + [
                f"it was installed into {models}: install it again (`genrt models install PRECISION --from "
                f"CHECKOUT --force`) or remove {folder}"]) from None
        raise
    return OpenModel(folder, manifest, sessions, chosen)


def check_precision(manifest_precision: str, precision: str | None, model_dir: Path) -> None:
    """A model directory passed together with --precision must be of that precision."""
    if precision is not None and manifest_precision != precision:
        raise ManifestError(str(model_dir), [f"precision is {manifest_precision!r}, asked for {precision!r}"])
