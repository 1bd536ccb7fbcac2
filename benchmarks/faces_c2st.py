"""How easily a small network tells generated faces from real ones: graded classifier two-sample tests, two views.

    python -m benchmarks.faces_c2st [--seeds 3] [--compare [LABEL=]MODEL_DIR_OR_SNAPSHOT ...] [--out FILE.json]
    python -m benchmarks.faces_c2st --no-calibration --views structure --compare runs/faces/snapshots/step_*.pt

A plain classifier trained to convergence on whole 64x64 images separates generated faces from real ones
perfectly, and JPEG-30 or lightly noised copies of real faces as well, so it cannot rank them. Here small CNNs get
a fixed budget of Adam steps (batches of 64, half real, half the other set, flipped at random) and are scored on
held-out images. Two views of the same sets, which see different things:

- texture: random 32x32 crops of the full-resolution colour image (`--texture-steps`, 800); scored by held-out
  cross-entropy in nats over five fixed crops per image. ln 2 = 0.693: nothing learned that tells the sets apart.
- structure: the whole face as luminance, 4x4 box-averaged to 16x16 (`--structure-steps`, 200). Averaging erases
  pixel noise and JPEG blocks, and the network keeps where things are (no global pooling): it sees the layout of
  eyes, nose, mouth and jaw, which is where a melted face differs. Scored by the area under the ROC curve of the
  held-out images (image and its mirror averaged): 0.5 = indistinguishable, 1.0 = always told apart. Its
  cross-entropy is reported too, but it overfits the 500 held-out faces it trains on, so real against real sits
  above ln 2 there.

Real faces are the trainer's held-out split (the last 1,000 CelebA images by name, preprocessed by the trainer's
load_face), 500 to train on and 500 to test; every other set has `--count` images (4,000), split the same way:
with 1,000 a set, drawing another 1,000 generated faces moved the structure score by as much as 0.035, with 4,000 by
0.009. The other real faces and their degraded copies are the first images of the training split. Each figure is
the mean and spread over `--seeds` classifier seeds (the sets stay fixed; the row with the next latents seed shows
how much a different draw of generated faces moves it).

Calibration rows check that each view orders known degradations of real faces: other real faces from the training
split (the floor), JPEG quality 30, Gaussian noise 4/255 and 8/255, a blur of radius 1, and smooth random warps of
1, 2 and 4 pixels (a displacement field drawn on an 8x8 grid and interpolated: features that slide and bend, as
in a melted face). Then the generator (default: bundled) at truncation 1.0 (and from the next latents seed), 0.9
and 0.7, filtered by its own discriminator as `genrt faces --filter KEEP` does (`--filters`, default 0.5: twice
`--count` faces drawn, the half the discriminator rates most real kept), and `--compare` models.
"""
from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from benchmarks.faces_swd import DEFAULT_DATA, generate_snapshot, load_real
from benchmarks.report import save_report

ROOT = Path(__file__).resolve().parents[1]
BATCH = 64
COUNT = 4000                    # images in each compared set: 2,000 to train on, 2,000 to test
CROP = 32                       # texture view: crop side
STRUCTURE_POOL = 4              # structure view: 64x64 -> 16x16 box average
LUMA = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------- degradations of real faces (uint8 NHWC in, out)

def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    out = []
    for im in images:
        buffer = io.BytesIO()
        Image.fromarray(im).save(buffer, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(out)


def noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).round().astype(np.uint8)


def blur(images: np.ndarray, radius: float) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(radius))) for im in images])


