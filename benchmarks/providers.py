"""Execution providers side by side in one run: faces n = 1/16/64 and poem greedy / beam 4 / batched greedy
tokens/s, on every provider the installed onnxruntime offers (CPU, and OpenVINO with onnxruntime-openvino), each
with both bundled precisions, and where each graph's nodes ran (onnxruntime's node placement).

    python -m benchmarks.providers                     # writes benchmarks/results/providers.{json,md}
    python -m benchmarks.providers --quick             # smoke run: few repeats
    python -m benchmarks.providers --providers cpu openvino --provider-option openvino:num_of_threads=2

Each (provider, model) runs in its own process: load time is clean, and onnxruntime's verbose log of that load,
which lists the nodes each provider took, is read from its stderr. CUDA rows come from `python -m
benchmarks.gpu_check` (benchmarks/results/gpu_check.json), merged into the same table when present.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.timing import time_ms

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "genrt" / "models"
RESULTS = ROOT / "benchmarks" / "results"
FACE_BATCHES = (1, 16, 64)
POEM_CASES = (("greedy", 1), ("beam4", 1), ("greedy", 8))     # (search, prompts per call)
VERBOSE, WARNING = 0, 2                                       # onnxruntime logger severities


def bundled_dirs(kind: str) -> list[Path]:
    return sorted(p for p in MODELS.glob(f"{kind}*") if (p / "manifest.json").is_file())


# ---------------------------------------------------------------- one (provider, model) in a child process

def measure(kind: str, model_dir: str, provider: str, threads: int, quick: bool, options: dict,
            batches: tuple[int, ...] = FACE_BATCHES, cases: tuple = POEM_CASES) -> list[dict]:
    """Load with onnxruntime's log at verbose (the node placement goes to stderr), then time. -> rows."""
    import onnxruntime as ort
    ort.set_default_logger_severity(VERBOSE)
    t0 = time.perf_counter()
    if kind == "faces":
        from genrt.faces import FaceGenerator
        model = FaceGenerator.load(model_dir, provider=provider, threads=threads, provider_options=options)
    else:
        model = load_poem_model(model_dir, provider, threads, options)
    load_s = time.perf_counter() - t0
    ort.set_default_logger_severity(WARNING)
    print("=== placements end", file=sys.stderr, flush=True)
    base = {"model": kind, "engine": "genrt", "provider": model.provider, "precision": model.manifest.precision,
            "model_dir": portable(model_dir), "threads": threads, "provider_options": options, "load_s": load_s,
            "ran_on": ran_on(model.provider, options)}
    return (_faces_rows(model, base, quick, batches) if kind == "faces" else
            _poems_rows(model, base, quick, cases))


def portable(path: str | Path) -> str:
    """A model directory as results record it: relative to the checkout when inside it (no machine paths)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return Path(path).name


def load_poem_model(model_dir: str, provider: str, threads: int, options: dict):
    from genrt.poems.model import PoemModel
    return PoemModel.load(model_dir, provider=provider, threads=threads, provider_options=options or None)


def _faces_rows(gen, base: dict, quick: bool, batches: tuple[int, ...]) -> list[dict]:
    rows = []
    for n in batches:
        z = gen.latents(n, seed=0)                                             # (n, nz)
        stats = time_ms(lambda: gen.generate_from_latents(z, batch_size=n), repeats=3 if quick else max(5, 64 // n))
        rows.append({**base, "n": n, **stats, "images_per_s": n / stats["median_ms"] * 1e3})
    return rows


def _poems_rows(model, base: dict, quick: bool, cases: tuple) -> list[dict]:
    from benchmarks.measure import NEW_TOKENS, _decode_cases, _greedy_case, _per_token
    from genrt.poems.tokenizer import CharTokenizer
    tok = CharTokenizer(model.manifest.vocab)
    single = {name: fn for name, batch, fn in _decode_cases(model, tok, quick=True) if batch == 1}
    rows = []
    for search, batch in cases:
        fn = single[search] if batch == 1 else _greedy_case(model, tok, NEW_TOKENS, batch)
        stats = time_ms(fn, repeats=2 if quick else 5, warmup=1)
        rows.append({**base, "search": search, "batch": batch, "cache": "kv", "new_tokens": NEW_TOKENS,
                     **_per_token(stats, batch)})
    return rows


def ran_on(provider: str, options: dict) -> str:
    """What ran the graphs, in words: onnxruntime's provider, its device and the library versions."""
    import onnxruntime as ort
    from genrt.providers import provider_spec
    spec = provider_spec(provider)
    words = f"onnxruntime {ort.__version__} {spec.ort_name}"
    if spec.name == "openvino":
        try:
            import openvino
            words += f", OpenVINO {openvino.__version__.split('-')[0]}"
        except ImportError:
            pass
        words += f", device {options.get('device_type', 'CPU')}"
    elif spec.name == "cuda":
        words += f", device {options.get('device_id', '0')}"
    return words


