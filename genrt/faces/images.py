"""Face images on disk: file names, atomic link-safe PNGs, grids."""
from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def seed_image_name(seed: int) -> str:
    """seed0042.png: the file `genrt faces --seeds` writes for one seed (StyleGAN's gen_images.py naming)."""
    return f"seed{seed:04d}.png"


def image_names(count: int, prefix: str = "face", start: int = 0, total: int | None = None) -> list[str]:
    """face_0000.png ...; at least 4 digits, more when `total` needs them, so names sort in order."""
    digits = max(4, len(str(max((total or count) - 1, 0))))
    return [f"{prefix}_{i:0{digits}d}.png" for i in range(start, start + count)]


# The names genrt faces writes, matched whole (fullmatch): ASCII digits only, no trailing newline, so a user's file
# whose name merely looks like one (other digit scripts, "face_0001.png\n") is never taken for genrt's.
OWN_FILE = re.compile(r"(?:(?:face|frame)_[0-9]{4,}\.png|seed[0-9]{4,}\.png|grid\.png)")


def own_files(out_dir: str | Path) -> list[Path]:
    """Files (or links) in out_dir whose names genrt faces writes: an earlier run's output."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if OWN_FILE.fullmatch(p.name) and (p.is_symlink() or p.is_file()))


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """One (H, W, 3) uint8 image as PNG; the bytes depend only on the pixels. Written to a temporary file beside
    `path`, then renamed over it: a crash never leaves half a PNG, and a link already at `path` is replaced, never
    followed. Permissions are those of an ordinary new file (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".genrt-", suffix=".png.tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_images(images: np.ndarray | Sequence[np.ndarray], out_dir: str | Path, prefix: str = "face",
                start: int = 0, total: int | None = None) -> list[Path]:
    """Write images (N, H, W, 3) as out_dir/<prefix>_0000.png ...; `start` numbers a later batch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = image_names(len(images), prefix, start, total)
    return [save_png(image, out_dir / name) for image, name in zip(images, names)]


def make_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile images (N, H, W, C) into one (rows*H + pads, nrow*W + pads, C) uint8 image, black gaps."""
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must have shape (N >= 1, H, W, C), got {images.shape}")
    n, h, w, c = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * h + (rows + 1) * padding, nrow * w + (nrow + 1) * padding, c), dtype=np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = image
    return grid


def save_grid(images: np.ndarray, path: str | Path, nrow: int | None = None, padding: int = 2) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(make_grid(images, nrow, padding), path)


def save_gif(frames: np.ndarray | Sequence[np.ndarray], path: str | Path, fps: int = 25) -> Path:
    """Frames (N, H, W, 3) uint8 as a looping animated GIF, written atomically as save_png writes a PNG."""
    frames = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames]
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".genrt-", suffix=".gif.tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                           duration=max(1, round(1000 / fps)), optimize=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
