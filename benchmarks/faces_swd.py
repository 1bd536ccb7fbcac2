"""Face quality against held-out CelebA: ProGAN's sliced Wasserstein distance, a diversity ratio, colour statistics.

    python -m benchmarks.faces_swd --calibrate --model genrt/models/faces --model genrt/models/faces_int8 \\
                                   --out benchmarks/results/faces_swd.json
    python -m benchmarks.faces_swd --run runs/faces          # every snapshots/step_*.pt, cached in swd.json

The metrics (SWD x10^3 on pyramid levels 64/32/16, diversity = mean pairwise L2 over the real set's, per-channel
mean and std) are the numpy-only functions of benchmarks.swd, which describes them. Lower SWD is better; the
real-vs-real row of --calibrate is the sampling floor.

The real faces are the trainer's held-out split (the last 1000 by name, which training never reads), preprocessed
with the trainer's own `load_face`. This module loads them, generates the fake sets, caches a run's snapshot scores
and writes the reports; data, snapshots (torch) and ONNX models (onnxruntime) are loaded only in the functions that
need them.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmarks.swd import (
    DIR_REPEATS, DIRS_PER_REPEAT, LEVELS, PATCH_SIZE, PATCHES_PER_IMAGE, channel_stats, gaussian_blur,
    mean_pairwise_distance, score, to_unit,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "celeba"      # FacesConfig.data, relative to the repository root
DEFAULT_HOLDOUT = 1000                                         # FacesConfig.holdout
BATCH_SIZE = 100
CACHE_VERSION = 1


# ---------------------------------------------------------------- data (trainer preprocessing)

_REAL_CACHE: dict[tuple, np.ndarray] = {}


def load_real(data: str | Path = DEFAULT_DATA, split: str = "holdout", holdout: int = DEFAULT_HOLDOUT,
              count: int = 0) -> np.ndarray:
    """Real faces (N, 64, 64, 3) uint8, preprocessed by the trainer's own load_face. split "holdout" = the last
    `holdout` images by name (never trained on); "train" = the first `count` of the training split. Cached in
    memory only."""
    key = (str(Path(data).resolve()), split, holdout, count)
    if key not in _REAL_CACHE:
        from trainers.faces import face_paths, load_face   # imports torch; kept out of the numpy core
        paths = face_paths(data, split=split, holdout=holdout)
        if count:
            paths = paths[:count]
        _REAL_CACHE[key] = np.stack([load_face(p, 64) for p in paths])
    return _REAL_CACHE[key]


def latents(n: int, nz: int, seed: int) -> np.ndarray:
    """The latents FaceGenerator.latents(n, seed) draws: (n, nz) float32 standard normal."""
    return np.random.default_rng(seed).standard_normal((n, nz), dtype=np.float32)


def generate_model(model_dir: str | Path, n: int, seed: int, batch_size: int = BATCH_SIZE,
                   truncation: float = 1.0, keep: float = 1.0) -> np.ndarray:
    """n faces (n, 64, 64, 3) uint8 from a genrt faces model directory, onnxruntime on CPU; keep < 1: filtered
    by the directory's realness graph, as `genrt faces --filter KEEP` does."""
    from genrt.faces import FaceGenerator
    return FaceGenerator.load(model_dir, provider="cpu").generate(n, seed=seed, batch_size=batch_size,
                                                                   truncation=truncation, keep=keep)