# ---------------------------------------------------------------- node placement from onnxruntime's verbose log

_PLACED = re.compile(r"(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)")


def placements(log: str, graphs: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """onnxruntime's verbose session log -> {graph: {provider: {op type: count}}}, sessions in creation order
    (= `graphs`). 'All nodes placed on' blocks list no ops: {'all nodes': count}. Fused provider subgraphs
    ('OpenVINO-EP-subgraph_3') count as one op type ('OpenVINO-EP-subgraph')."""
    sessions: list[dict[str, Counter]] = []
    current: Counter | None = None
    for line in log.splitlines():
        if "VerifyEachNodeIsAssignedToAnEp]" not in line:
            continue
        text = line.split("VerifyEachNodeIsAssignedToAnEp]", 1)[1]
        if text.strip() == "Node placements":
            sessions.append({})
            current = None
        elif (m := _PLACED.search(text)) and sessions:
            current = sessions[-1].setdefault(m.group(1), Counter())
            if text.strip().startswith("All nodes"):
                current["all nodes"] = int(m.group(2))
        elif current is not None and text.startswith("   "):
            op = re.sub(r"_\d+$", "", text.strip().split(" ")[0])
            current[op] += 1
    return {g: {p: dict(c) for p, c in s.items()} for g, s in zip(graphs, sessions)}


def placement_words(placement: dict[str, dict[str, dict[str, int]]]) -> str:
    """{graph: {provider: {op: n}}} -> 'decoder: OpenVINO 9 subgraphs, CPU MultiHeadAttention x8 Cast x1'."""
    parts = []
    for graph, by_provider in placement.items():
        words = []
        for provider, ops in by_provider.items():
            short = provider.replace("ExecutionProvider", "")
            if "all nodes" in ops:
                words.append(f"{short} all {ops['all nodes']} nodes")
            else:
                words.append(short + " " + " ".join(
                    f"{n} subgraph{'s' if n > 1 else ''}" if op.endswith("-EP-subgraph") else f"{op} x{n}"
                    for op, n in sorted(ops.items(), key=lambda kv: -kv[1])))
        parts.append(f"{graph}: " + ", ".join(words))
    return "; ".join(parts)


def run_child(kind: str, model_dir: Path, provider: str, threads: int, quick: bool, options: dict,
              extra: list[str] = ()) -> list[dict]:
    """measure() in a child process; [] (and a line on stderr) when it failed. extra: --batches / --greedy-batch."""
    cmd = [sys.executable, "-m", "benchmarks.providers", "--child", kind, "--model", str(model_dir),
           "--providers", provider, "--threads", str(threads), "--options-json", json.dumps(options), *extra]
    if quick:
        cmd.append("--quick")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        last = [ln for ln in done.stderr.strip().splitlines() if "VerifyEachNode" not in ln][-1:]
        print(f"  skipped {kind} {model_dir.name} on {provider}: {last}", file=sys.stderr)
        return []
    from genrt.contract import read_manifest
    graphs = list(read_manifest(model_dir).graphs())
    placed = placements(done.stderr.split("=== placements end")[0], graphs)
    return [{**row, "placement": placed, "placed": placement_words(placed)}
            for row in json.loads(done.stdout.strip().splitlines()[-1])]


# ---------------------------------------------------------------- the run

def machine() -> dict:
    import platform
    from datetime import datetime, timezone

    import onnxruntime as ort

    from benchmarks.timing import cpu_info
    from genrt.providers import available_providers
    info = cpu_info()
    try:
        import openvino
        ov = openvino.__version__
    except ImportError:
        ov = None
    from importlib import metadata
    wheels = {}
    for dist in ("onnxruntime", "onnxruntime-openvino", "onnxruntime-gpu"):
        try:
            wheels[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": info["model"], "cpu_flags": info["flags"], "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "onnxruntime": ort.__version__,
            "onnxruntime_wheels": wheels, "openvino": ov, "providers": available_providers(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def parse_options(items: list[str]) -> dict[str, dict[str, str]]:
    """['openvino:num_of_threads=2', ...] -> {'openvino': {'num_of_threads': '2'}}."""
    from genrt.providers import parse_provider_option
    out: dict[str, dict[str, str]] = {}
    for item in items:
        provider, sep, option = item.partition(":")
        if not sep:
            raise SystemExit(f"--provider-option is PROVIDER:KEY=VALUE, got {item!r}")
        key, value = parse_provider_option(option)
        out.setdefault(provider, {})[key] = value
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--providers", nargs="*", default=None,
                        help="default: every provider the installed onnxruntime offers except CUDA "
                             "(benchmarks.gpu_check measures that)")
    parser.add_argument("--provider-option", action="append", default=[], metavar="PROVIDER:KEY=VALUE")
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--quick", action="store_true", help="smoke run: few repeats")
    parser.add_argument("--kinds", nargs="*", choices=["faces", "poems"], default=["faces", "poems"])
    parser.add_argument("--faces-model", action="append", default=[], help="default: the bundled ones")
    parser.add_argument("--poems-model", action="append", default=[], help="default: the bundled ones")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="providers")
    parser.add_argument("--child", choices=["faces", "poems"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--options-json", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, nargs="*", default=list(FACE_BATCHES), help=argparse.SUPPRESS)
    parser.add_argument("--greedy-batch", type=int, default=POEM_CASES[-1][1], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from genrt.runtime import available_providers, physical_cores, resolve_provider
    threads = args.threads or physical_cores()
    if args.child:
        cases = (*POEM_CASES[:-1], ("greedy", args.greedy_batch))
        rows = measure(args.child, args.model, args.providers[0], threads, args.quick, json.loads(args.options_json),
                       tuple(args.batches), cases)
        print(json.dumps(rows))
        return

    providers = [resolve_provider(p) for p in args.providers] if args.providers else \
        [p for p in available_providers() if p != "cuda"]
    options = parse_options(args.provider_option)
    rows: list[dict] = []
    for kind, given in (("faces", args.faces_model), ("poems", args.poems_model)):
        if kind not in args.kinds:
            continue
        for model_dir in [Path(d) for d in given] or bundled_dirs(kind):
            for provider in providers:
                print(f"{kind} {model_dir.name} on {provider}, {threads} thread(s)", file=sys.stderr)
                rows += run_child(kind, model_dir, provider, threads, args.quick, options.get(provider, {}))
    result = {"machine": machine(), "quick": args.quick, "threads": threads, "rows": rows}
    write_results(result, args.out, args.name)


def write_results(result: dict, out: Path, name: str) -> None:
    """<name>.json and .md; providers.md always shows the CPU providers' rows and gpu_check's CUDA rows together,
    whichever of the two runs came last."""
    from benchmarks.report import providers_markdown
    out.mkdir(parents=True, exist_ok=True)
    stem = out / name
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if name == "gpu_check":
        stem.with_suffix(".md").write_text(providers_markdown(None, result), encoding="utf-8")
        cpu, gpu, target = out / "providers.json", result, out / "providers.md"
        cpu = json.loads(cpu.read_text(encoding="utf-8")) if cpu.is_file() else None
    else:
        path = out / "gpu_check.json"
        cpu, gpu, target = result, json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None, \
            stem.with_suffix(".md")
    if cpu is not None:
        target.write_text(providers_markdown(cpu, gpu), encoding="utf-8")
    print(f"wrote {stem}.json, .md ({len(result['rows'])} measurements)")


if __name__ == "__main__":
    main()
