"""Face quality against held-out CelebA: ProGAN's sliced Wasserstein distance, a diversity ratio, colour statistics.

    python -m benchmarks.faces_swd --calibrate --model genrt/models/faces --model genrt/models/faces_int8 \\
                                   --out benchmarks/results/faces_swd.json
    python -m benchmarks.faces_swd --run ~/genrt-runs/faces          # every snapshots/step_*.pt, cached in swd.json

SWD (Karras et al. 2018, progressive_growing_of_gans metrics/sliced_wasserstein.py): a Laplacian pyramid of each
image set (levels 64, 32 and 16; the 5x5 binomial kernel [1,4,6,4,1]/16, mirror edges; the coarsest level is the
Gaussian level itself), 128 random 7x7x3 patches per image and level, each set's descriptors normalised per channel
with its own mean and std, then per level the mean |sorted projection difference| over 512 random unit directions
x 4 repeats, reported x10^3. Lower is better; the real-vs-real row of --calibrate is the sampling floor.

Diversity: mean pairwise L2 distance between the images of a set (in [-1, 1] pixel space, all pairs of up to 1000
images), divided by the same for the real held-out set: about 1 for real faces, 0 for a collapsed generator.

The real faces are the trainer's held-out split (the last 1000 by name, which training never reads), preprocessed
with the trainer's own `load_face`. The SWD and diversity functions are numpy only; loading data, snapshots
(torch) and ONNX models (onnxruntime) happens only in the functions that need them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "celeba"      # FacesConfig.data, relative to the repository root
DEFAULT_HOLDOUT = 1000                                         # FacesConfig.holdout
LEVELS = (64, 32, 16)                                          # pyramid resolutions, finest first
PATCH_SIZE = 7
PATCHES_PER_IMAGE = 128
DIRS_PER_REPEAT = 512
DIR_REPEATS = 4
BATCH_SIZE = 100
CACHE_VERSION = 1

_BINOMIAL = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16.0   # separable: outer(k, k) is ProGAN's 5x5 / 256


# ---------------------------------------------------------------- pyramid

def to_unit(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 in [0, 255] or float in [-1, 1] -> float32 in [-1, 1]."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 127.5 - 1.0
    return images.astype(np.float32, copy=False)


def _filter_axis(x: np.ndarray, axis: int, kernel: np.ndarray) -> np.ndarray:
    """Convolve along one axis with a 5-tap kernel; mirror edges (scipy.ndimage 'mirror' = numpy 'reflect')."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    padded = np.pad(x, pad, mode="reflect")
    n = x.shape[axis]
    out = np.zeros_like(x)
    index = [slice(None)] * x.ndim
    for i, w in enumerate(kernel):
        index[axis] = slice(i, i + n)
        out += w * padded[tuple(index)]
    return out


def gaussian_blur(x: np.ndarray, passes: int = 1) -> np.ndarray:
    """The separable 5x5 binomial blur (sigma ~1 px per pass) of (N, H, W, C) float images, mirror edges."""
    x = np.asarray(x, dtype=np.float32)
    for _ in range(passes):
        x = _filter_axis(_filter_axis(x, 1, _BINOMIAL), 2, _BINOMIAL)
    return x


def pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur, then keep every other row and column: (N, H, W, C) -> (N, H/2, W/2, C) (as cv2.pyrDown)."""
    return gaussian_blur(x)[:, ::2, ::2]


def pyr_up(x: np.ndarray) -> np.ndarray:
    """Zero-insert to double the size, then blur with 4x the kernel: (N, H, W, C) -> (N, 2H, 2W, C) (cv2.pyrUp)."""
    n, h, w, c = x.shape
    up = np.zeros((n, 2 * h, 2 * w, c), dtype=np.float32)
    up[:, ::2, ::2] = x
    return _filter_axis(_filter_axis(up, 1, 2 * _BINOMIAL), 2, 2 * _BINOMIAL)


def laplacian_pyramid(images: np.ndarray, levels: int = len(LEVELS)) -> list[np.ndarray]:
    """[level - pyr_up(next level), ..., coarsest Gaussian level], finest first; each (N, H/2^i, W/2^i, 3) float32
    from images in [-1, 1] (uint8 is converted)."""
    gauss = [to_unit(images)]
    for _ in range(1, levels):
        gauss.append(pyr_down(gauss[-1]))
    return [g - pyr_up(nxt) for g, nxt in zip(gauss[:-1], gauss[1:])] + [gauss[-1]]


# ---------------------------------------------------------------- descriptors and SWD

def extract_patches(level: np.ndarray, patches_per_image: int, rng: np.random.Generator,
                    patch_size: int = PATCH_SIZE) -> np.ndarray:
    """`patches_per_image` random patch_size^2 x C patches wholly inside each image of (N, H, W, C):
    (N * patches_per_image, patch_size, patch_size, C) float32, image by image."""
    n, h, w, _ = level.shape
    r = patch_size // 2
    m = n * patches_per_image
    img = np.repeat(np.arange(n), patches_per_image)[:, None, None]                  # (M, 1, 1)
    offsets = np.arange(-r, r + 1)
    ys = rng.integers(r, h - r, size=m)[:, None, None] + offsets[None, :, None]       # (M, P, 1)
    xs = rng.integers(r, w - r, size=m)[:, None, None] + offsets[None, None, :]       # (M, 1, P)
    return level[img, ys, xs]                                                         # (M, P, P, C)


def normalize_descriptors(patches: np.ndarray) -> np.ndarray:
    """ProGAN's finalize_descriptors: subtract each channel's mean and divide by its std over all patches and
    pixels of the set; (M, P, P, C) -> (M, P*P*C) float32."""
    patches = np.asarray(patches, dtype=np.float32)
    axes = tuple(range(patches.ndim - 1))
    mean = patches.mean(axis=axes, dtype=np.float64)
    std = patches.std(axis=axes, dtype=np.float64)
    out = (patches - mean.astype(np.float32)) / np.maximum(std, 1e-8).astype(np.float32)
    return out.reshape(len(out), -1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                       dirs_per_repeat: int = DIRS_PER_REPEAT, repeats: int = DIR_REPEATS,
                       chunk: int = 128) -> float:
    """Mean over `repeats` x `dirs_per_repeat` random unit directions of the mean |sorted projections of a -
    sorted projections of b|. a, b: (M, D) descriptors; the larger set is subsampled (rng) to the smaller's size.
    Directions are processed `chunk` at a time to bound memory."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"descriptor sets must be (M, D) with the same D, got {a.shape} and {b.shape}")
    m = min(len(a), len(b))
    if len(a) > m:
        a = a[np.sort(rng.choice(len(a), m, replace=False))]
    if len(b) > m:
        b = b[np.sort(rng.choice(len(b), m, replace=False))]
    a, b = np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)
    total, count = 0.0, 0
    for _ in range(repeats):
        dirs = rng.standard_normal((a.shape[1], dirs_per_repeat))                     # (D, dirs)
        dirs = (dirs / np.sqrt((dirs ** 2).sum(axis=0, keepdims=True))).astype(np.float32)
        for start in range(0, dirs_per_repeat, chunk):
            d = dirs[:, start:start + chunk]                                           # (D, k)
            pa = d.T @ a.T                                                              # (k, M), rows contiguous
            pb = d.T @ b.T
            pa.sort(axis=1)
            pb.sort(axis=1)
            total += float(np.abs(pa - pb, out=pa).sum(dtype=np.float64))
            count += pa.size
    return total / count


def swd(real: np.ndarray, fake: np.ndarray, seed: int = 0, patches_per_image: int = PATCHES_PER_IMAGE,
        dirs_per_repeat: int = DIRS_PER_REPEAT, repeats: int = DIR_REPEATS,
        levels: Sequence[int] = LEVELS) -> dict[str, float]:
    """SWD x10^3 per pyramid level between two image sets (N, H, W, 3) (uint8, or float in [-1, 1]):
    {"swd64": ..., "swd32": ..., "swd16": ..., "avg": ...} (keys follow `levels`, finest first).

    Each set draws its patches from its own seeded stream (real: [seed, 0], fake: [seed, 1]; directions and
    subsampling: [seed, 2]), so with one seed every fake set meets the same real patches and the same directions,
    and a set against itself still gets two different patch draws. Levels are processed one at a time."""
    rng_real, rng_fake, rng_dirs = (np.random.default_rng([seed, i]) for i in range(3))
    pyr_real = laplacian_pyramid(real, len(levels))
    pyr_fake = laplacian_pyramid(fake, len(levels))
    out: dict[str, float] = {}
    for i, res in enumerate(levels):
        if pyr_real[i].shape[1] != res or pyr_fake[i].shape[1] != res:
            raise ValueError(f"level {i} should be {res}px, got {pyr_real[i].shape[1:3]} and {pyr_fake[i].shape[1:3]}")
        da = normalize_descriptors(extract_patches(pyr_real[i], patches_per_image, rng_real))
        db = normalize_descriptors(extract_patches(pyr_fake[i], patches_per_image, rng_fake))
        pyr_real[i] = pyr_fake[i] = None      # type: ignore[call-overload]   # free the level once used
        out[f"swd{res}"] = 1e3 * sliced_wasserstein(da, db, rng_dirs, dirs_per_repeat, repeats)
        del da, db
    out["avg"] = float(np.mean([out[f"swd{res}"] for res in levels]))
    return out


# ---------------------------------------------------------------- diversity and colour

def mean_pairwise_distance(images: np.ndarray, max_images: int = 1000, seed: int = 0) -> float:
    """Mean L2 distance over all pairs i < j of (up to `max_images`, a seeded subset beyond) images, flattened,
    in [-1, 1] pixel space; via the Gram matrix in float64."""
    x = to_unit(images)
    if len(x) < 2:
        raise ValueError("need at least two images for a pairwise distance")
    if len(x) > max_images:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_images, replace=False))]
    x = x.reshape(len(x), -1).astype(np.float64)
    x -= x.mean(axis=0)                       # distances are shift invariant; centring reduces cancellation
    sq = (x * x).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    iu = np.triu_indices(len(x), k=1)
    return float(np.sqrt(np.clip(d2[iu], 0.0, None)).mean())