def warp(images: np.ndarray, pixels: float, seed: int = 0, grid: int = 8) -> np.ndarray:
    """Each image resampled through a smooth random displacement field: normal offsets with a standard deviation
    of `pixels` at grid x grid control points, bicubically interpolated to every pixel (bilinear sampling, edges
    repeated). Features slide and bend; texture and colour stay."""
    import torch
    import torch.nn.functional as F
    n, h, w, _ = images.shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()                    # (N, 3, H, W)
    offsets = torch.randn(n, 2, grid, grid, generator=gen) * torch.tensor([2 * pixels / (w - 1),
                                                                           2 * pixels / (h - 1)]).view(1, 2, 1, 1)
    offsets = F.interpolate(offsets, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    where = torch.stack([xs, ys], -1)[None] + offsets                             # (N, H, W, 2) as (x, y)
    out = F.grid_sample(x, where, mode="bilinear", padding_mode="border", align_corners=True)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------- the two views

@dataclass(frozen=True)
class View:
    """What one classifier sees. prepare: uint8 (N, 64, 64, 3) -> whatever batch and tests index;
    batch: (prepared, rng, count) -> (count, C, h, w) float tensor; tests: prepared -> inputs whose logits are
    averaged per image; network: seed -> torch module; steps: the default training budget; score: the headline."""
    name: str
    steps: int
    score: str
    prepare: Callable
    batch: Callable
    tests: Callable
    network: Callable


def _texture_prepare(images: np.ndarray) -> np.ndarray:
    return images


def _texture_batch(images: np.ndarray, rng: np.random.Generator, count: int):
    """`count` random CROP x CROP crops of random images, randomly flipped -> (count, 3, CROP, CROP) in [-1, 1]."""
    import torch
    size = images.shape[1]
    idx = rng.integers(0, len(images), count)
    y, x = rng.integers(0, size - CROP + 1, count), rng.integers(0, size - CROP + 1, count)
    out = np.stack([images[i, a:a + CROP, b:b + CROP] for i, a, b in zip(idx, y, x)])
    flip = rng.random(count) < 0.5
    out[flip] = out[flip, :, ::-1]
    return torch.from_numpy(out.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)


def _texture_tests(images: np.ndarray) -> list:
    """Five fixed crops of each image (corners and centre), each (N, 3, CROP, CROP)."""
    import torch
    far = images.shape[1] - CROP
    at = [(0, 0), (0, far), (far, 0), (far, far), (far // 2, far // 2)]
    return [torch.from_numpy(images[:, a:a + CROP, b:b + CROP].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
            for a, b in at]


def _texture_network(seed: int):
    import torch
    import torch.nn as nn
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.LeakyReLU(0.2),          # (B, 16, 16, 16)
        nn.Conv2d(16, 32, 3, 2, 1), nn.LeakyReLU(0.2),         # (B, 32, 8, 8)
        nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),         # (B, 64, 4, 4)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1))


def _structure_prepare(images: np.ndarray):
    """uint8 (N, 64, 64, 3) -> luminance in [-1, 1], box-averaged: (N, 1, 16, 16) float tensor."""
    import torch
    import torch.nn.functional as F
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0) @ torch.tensor(LUMA)   # (N, 64, 64)
    return F.avg_pool2d(x[:, None], STRUCTURE_POOL)


def _structure_batch(images, rng: np.random.Generator, count: int):
    import torch
    out = images[torch.from_numpy(rng.integers(0, len(images), count))].clone()
    flip = torch.from_numpy(rng.random(count) < 0.5)
    out[flip] = out[flip].flip(-1)
    return out


def _structure_tests(images) -> list:
    return [images, images.flip(-1)]


def _structure_network(seed: int):
    import torch
    import torch.nn as nn
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 1, 1), nn.LeakyReLU(0.2),          # (B, 32, 16, 16)
        nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),         # (B, 64, 8, 8)
        nn.Conv2d(64, 64, 3, 2, 1), nn.LeakyReLU(0.2),         # (B, 64, 4, 4)
        nn.Flatten(), nn.Linear(64 * 4 * 4, 1))                # where a feature is matters: no pooling


VIEWS = {
    "texture": View("texture", 800, "xent", _texture_prepare, _texture_batch, _texture_tests, _texture_network),
    "structure": View("structure", 200, "auc", _structure_prepare, _structure_batch, _structure_tests,
                      _structure_network),
}


def auc(real_logits: np.ndarray, other_logits: np.ndarray) -> float:
    """P(a real image's logit > another set's image's logit), ties counted half: the ROC area (Mann-Whitney)."""
    above = (real_logits[:, None] > other_logits[None, :]).mean()
    ties = (real_logits[:, None] == other_logits[None, :]).mean()
    return float(above + 0.5 * ties)


