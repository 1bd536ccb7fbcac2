"""Benchmark genrt against torch eager on the same weights, for every provider, precision and thread count.

    python -m benchmarks                  # full run: writes benchmarks/results/latest.{json,md,png}
    python -m benchmarks --quick          # smoke run (a few repeats, fewer cases)

Each measurement runs in its own process (clean load time and peak RSS). The peers are built from the bundled fp32
model directories, so a fresh clone measures every row (benchmarks.peers): torch eager runs the exact poem model
recovered from its graphs, and the faces generator with its BatchNorms folded as exported; with the `bench` extra
(ctranslate2) the same poem weights are converted to CTranslate2 (fp32 and int8, tokens checked against torch).
--faces-checkpoint / --poems-checkpoint measure training checkpoints instead. Needs torch (the train extra).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.report import write_markdown, write_png
from genrt.extras import install_hint

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "genrt" / "models"


def run_task(task: str, *args: str) -> list[dict]:
    cmd = [sys.executable, "-m", "benchmarks.measure", task, *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        print(f"  skipped {task} {' '.join(args)}: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return []
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_dirs(kind: str, extra: list[str]) -> list[Path]:
    dirs = [Path(d) for d in extra] or sorted(p for p in MODELS.glob(f"{kind}*") if (p / "manifest.json").is_file())
    return dirs


def machine_info() -> dict:
    import onnxruntime as ort
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    from benchmarks.timing import cpu_info
    info = {"cpu": cpu, "cpu_flags": cpu_info()["flags"], "cores": os.cpu_count(), "python": platform.python_version(), "numpy": _version("numpy"),
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers(), "torch": _version("torch"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return info


def graph_ops(model_dirs: list[Path]) -> dict[str, dict[str, dict[str, int]]]:
    """{model dir name: {graph: {op type: count}}}: which onnxruntime kernels each measured graph runs
    (MatMulNBits = int8 blocks, MultiHeadAttention = fused attention, ...). Needs onnx; {} without it."""
    try:
        import onnx
    except ImportError:
        return {}
    from collections import Counter
    from genrt.contract import read_manifest
    out = {}
    for d in model_dirs:
        manifest = read_manifest(d)
        out[d.name] = {name: dict(Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in onnx.load(
            str(d / spec.file), load_external_data=False).graph.node).most_common())
            for name, spec in manifest.graphs().items()}
    return out


def _has_module(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> None:
    from genrt.runtime import available_providers, physical_cores
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: few repeats and cases")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    parser.add_argument("--name", default="latest", help="file stem of the outputs")
    parser.add_argument("--faces-model", action="append", default=[], help="faces model dir (default: bundled)")
    parser.add_argument("--poems-model", action="append", default=[], help="poems model dir (default: bundled)")
    parser.add_argument("--faces-checkpoint", default=str(MODELS / "faces"),
                        help="torch peer: a training checkpoint or a fp32 faces model directory [default: bundled]")
    parser.add_argument("--poems-checkpoint", default=None,
                        help="torch/CTranslate2 peer: a training checkpoint [default: the bundled fp32 model's "
                             "weights, recovered by benchmarks.peers]")
    parser.add_argument("--threads", type=int, nargs="*", default=None, help="default: 1 and all physical cores")
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args(argv)

    threads = args.threads or sorted({1, physical_cores()})
    quick = ["--quick"] if args.quick else []
    rows: list[dict] = []
    for provider in available_providers():
        for kind, extra in (("faces", args.faces_model), ("poems", args.poems_model)):
            for model in model_dirs(kind, extra):
                for t in threads if provider == "cpu" else [1]:
                    print(f"{kind} {model.name} {provider} threads={t}", file=sys.stderr)
                    rows += run_task(f"{kind}-onnx", "--model", str(model), "--provider", provider,
                                     "--threads", str(t), *quick)
    if not args.skip_torch:
        rows += peer_rows(args, threads, quick)

    dirs = [d for kind, extra in (("faces", args.faces_model), ("poems", args.poems_model))
            for d in model_dirs(kind, extra)]
    result = {"machine": machine_info(), "quick": args.quick, "graph_ops": graph_ops(dirs), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / args.name
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    write_markdown(result, stem.with_suffix(".md"))
    write_png(result, stem.with_suffix(".png"))
    print(f"wrote {stem}.json, .md, .png ({len(rows)} measurements)")


def peer_rows(args, threads: list[int], quick: list[str]) -> list[dict]:
    """torch eager (faces, poems) and CTranslate2 (poems) on the bundled weights, or on the checkpoints given."""
    import tempfile
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.poems_checkpoint is None:
            args.poems_checkpoint = str(Path(tmp) / "poems_weights.pt")
            done = subprocess.run([sys.executable, "-m", "benchmarks.peers", "poems", str(MODELS / "poems"),
                                   args.poems_checkpoint], capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                print(f"  poems peer weights not recovered: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        rows += _peer_runs(args, threads, quick)
    return rows


def _peer_runs(args, threads: list[int], quick: list[str]) -> list[dict]:
    rows: list[dict] = []
    for kind, ckpt in (("faces", args.faces_checkpoint), ("poems", args.poems_checkpoint)):
        if Path(ckpt).exists():
            for t in threads:
                print(f"{kind} torch eager threads={t}", file=sys.stderr)
                rows += run_task(f"{kind}-torch", "--checkpoint", ckpt, "--threads", str(t), *quick)
        else:
            print(f"  no {kind} checkpoint at {ckpt}: torch baseline skipped", file=sys.stderr)
    if not _has_module("ctranslate2"):
        print(f"  ctranslate2 not installed ({install_hint('bench')}): CTranslate2 baseline skipped",
              file=sys.stderr)
    elif not Path(args.poems_checkpoint).is_file():
        print(f"  no poems checkpoint at {args.poems_checkpoint}: CTranslate2 baseline skipped", file=sys.stderr)
    else:
        for t in threads:
            print(f"poems ctranslate2 threads={t}", file=sys.stderr)
            rows += run_task("poems-ct2", "--checkpoint", args.poems_checkpoint, "--threads", str(t), *quick)
    return rows


if __name__ == "__main__":
    main()