def diversity_ratio(fake: np.ndarray, real: np.ndarray, max_images: int = 1000, seed: int = 0) -> float:
    """mean_pairwise_distance(fake) / mean_pairwise_distance(real)."""
    return mean_pairwise_distance(fake, max_images, seed) / mean_pairwise_distance(real, max_images, seed)


def channel_stats(images: np.ndarray) -> dict[str, list[float]]:
    """Per-channel (R, G, B) mean and std in [-1, 1] pixel space."""
    x = to_unit(images)
    return {"mean": [float(v) for v in x.mean(axis=(0, 1, 2), dtype=np.float64)],
            "std": [float(v) for v in x.std(axis=(0, 1, 2), dtype=np.float64)]}


def score(real: np.ndarray, fake: np.ndarray, seed: int = 0, real_distance: float | None = None,
          **swd_options) -> dict:
    """Everything for one fake set against the real set: swd64/32/16, avg, diversity, mean, std, images, swd_s.
    `real_distance` (mean_pairwise_distance(real)) saves recomputing it for every set."""
    start = time.perf_counter()
    row = swd(real, fake, seed=seed, **swd_options)
    row["swd_s"] = time.perf_counter() - start
    if real_distance is None:
        real_distance = mean_pairwise_distance(real, seed=seed)
    row["diversity"] = mean_pairwise_distance(fake, seed=seed) / real_distance
    row.update(channel_stats(fake))
    row["images"] = int(len(fake))
    return row


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
                   truncation: float = 1.0) -> np.ndarray:
    """n faces (n, 64, 64, 3) uint8 from a genrt faces model directory, onnxruntime on CPU."""
    from genrt.faces import FaceGenerator
    return FaceGenerator.load(model_dir, provider="cpu").generate(n, seed=seed, batch_size=batch_size,
                                                                   truncation=truncation)


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

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.faces_swd", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], metavar="DIR", help="genrt faces model dir (repeatable)")
    ap.add_argument("--run", action="append", default=[], metavar="DIR",
                    help="training run folder: score DIR/snapshots/step_*.pt, cached in DIR/swd.json (repeatable)")
    ap.add_argument("--truncation", type=float, nargs="+", default=[1.0],
                    help="score each --model at these truncation psi values (default 1.0 = off)")
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

    options = dict(patches_per_image=args.patches, dirs_per_repeat=args.dirs, repeats=args.repeats)
    start = time.perf_counter()
    real = load_real(args.data, "holdout", args.holdout)
    print(f"real held-out: {len(real)} images from {args.data} ({time.perf_counter() - start:.1f} s)")
    real_distance = mean_pairwise_distance(real, seed=args.seed)
    reference = {"name": f"real held-out ({len(real)})", **channel_stats(real),
                 "mean_pairwise_distance": real_distance}
    rows: list[dict] = []

    def add(name: str, fake: np.ndarray, gen_s: float = 0.0, **extra) -> None:
        row = {"name": name, **extra, **score(real, fake, seed=args.seed, real_distance=real_distance, **options),
               "gen_s": gen_s}
        rows.append(row)
        print(f"  {name}: swd avg {row['avg']:.2f}, diversity {row['diversity']:.3f} "
              f"[gen {gen_s:.1f} s + score {row['swd_s']:.1f} s]")

    if args.calibrate:
        other = load_real(args.data, "train", args.holdout, count=len(real))
        for name, images in calibration_sets(real, other, seed=args.seed).items():
            add(name, images)
    for model in args.model:
        for psi in args.truncation:
            t = time.perf_counter()
            fake = generate_model(model, args.n, args.seed, truncation=psi)
            name = str(model) if psi == 1.0 else f"{model} truncation {psi:g}"
            add(name, fake, time.perf_counter() - t, model=str(model), truncation=psi)
    for run in args.run:
        print(f"run {run}:")
        settings = {"data": str(Path(args.data).resolve()), "holdout": args.holdout}
        for row in score_run(run, real, n=args.n, seed=args.seed, settings=settings, **options):
            rows.append({**row, "name": f"{Path(run).name} {row['name']}"})
            if row.get("holdout", args.holdout) != args.holdout:
                print(f"  warning: {row['snapshot']} trained with holdout={row['holdout']}, scored against "
                      f"holdout={args.holdout}")

    table = markdown_table(rows, reference)
    print()
    print(table, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        settings = {"n": args.n, "seed": args.seed, "data": str(args.data), "holdout": args.holdout,
                    "levels": list(LEVELS), "patch_size": PATCH_SIZE, **options}
        _write_json(args.out, {"settings": settings, "reference": reference, "rows": rows})
        args.out.with_suffix(".md").write_text(
            f"SWD x10^3 (ProGAN, levels 64/32/16) against {reference['name']}; diversity = mean pairwise L2 / "
            f"real's; pixels in [-1, 1]; s = seconds to generate and score.\n\n" + table)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
