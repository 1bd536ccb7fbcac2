"""How easily a small network tells generated faces from real ones: a graded classifier two-sample test.

    python -m benchmarks.faces_c2st [--seeds 3] [--steps 300] [--out benchmarks/results/faces_c2st.json]

A plain classifier trained to convergence on whole 64x64 images separates generated faces from real ones
perfectly, and JPEG-30 or lightly noised copies of real faces as well, so it cannot rank them. Here a small CNN
(three strided convolutions, ~25 k parameters) gets a fixed budget: `--steps` Adam steps of 64 random 32x32 crops
(flipped at random), half real, half the other set; it is scored on held-out images (five crops each) by its
cross-entropy in nats: ln 2 = 0.693 means it learned nothing that tells the sets apart, lower means the other set
is easier to tell from real faces. Real faces are the trainer's held-out split (the last 1,000 CelebA images by
name, preprocessed by the trainer's load_face), 500 to train on and 500 to test; every other set has 1,000 images
split the same way. Each row is the mean and spread over `--seeds` classifier seeds (the sets stay fixed).

Calibration rows check that the measure orders known degradations of real faces (other real faces from the
training split: the floor; JPEG quality 30; Gaussian noise 4/255 and 8/255; a blur of radius 1), then the bundled
generator at truncation 1.0 and 0.7, and discriminator rejection (2,000 faces drawn, the 1,000 the bundled
model's own discriminator rates most real kept).
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from benchmarks.faces_swd import DEFAULT_DATA, load_real
from benchmarks.report import save_report

ROOT = Path(__file__).resolve().parents[1]
CROP = 32
BATCH = 64
FACES_WEIGHTS = ROOT / "trainers" / "checkpoints" / "faces_weights_fp16.pt"


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


def classifier(seed: int):
    import torch
    import torch.nn as nn
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.LeakyReLU(0.2),          # (B, 16, 16, 16)
        nn.Conv2d(16, 32, 3, 2, 1), nn.LeakyReLU(0.2),         # (B, 32, 8, 8)
        nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),         # (B, 64, 4, 4)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1))


def _crops(images: np.ndarray, rng: np.random.Generator, count: int):
    """`count` random CROP x CROP crops of random images, randomly flipped -> (count, 3, CROP, CROP) in [-1, 1]."""
    import torch
    idx = rng.integers(0, len(images), count)
    y, x = rng.integers(0, 64 - CROP + 1, count), rng.integers(0, 64 - CROP + 1, count)
    out = np.stack([images[i, a:a + CROP, b:b + CROP] for i, a, b in zip(idx, y, x)])
    flip = rng.random(count) < 0.5
    out[flip] = out[flip, :, ::-1]
    return torch.from_numpy(out.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)


def _test_crops(images: np.ndarray):
    """Five fixed crops of each image (corners and centre) -> (5 N, 3, CROP, CROP)."""
    import torch
    at = [(0, 0), (0, 64 - CROP), (64 - CROP, 0), (64 - CROP, 64 - CROP), ((64 - CROP) // 2, (64 - CROP) // 2)]
    out = np.concatenate([images[:, a:a + CROP, b:b + CROP] for a, b in at])
    return torch.from_numpy(out.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)


def c2st(real: np.ndarray, other: np.ndarray, seed: int, steps: int) -> dict:
    """Train on the first halves for `steps`, score the second halves. -> held-out cross-entropy (nats) and
    accuracy (real = 1, other = 0)."""
    import torch
    import torch.nn.functional as F
    half_r, half_o = len(real) // 2, len(other) // 2
    net = classifier(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    labels = torch.cat([torch.ones(BATCH // 2), torch.zeros(BATCH // 2)])
    for _ in range(steps):
        x = torch.cat([_crops(real[:half_r], rng, BATCH // 2), _crops(other[:half_o], rng, BATCH // 2)])
        loss = F.binary_cross_entropy_with_logits(net(x).flatten(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        test_r, test_o = real[half_r:], other[half_o:]
        logit_r = net(_test_crops(test_r)).flatten().view(5, -1).mean(0)
        logit_o = net(_test_crops(test_o)).flatten().view(5, -1).mean(0)
        logits = torch.cat([logit_r, logit_o])
        truth = torch.cat([torch.ones(len(logit_r)), torch.zeros(len(logit_o))])
        xent = float(F.binary_cross_entropy_with_logits(logits, truth))
        acc = float(((logits > 0).float() == truth).float().mean())
    return {"xent": xent, "accuracy": acc}


def generated(count: int, truncation: float = 1.0, model: str | None = None, seed: int = 1) -> np.ndarray:
    import genrt
    return genrt.FaceGenerator.load(model, provider="cpu").generate(count, seed=seed, truncation=truncation)


def discriminator_filtered(count: int, keep: float, model: str | None = None, seed: int = 1) -> np.ndarray:
    """Draw count / keep faces, keep the `count` the bundled model's discriminator scores highest."""
    import torch
    from trainers.common import load_checkpoint
    from trainers.faces_model import Discriminator
    state = load_checkpoint(FACES_WEIGHTS, expected_kind="faces-dcgan-weights")
    D = Discriminator(state["config"].get("ndf", 64))
    D.load_state_dict({k: v.float() for k, v in state["discriminator"].items()})
    D.eval()
    faces = generated(int(round(count / keep)), model=model, seed=seed)
    with torch.no_grad():
        x = torch.from_numpy(faces.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
        scores = torch.cat([D(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()
    return faces[np.argsort(-scores)[:count]]


def rows(data: Path, seeds: int, steps: int, model: str | None) -> list[dict]:
    import torch
    torch.set_num_threads(2)
    real = load_real(data)                                                     # (1000, 64, 64, 3) held out
    others = load_real(data, "train", count=len(real))
    sets = {
        "real (other faces from the training split)": lambda: others,
        "real, JPEG quality 30": lambda: jpeg(others, 30),
        "real, noise 4/255": lambda: noise(others, 4.0),
        "real, noise 8/255": lambda: noise(others, 8.0),
        "real, blur radius 1": lambda: blur(others, 1.0),
        "generated, truncation 1.0": lambda: generated(len(real), 1.0, model),
        "generated, truncation 0.7": lambda: generated(len(real), 0.7, model),
        "generated, discriminator keeps 1 in 2": lambda: discriminator_filtered(len(real), 0.5, model),
    }
    out = []
    for name, make in sets.items():
        other = make()
        t0 = time.time()
        runs = [c2st(real, other, seed, steps) for seed in range(seeds)]
        xent = [r["xent"] for r in runs]
        acc = [r["accuracy"] for r in runs]
        out.append({"set": name, "xent_mean": float(np.mean(xent)), "xent_std": float(np.std(xent)),
                    "accuracy_mean": float(np.mean(acc)), "runs": runs, "seconds": time.time() - t0})
        print(out[-1]["set"], f"{out[-1]['xent_mean']:.3f} ± {out[-1]['xent_std']:.3f}", flush=True)
    return out


def markdown(report: dict) -> str:
    lines = [f"Classifier two-sample test, {report['steps']} steps of {BATCH} crops of {CROP}x{CROP}, "
             f"{report['seeds']} classifier seeds; 500 + 500 images a set; model {report['model']}; "
             f"{report['date']}. Held-out cross-entropy in nats: 0.693 = indistinguishable from real faces, "
             f"lower = easier to tell apart.", "",
             "| set | held-out cross-entropy (mean ± sd) | accuracy |", "|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['set']} | {r['xent_mean']:.3f} ± {r['xent_std']:.3f} | {r['accuracy_mean']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None, help="faces model directory (default: bundled)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "faces_c2st.json")
    args = parser.parse_args(argv)
    report = {"model": args.model or "bundled", "seeds": args.seeds, "steps": args.steps,
              "date": time.strftime("%Y-%m-%d"), "rows": rows(args.data, args.seeds, args.steps, args.model)}
    save_report(args.out, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
