"""CUDA proven in one run, on a machine with an NVIDIA GPU and onnxruntime-gpu (README, Install):

    python -m benchmarks.gpu_check          # writes benchmarks/results/gpu_check.{json,md}; about 3 minutes

1. the CUDA-marked tests (`pytest -m cuda`: provider choice, IOBinding with the poem cache on the device, fp32 and
   fp16 parity with the CPU provider, batch invariance on CUDA);
2. the CUDA benchmark rows: faces n = 1/16/256 and poem greedy / beam 4 / batch-16 greedy on the CUDA provider
   (fp32; fp16 too where the user models folder has the variants), beside torch CUDA eager on the same weights
   when torch sees the GPU, and the CPU provider's rows for the same cases.

Exit status 0 only when every CUDA test passed and every row was measured. Without a GPU it prints one line saying
so and exits 1, having run nothing.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEST_TIMEOUT_S = 150
FACE_BATCHES = (1, 16, 256)
POEM_CASES = (("greedy", 1), ("beam4", 1), ("greedy", 16))


def gpu_name() -> str | None:
    """'NVIDIA H100 80GB HBM3, driver 550.54.15, 81559 MiB' from nvidia-smi, None when there is no NVIDIA GPU."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = done.stdout.strip().splitlines()[:1]
    if done.returncode != 0 or not first:
        return None
    name, driver, memory = (part.strip() for part in (first[0].split(",") + ["", ""])[:3])
    return f"{name}, driver {driver}, {memory}"


def preflight() -> tuple[str | None, str | None]:
    """(gpu, None) when the run can go ahead, else (gpu or None, the one line saying why not)."""
    import onnxruntime as ort
    from genrt.providers import available_providers, provider_spec
    gpu = gpu_name()
    if gpu is None:
        return None, ("gpu_check: no NVIDIA GPU here (nvidia-smi finds none): nothing was run; run it on a machine "
                      "with an NVIDIA GPU and onnxruntime-gpu")
    if "cuda" not in available_providers():
        return gpu, (f"gpu_check: {gpu}, but onnxruntime {ort.__version__} has no CUDA provider; get it with: "
                     f"{provider_spec('cuda').install}")
    return gpu, None


def run_tests(out: Path) -> dict:
    """pytest -m cuda in a child process -> {'passed': n, 'failed': n, 'skipped': n, 'errors': n, 'seconds': s}."""
    import xml.etree.ElementTree as ET
    report = out / "gpu_check_tests.xml"
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                               f"--junitxml={report}", "tests"], cwd=ROOT, capture_output=True, text=True,
                              timeout=TEST_TIMEOUT_S)
        tail = done.stdout.strip().splitlines()[-1:]
    except subprocess.TimeoutExpired:
        return {"passed": 0, "failed": 0, "skipped": 0, "errors": 1, "seconds": TEST_TIMEOUT_S,
                "summary": f"timed out after {TEST_TIMEOUT_S} s"}
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    if report.is_file():
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        tests, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        counts = {"passed": tests - failures - errors - skipped, "failed": failures, "skipped": skipped,
                  "errors": errors}
        failed_names = [f"{case.get('classname')}.{case.get('name')}" for case in suite.iter("testcase")
                        if case.find("failure") is not None or case.find("error") is not None]
        counts["failed_tests"] = failed_names
        report.unlink()
    return {**counts, "seconds": time.perf_counter() - t0, "summary": " ".join(tail)}


def variant_dirs(kind: str) -> list[Path]:
    """The bundled fp32 directory, and the user models folder's fp16 variant when there is one."""
    from genrt.runtime import bundled_model_dir, user_models_dir
    dirs = [bundled_model_dir(kind)]
    fp16 = user_models_dir() / f"{kind}_fp16"
    return dirs + ([fp16] if (fp16 / "manifest.json").is_file() else [])


def torch_rows(quick: bool) -> list[dict]:
    """torch CUDA eager on the bundled fp32 faces weights (BatchNorm folded, as exported): n = FACE_BATCHES."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    from benchmarks.peers import folded_faces_generator
    from benchmarks.timing import time_ms
    from genrt.runtime import bundled_model_dir
    t0 = time.perf_counter()
    folded, nz = folded_faces_generator(bundled_model_dir("faces"))
    folded = folded.to("cuda").eval()
    load_s = time.perf_counter() - t0
    rows = []
    for n in FACE_BATCHES:
        z = torch.from_numpy(np.random.default_rng(0).standard_normal((n, nz), dtype=np.float32)).to("cuda")

        @torch.inference_mode()
        def run():  # the graph's work: generator, then uint8 HWC on the host
            return ((folded(z) + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        stats = time_ms(run, repeats=3 if quick else max(5, 200 // n))
        rows.append({"model": "faces", "engine": "torch-eager", "provider": "cuda", "precision": "fp32", "n": n,
                     **stats, "images_per_s": n / stats["median_ms"] * 1e3, "load_s": load_s,
                     "ran_on": f"torch {torch.__version__} CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}"})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repeats")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--skip-tests", action="store_true", help="benchmark rows only")
    args = parser.parse_args(argv)
    gpu, why_not = preflight()
    if why_not:
        print(why_not, file=sys.stderr)
        return 1
    from benchmarks.providers import machine, run_child, write_results
    from genrt.runtime import physical_cores
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tests = None if args.skip_tests else run_tests(args.out)
    extra = ["--batches", *map(str, FACE_BATCHES), "--greedy-batch", str(POEM_CASES[-1][1])]
    rows: list[dict] = []
    missing = []
    for kind in ("faces", "poems"):
        for model_dir in variant_dirs(kind):
            for provider, threads in (("cuda", 1), ("cpu", physical_cores())):
                if provider == "cpu" and model_dir.name.endswith("_fp16"):
                    continue
                print(f"{kind} {model_dir.name} on {provider}", file=sys.stderr)
                measured = run_child(kind, model_dir, provider, threads, args.quick, {}, extra)
                rows += measured
                if not measured:
                    missing.append(f"{kind} {model_dir.name} on {provider}")
    rows += torch_rows(args.quick)
    info = {**machine(), "gpu": gpu}
    try:
        import torch
        info["torch"] = f"{torch.__version__} (CUDA {torch.version.cuda})" if torch.cuda.is_available() else None
    except ImportError:
        pass
    result = {"machine": info, "quick": args.quick, "threads": "1 (CUDA) / physical cores (CPU)", "tests": tests,
              "missing": missing, "seconds": time.perf_counter() - t0, "rows": rows}
    write_results(result, args.out, "gpu_check")
    ok = (tests is None or (tests["failed"] == tests["errors"] == 0 and tests["passed"] > 0)) and not missing
    verdict = "CUDA path proven" if ok else "CUDA path NOT proven"
    print(f"gpu_check: {verdict} on {gpu}: tests {tests and {k: tests[k] for k in ('passed', 'failed', 'skipped')}}"
          f", {len(rows)} benchmark rows, {result['seconds']:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