def c2st(real: np.ndarray, other: np.ndarray, seed: int, steps: int | None = None, view: str = "texture") -> dict:
    """Train on the first halves for `steps`, score the second halves -> held-out cross-entropy (nats), balanced
    accuracy and ROC area (real = 1, other = 0)."""
    import torch
    import torch.nn.functional as F
    v = VIEWS[view]
    steps = v.steps if steps is None else steps
    half_r, half_o = len(real) // 2, len(other) // 2
    train_r, train_o = v.prepare(real[:half_r]), v.prepare(other[:half_o])
    net = v.network(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    labels = torch.cat([torch.ones(BATCH // 2), torch.zeros(BATCH // 2)])
    for _ in range(steps):
        x = torch.cat([v.batch(train_r, rng, BATCH // 2), v.batch(train_o, rng, BATCH // 2)])
        loss = F.binary_cross_entropy_with_logits(net(x).flatten(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        def logits(images):
            return torch.stack([net(t).flatten() for t in v.tests(v.prepare(images))]).mean(0)
        logit_r, logit_o = logits(real[half_r:]), logits(other[half_o:])
        both = torch.cat([logit_r, logit_o])
        truth = torch.cat([torch.ones(len(logit_r)), torch.zeros(len(logit_o))])
        xent = float(F.binary_cross_entropy_with_logits(both, truth))
        # balanced: the test halves hold 500 real faces against 2,000 others, so plain accuracy would not sit
        # at 0.5 for a classifier that learned nothing
        acc = float(((logit_r > 0).float().mean() + (logit_o <= 0).float().mean()) / 2)
    return {"xent": xent, "balanced_accuracy": acc, "auc": auc(logit_r.numpy(), logit_o.numpy())}


# ---------------------------------------------------------------- the sets

def generated(count: int, truncation: float = 1.0, model: str | None = None, seed: int = 1,
              keep: float = 1.0) -> np.ndarray:
    """`count` faces from a genrt faces model directory (default: bundled), or from a trainer snapshot (.pt);
    keep < 1: filtered by the directory's discriminator, as `genrt faces --filter KEEP` does."""
    if model and str(model).endswith(".pt"):
        if truncation != 1.0 or keep != 1.0:
            raise ValueError("truncation and the filter apply to model directories only")
        return generate_snapshot(model, count, seed)[0]
    import genrt
    return genrt.FaceGenerator.load(model, provider="cpu").generate(count, seed=seed, truncation=truncation,
                                                                     keep=keep)


def sets(data: Path, model: str | None, compare: list[str], calibration: bool = True, latents: int = 1,
         count: int = COUNT, filters: tuple[float, ...] = ()) -> dict[str, Callable[[], np.ndarray]]:
    """The sets to score against the held-out faces, by row name: the real floor, degraded real faces (a known
    order of strength), the model, the levers applied to it, then `compare`. Without `calibration`: the real
    floor, the model and `compare` only. Each set has `count` images; generated faces come from the latents of
    seed `latents`."""
    others = load_real(data, "train", count=count)
    if len(others) < count:
        raise ValueError(f"the training split has {len(others)} faces, fewer than --count {count}")
    out = {"real (other faces from the training split)": lambda: others}
    if calibration:
        out.update({
            "real, JPEG quality 30": lambda: jpeg(others, 30),
            "real, noise 4/255": lambda: noise(others, 4.0),
            "real, noise 8/255": lambda: noise(others, 8.0),
            "real, blur radius 1": lambda: blur(others, 1.0),
            "real, warped 1 px": lambda: warp(others, 1.0),
            "real, warped 2 px": lambda: warp(others, 2.0),
            "real, warped 4 px": lambda: warp(others, 4.0),
        })
    out["generated, truncation 1.0"] = lambda: generated(count, 1.0, model, latents)
    if calibration:
        out.update({
            f"generated, truncation 1.0, latents seed {latents + 1}": lambda: generated(count, 1.0, model, latents + 1),
            "generated, truncation 0.9": lambda: generated(count, 0.9, model, latents),
            "generated, truncation 0.7": lambda: generated(count, 0.7, model, latents),
        })
    for keep in filters:
        out[f"generated, --filter {keep:g}"] = lambda keep=keep: generated(count, 1.0, model, latents, keep)
    for entry in compare:
        label, path = compare_entry(entry)
        out[label] = lambda path=path: generated(count, 1.0, path, latents)
    return out


def compare_entry(entry: str) -> tuple[str, str]:
    """--compare "LABEL=PATH" or "PATH" (labelled by its file or folder name) -> (row name, path)."""
    label, sep, path = entry.partition("=")
    if not sep:
        label, path = Path(entry).name, entry
    if not label or not path:
        raise ValueError(f"--compare: expected LABEL=PATH or PATH, got {entry!r}")
    return label, path


def rows(data: Path, seeds: int, steps: dict[str, int], model: str | None, compare: list[str],
         calibration: bool = True, latents: int = 1, first_seed: int = 0, count: int = COUNT,
         filters: tuple[float, ...] = ()) -> list[dict]:
    import torch
    torch.set_num_threads(2)
    real = load_real(data)                                                     # (1000, 64, 64, 3) held out
    out = []
    for name, make in sets(data, model, compare, calibration, latents, count, filters).items():
        other = make()
        row = {"set": name}
        for view, budget in steps.items():
            t0 = time.time()
            runs = [c2st(real, other, seed, budget, view) for seed in range(first_seed, first_seed + seeds)]
            row[view] = {key: {"mean": float(np.mean([r[key] for r in runs])),
                               "sd": float(np.std([r[key] for r in runs]))} for key in runs[0]}
            row[view]["runs"], row[view]["seconds"] = runs, time.time() - t0
        out.append(row)
        print(name, "  ".join(f"{v} {row[v][VIEWS[v].score]['mean']:.3f} ± {row[v][VIEWS[v].score]['sd']:.3f}"
                              for v in steps), flush=True)
    return out


def markdown(report: dict) -> str:
    steps = report["steps"]
    views = [v for v in VIEWS if v in steps]
    head = {"texture": f"texture: cross-entropy (balanced accuracy); {steps.get('texture')} steps of 32x32 crops",
            "structure": f"structure: ROC area (cross-entropy); {steps.get('structure')} steps of 16x16 luminance"}
    first, count = report.get("first_seed", 0), report.get("count", 1000)
    lines = [f"Classifier two-sample tests, classifier seeds {first}–{first + report['seeds'] - 1}, mean ± sd; "
             f"500 + 500 held-out faces against {count // 2:,} + {count - count // 2:,} of each set; generated "
             f"faces from the latents of seed {report.get('latents', 1)}; "
             f"model {report['model']}; {report['date']}. Texture: held-out cross-entropy in nats, 0.693 = "
             f"indistinguishable from real faces, lower = easier to tell apart. Structure: held-out ROC area, "
             f"0.5 = indistinguishable, higher = easier to tell apart.", "",
             "| set | " + " | ".join(head[v] for v in views) + " |", "|---" * (len(views) + 1) + "|"]
    for r in report["rows"]:
        cells = []
        for v in views:
            m = r[v]
            if v == "texture":
                acc = m.get("balanced_accuracy") or m["accuracy"]      # results written before: plain accuracy
                cells.append(f"{m['xent']['mean']:.3f} ± {m['xent']['sd']:.3f} ({acc['mean']:.1%})")
            else:
                cells.append(f"**{m['auc']['mean']:.3f} ± {m['auc']['sd']:.3f}** ({m['xent']['mean']:.3f})")
        lines.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None, help="faces model directory (default: bundled)")
    parser.add_argument("--compare", nargs="*", default=[], metavar="[LABEL=]PATH",
                        help="more faces model directories or trainer snapshots (snapshots/step_*.pt)")
    parser.add_argument("--calibration", action=argparse.BooleanOptionalAction, default=True,
                        help="score the degraded real faces and the levers (default); --no-calibration: the real "
                             "floor, the model and --compare only")
    parser.add_argument("--filters", type=float, nargs="*", default=[0.5], metavar="KEEP",
                        help="rows of the model filtered by its discriminator (genrt faces --filter KEEP)")
    parser.add_argument("--seeds", type=int, default=3, help="classifier seeds per set")
    parser.add_argument("--first-seed", type=int, default=0, help="the first classifier seed")
    parser.add_argument("--latents", type=int, default=1, help="seed of the generated faces' latents")
    parser.add_argument("--count", type=int, default=COUNT, help="images in each set other than the held-out "
                                                                  "faces (half to train on, half to test)")
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated: texture, structure")
    parser.add_argument("--texture-steps", type=int, default=VIEWS["texture"].steps)
    parser.add_argument("--structure-steps", type=int, default=VIEWS["structure"].steps)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "faces_c2st.json")
    args = parser.parse_args(argv)
    try:
        for entry in args.compare:
            compare_entry(entry)
    except ValueError as e:
        parser.error(str(e))
    views = [v.strip() for v in args.views.split(",") if v.strip()]
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        parser.error(f"--views: choose from {', '.join(VIEWS)}; got {args.views!r}")
    steps = {v: getattr(args, f"{v}_steps") for v in views}
    if args.count < 2:
        parser.error(f"--count must be >= 2, got {args.count}")
    if any(not 0 < k <= 1 for k in args.filters):
        parser.error(f"--filters: each KEEP is in (0, 1], got {args.filters}")
    report = {"model": args.model or "bundled", "seeds": args.seeds, "first_seed": args.first_seed,
              "latents": args.latents, "count": args.count, "steps": steps,
              "date": time.strftime("%Y-%m-%d"),
              "rows": rows(args.data, args.seeds, steps, args.model, args.compare, args.calibration, args.latents,
                           args.first_seed, args.count, tuple(args.filters))}
    save_report(args.out, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