def generate_snapshot(path: str | Path, n: int, seed: int, batch_size: int = BATCH_SIZE) -> tuple[np.ndarray, dict]:
    """n faces (n, 64, 64, 3) uint8 from a snapshots/step_*.pt file (same latents as generate_model for a seed,
    same uint8 rounding as the exported graph); returns (images, {"step", "holdout"})."""
    import torch
    from trainers.common import config_from_checkpoint
    from trainers.faces import FacesConfig, build_generator

    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    cfg = config_from_checkpoint(FacesConfig, state)
    G = build_generator(cfg)
    G.load_state_dict(state["generator"])
    G.eval()
    z = latents(n, cfg.nz, seed)
    out = np.empty((n, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x = G(torch.from_numpy(z[i:i + batch_size]).view(-1, cfg.nz, 1, 1))            # (B, 3, H, W)
            out[i:i + len(x)] = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out, {"step": int(state.get("step", -1)), "holdout": int(cfg.holdout)}


# ---------------------------------------------------------------- run folders

def score_run(run_dir: str | Path, real: np.ndarray, n: int = 1000, seed: int = 0, settings: dict | None = None,
              generate: Callable[[Path, int, int], tuple[np.ndarray, dict]] = generate_snapshot,
              log: Callable[[str], None] = print, **swd_options) -> list[dict]:
    """Score every run_dir/snapshots/step_*.pt not yet in run_dir/swd.json (a cache that is thrown away when the
    settings differ), rewrite swd.json and swd.md after each one; returns all rows sorted by step."""
    run_dir = Path(run_dir)
    cache_path = run_dir / "swd.json"
    settings = {"version": CACHE_VERSION, "n": n, "seed": seed, **(settings or {}), **swd_options}
    cache = {}
    if cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except json.JSONDecodeError:
            cache = {}
    scores: dict[str, dict] = cache.get("scores", {}) if cache.get("settings") == settings else {}
    real_distance = None
    for snap in sorted((run_dir / "snapshots").glob("step_*.pt")):
        if snap.name in scores:
            continue
        start = time.perf_counter()
        fake, info = generate(snap, n, seed)
        gen_s = time.perf_counter() - start
        if real_distance is None:
            real_distance = mean_pairwise_distance(real, seed=seed)
        row = {"name": f"step {info['step']}", "snapshot": snap.name, **info,
               **score(real, fake, seed=seed, real_distance=real_distance, **swd_options), "gen_s": gen_s}
        scores[snap.name] = row
        log(f"  {snap.name}: swd avg {row['avg']:.2f} (64 {row['swd64']:.2f}, 32 {row['swd32']:.2f}, "
            f"16 {row['swd16']:.2f}), diversity {row['diversity']:.3f}  [{gen_s + row['swd_s']:.1f} s]")
        _write_json(cache_path, {"settings": settings, "scores": scores})
        (run_dir / "swd.md").write_text(markdown_table(sorted(scores.values(), key=lambda r: r["step"])))
    if not cache_path.is_file() or cache.get("settings") != settings:
        _write_json(cache_path, {"settings": settings, "scores": scores})
    return sorted(scores.values(), key=lambda r: r["step"])


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


# ---------------------------------------------------------------- calibration

def calibration_sets(real: np.ndarray, other_real: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Reference sets against the held-out `real`: other real faces (the floor), the held-out blurred (one 5x5
    binomial pass, sigma ~1 px), uniform noise, and one face (the first of `other_real`) repeated."""
    n = len(real)
    blurred = np.clip(np.round((gaussian_blur(to_unit(real)) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    noise = np.random.default_rng([seed, 99]).integers(0, 256, real.shape, dtype=np.uint8)
    return {"real (train split) vs held-out": other_real,
            "real held-out, blurred": blurred,
            "uniform noise": noise,
            "one face x{}".format(n): np.repeat(other_real[:1], n, axis=0)}


# ---------------------------------------------------------------- report

def _fmt3(values: Sequence[float]) -> str:
    return " ".join(f"{v:+.3f}" for v in values)


def markdown_table(rows: Sequence[dict], reference: dict | None = None) -> str:
    """Rows name | swd16 | swd32 | swd64 | avg | diversity | mean RGB | std RGB (SWD x10^3, pixels in [-1, 1])."""
    lines = ["| name | swd16 | swd32 | swd64 | avg | diversity | mean R G B | std R G B | s |",
             "|---|---:|---:|---:|---:|---:|---|---|---:|"]
    if reference is not None:
        lines.append(f"| {reference['name']} | – | – | – | – | 1.000 | {_fmt3(reference['mean'])} "
                     f"| {_fmt3(reference['std'])} | |")
    for r in rows:
        seconds = r.get("gen_s", 0.0) + r.get("swd_s", 0.0)
        lines.append(f"| {r['name']} | {r['swd16']:.2f} | {r['swd32']:.2f} | {r['swd64']:.2f} | {r['avg']:.2f} "
                     f"| {r['diversity']:.3f} | {_fmt3(r['mean'])} | {_fmt3(r['std'])} | {seconds:.1f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; exits (status 2) when there is nothing to score or --n is below 2."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.faces_swd", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], metavar="DIR", help="genrt faces model dir (repeatable)")
    ap.add_argument("--run", action="append", default=[], metavar="DIR",
                    help="training run folder: score DIR/snapshots/step_*.pt, cached in DIR/swd.json (repeatable)")
    ap.add_argument("--truncation", type=float, nargs="+", default=[1.0],
                    help="score each --model at these truncation psi values (default 1.0 = off)")
    ap.add_argument("--filter", type=float, nargs="+", default=[1.0], metavar="KEEP",
                    help="score each --model filtered as genrt faces --filter KEEP does (default 1.0 = off)")
    ap.add_argument("--calibrate", action="store_true",
                    help="reference rows: real vs real, blurred real, uniform noise, one face repeated")
    ap.add_argument("--out", type=Path, help="write FILE.json and FILE.md")
    ap.add_argument("--n", type=int, default=1000, help="generated images per set (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="latents, patches and directions (default 0)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"CelebA folder (default {DEFAULT_DATA})")
    ap.add_argument("--holdout", type=int, default=DEFAULT_HOLDOUT, help="held-out count, as the trainer's")
    ap.add_argument("--patches", type=int, default=PATCHES_PER_IMAGE, help="patches per image and level")
    ap.add_argument("--dirs", type=int, default=DIRS_PER_REPEAT, help="random directions per repeat")
    ap.add_argument("--repeats", type=int, default=DIR_REPEATS, help="direction repeats")
    args = ap.parse_args(argv)
    if not (args.model or args.run or args.calibrate):
        ap.error("nothing to score: give --model, --run and/or --calibrate")
    if args.n < 2:
        ap.error("--n must be at least 2")
    return args


def score_set(name: str, real: np.ndarray, fake: np.ndarray, seed: int, real_distance: float, options: dict,
              gen_s: float = 0.0, **extra) -> dict:
    """One report row for the fake set (N, H, W, 3) against real: {"name", **extra, **score(...), "gen_s"};
    prints its summary line."""
    row = {"name": name, **extra, **score(real, fake, seed=seed, real_distance=real_distance, **options),
           "gen_s": gen_s}
    print(f"  {name}: swd avg {row['avg']:.2f}, diversity {row['diversity']:.3f} "
          f"[gen {gen_s:.1f} s + score {row['swd_s']:.1f} s]")
    return row


def score_calibration(args: argparse.Namespace, real: np.ndarray, real_distance: float, options: dict) -> list[dict]:
    """--calibrate: a row per calibration_sets entry, the other real faces taken from the training split."""
    other = load_real(args.data, "train", args.holdout, count=len(real))
    return [score_set(name, real, images, args.seed, real_distance, options)
            for name, images in calibration_sets(real, other, seed=args.seed).items()]


def score_models(args: argparse.Namespace, real: np.ndarray, real_distance: float, options: dict) -> list[dict]:
    """A row per --model directory, --truncation psi and --filter keep, generating args.n faces each."""
    rows = []
    for model in args.model:
        for psi in args.truncation:
            for keep in args.filter:
                t = time.perf_counter()
                fake = generate_model(model, args.n, args.seed, truncation=psi, keep=keep)
                name = " ".join([str(model), *([f"truncation {psi:g}"] if psi != 1.0 else []),
                                 *([f"--filter {keep:g}"] if keep != 1.0 else [])])
                rows.append(score_set(name, real, fake, args.seed, real_distance, options, time.perf_counter() - t,
                                      model=str(model), truncation=psi, keep=keep))
    return rows


def score_runs(args: argparse.Namespace, real: np.ndarray, options: dict) -> list[dict]:
    """The score_run rows of every --run folder, named after the folder; warns about snapshots trained with
    another holdout than the one scored against."""
    rows = []
    for run in args.run:
        print(f"run {run}:")
        settings = {"data": str(Path(args.data).resolve()), "holdout": args.holdout}
        for row in score_run(run, real, n=args.n, seed=args.seed, settings=settings, **options):
            rows.append({**row, "name": f"{Path(run).name} {row['name']}"})
            if row.get("holdout", args.holdout) != args.holdout:
                print(f"  warning: {row['snapshot']} trained with holdout={row['holdout']}, scored against "
                      f"holdout={args.holdout}")
    return rows


def write_report(args: argparse.Namespace, rows: list[dict], reference: dict, options: dict) -> None:
    """Print the markdown table; with --out also write FILE.json (settings, reference, rows) and FILE.md."""
    table = markdown_table(rows, reference)
    print()
    print(table, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        settings = {"n": args.n, "seed": args.seed, "data": os.path.relpath(Path(args.data).resolve(), ROOT),
                    "holdout": args.holdout,
                    "levels": list(LEVELS), "patch_size": PATCH_SIZE, **options}
        _write_json(args.out, {"settings": settings, "reference": reference, "rows": rows})
        args.out.with_suffix(".md").write_text(
            f"SWD x10^3 (ProGAN, levels 64/32/16) against {reference['name']}; diversity = mean pairwise L2 / "
            f"real's; pixels in [-1, 1]; s = seconds to generate and score.\n\n" + table)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = dict(patches_per_image=args.patches, dirs_per_repeat=args.dirs, repeats=args.repeats)
    start = time.perf_counter()
    real = load_real(args.data, "holdout", args.holdout)
    print(f"real held-out: {len(real)} images from {args.data} ({time.perf_counter() - start:.1f} s)")
    real_distance = mean_pairwise_distance(real, seed=args.seed)
    reference = {"name": f"real held-out ({len(real)})", **channel_stats(real),
                 "mean_pairwise_distance": real_distance}
    rows: list[dict] = []
    if args.calibrate:
        rows += score_calibration(args, real, real_distance, options)
    rows += score_models(args, real, real_distance, options)
    rows += score_runs(args, real, options)
    write_report(args, rows, reference, options)


if __name__ == "__main__":
    main()
