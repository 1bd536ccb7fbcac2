"""The sliced Wasserstein distance of ProGAN, a diversity ratio and colour statistics of image sets, numpy only.

SWD (Karras et al. 2018, progressive_growing_of_gans metrics/sliced_wasserstein.py): a Laplacian pyramid of each
image set (levels 64, 32 and 16; the 5x5 binomial kernel [1,4,6,4,1]/16, mirror edges; the coarsest level is the
Gaussian level itself), 128 random 7x7x3 patches per image and level, each set's descriptors normalised per channel
with its own mean and std, then per level the mean |sorted projection difference| over 512 random unit directions
x 4 repeats, reported x10^3. Lower is better.

Diversity: mean pairwise L2 distance between the images of a set (in [-1, 1] pixel space, all pairs of up to 1000
images), divided by the same for the real set: about 1 for real faces, 0 for a collapsed generator.

Images are (N, H, W, 3), uint8 in [0, 255] or float in [-1, 1]. Pure computation: no files, models or torch;
benchmarks.faces_swd loads the data, generates the fake sets and writes the reports.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

LEVELS = (64, 32, 16)                                          # pyramid resolutions, finest first
PATCH_SIZE = 7
PATCHES_PER_IMAGE = 128
DIRS_PER_REPEAT = 512
DIR_REPEATS = 4

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
