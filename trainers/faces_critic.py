"""A critic for `genrt faces --filter`: a small CNN trained, after the GAN, to tell real faces from the faces of one
exported generator, so that the filter keeps the faces it rates most real.

    python -m trainers.faces_critic --model genrt/models/faces_int8 --out runs/faces_critic/critic.pt
    python -m export.faces --checkpoint GAN.pt --critic runs/faces_critic/critic.pt --out genrt/models/faces --int8

The GAN's own discriminator is a poor filter: it was trained only against the generator of its own step, and
keeping the half it rates most real left the structure measure of benchmarks.faces_c2st level. A critic trained to
convergence on the finished generator's faces learns what still gives them away (a melted eye, a jaw that slides).

Real faces are the GAN's training split (the held-out faces the evaluators compare against stay unseen); generated
ones come from latents of seeds LATENT_SEED and up, apart from those the evaluators draw (seeds 0-2). The critic sees
whole RGB faces, shifted by up to two pixels and mirrored at random (it must learn shapes, not pixels), and a fixed
share of each set is held back to report its ROC area as it trains. Its architecture differs from the evaluator's
classifiers (16x16 luminance, or 32x32 crops), which are trained afresh on other faces: the filter is judged by a
network that never saw the critic's training faces.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from trainers.common import load_checkpoint, one_line_errors, save_checkpoint, seed_everything

KIND = "faces-critic"
LATENT_SEED = 1000              # generated training faces: latents of seeds LATENT_SEED, LATENT_SEED + 1, ...
FACES_PER_SEED = 500
IMAGE_SIZE = 64                 # the critic's layers are sized for 64x64 faces


class Standardize(nn.Module):
    """Each face's channels to mean 0 and standard deviation 1 (B, 3, H, W) -> (B, 3, H, W): the critic cannot
    prefer a global brightness or colour cast, so keeping the faces it rates most real keeps the colours of the
    generated set (a critic without it kept darker faces: SWD at 16x16 nearly doubled)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).square().mean(dim=(2, 3), keepdim=True).add(1e-4).sqrt()
        return (x - mean) / std


class Critic(nn.Module):
    """faces (B, 3, 64, 64) in [-1, 1] -> realness logits (B,): (each face standardised,) four strided
    convolutions, no normalisation across the batch (a face's logit does not depend on the others), dropout before
    the last layer."""

    def __init__(self, width: int = 32, dropout: float = 0.3, standardize: bool = True):
        super().__init__()
        self.net = nn.Sequential(
            *([Standardize()] if standardize else []),
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),                   # (B, w, 32, 32)
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),           # (B, 2w, 16, 16)
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.LeakyReLU(0.2),       # (B, 4w, 8, 8)
            nn.Conv2d(4 * width, 4 * width, 4, 2, 1), nn.LeakyReLU(0.2),       # (B, 4w, 4, 4)
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


@dataclass
class CriticConfig:
    model: str = ""                 # the faces model directory whose generator it judges ("" = bundled default)
    data: str = "../shared/data/celeba"
    holdout: int = 1000             # the GAN's held-out faces (the last ones by name), never read
    fakes: int = 8000               # generated faces to train on
    steps: int = 3000
    batch: int = 64                 # of each set per step
    lr: float = 2e-4
    width: int = 32
    dropout: float = 0.3
    standardize: bool = True        # each face's channels standardised first (Standardize)
    shift: int = 2                  # random translation, pixels
    validation: int = 400           # of each set held back to report the ROC area
    seed: int = 0
    threads: int = 0                # 0 = torch's default


def unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)


def roc_area(real: torch.Tensor, fake: torch.Tensor) -> float:
    """P(a real face's logit > a generated face's), ties counted half."""
    above = (real[:, None] > fake[None, :]).float().mean()
    ties = (real[:, None] == fake[None, :]).float().mean()
    return float(above + 0.5 * ties)


def augment(x: torch.Tensor, rng: np.random.Generator, shift: int) -> torch.Tensor:
    """One random shift of up to `shift` pixels (wrapping) and a mirror at random, for the whole batch."""
    if shift:
        dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, 2))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    return x.flip(-1) if rng.random() < 0.5 else x


def generated_faces(model: str, count: int) -> tuple[np.ndarray, dict]:
    """`count` faces (N, 64, 64, 3) uint8 of the model directory, from latents of seeds LATENT_SEED and up, and
    what identifies that generator (its manifest's precision and training steps)."""
    import genrt
    faces = genrt.FaceGenerator.load(model or None, provider="cpu")
    seeds = range(LATENT_SEED, LATENT_SEED + -(-count // FACES_PER_SEED))
    images = np.concatenate([faces.generate(FACES_PER_SEED, seed=s) for s in seeds])[:count]
    m = faces.manifest
    return images, {"precision": m.precision, "steps_completed": m.training.get("steps_completed")}


def train(cfg: CriticConfig, out: Path, log=print) -> dict:
    """Train the critic and write its checkpoint to `out`. -> the checkpoint's metrics."""
    from trainers.faces import face_paths, load_face
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.time()
    paths = face_paths(cfg.data, "train", cfg.holdout)                    # a missing folder fails first
    fake, generator = generated_faces(cfg.model, cfg.fakes)
    if fake.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"the critic judges {IMAGE_SIZE}x{IMAGE_SIZE} faces; {cfg.model or 'the model'} draws "
                         f"{fake.shape[1]}x{fake.shape[2]}")
    real = np.stack([load_face(p, IMAGE_SIZE) for p in paths])
    if min(len(real), len(fake)) <= 2 * cfg.validation:
        raise ValueError(f"{len(real)} real and {len(fake)} generated faces: too few to hold {cfg.validation} of "
                         f"each back (--validation)")
    log(f"{len(real)} real faces, {len(fake)} generated ({time.time() - start:.0f} s)")
    rng = np.random.default_rng(cfg.seed)
    real, fake = real[rng.permutation(len(real))], fake[rng.permutation(len(fake))]
    val_real, val_fake = unit_range(real[:cfg.validation]), unit_range(fake[:cfg.validation])
    train_real, train_fake = unit_range(real[cfg.validation:]), unit_range(fake[cfg.validation:])
    critic = Critic(cfg.width, cfg.dropout, cfg.standardize)
    opt = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    labels = torch.cat([torch.ones(cfg.batch), torch.zeros(cfg.batch)])
    history = []
    for step in range(1, cfg.steps + 1):
        x = torch.cat([augment(train_real[rng.integers(0, len(train_real), cfg.batch)], rng, cfg.shift),
                       augment(train_fake[rng.integers(0, len(train_fake), cfg.batch)], rng, cfg.shift)])
        loss = F.binary_cross_entropy_with_logits(critic(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == cfg.steps:
            critic.eval()
            with torch.no_grad():
                area = roc_area(critic(val_real), critic(val_fake))
            critic.train()
            history.append({"step": step, "loss": loss.item(), "roc_area": area})
            log(f"step {step}: loss {loss.item():.3f}, held-back ROC area {area:.3f} ({time.time() - start:.0f} s)")
    metrics = {"roc_area": history[-1]["roc_area"], "history": history, "generator": generator,
               "seconds": time.time() - start}
    save_checkpoint(out, {"kind": KIND, "config": asdict(cfg), "critic": critic.state_dict(), "metrics": metrics})
    return metrics


def load_critic(path: str | Path) -> Critic:
    """The critic of a checkpoint written by `train`, in eval mode."""
    state = load_checkpoint(path, expected_kind=KIND)
    cfg = state["config"]
    critic = Critic(int(cfg["width"]), float(cfg["dropout"]), bool(cfg.get("standardize", False)))
    critic.load_state_dict(state["critic"])
    return critic.eval()


def critic_summary(path: str | Path) -> dict:
    """What a model manifest records of the critic it ships: its settings and held-back ROC area."""
    from export.model_dir import portable_paths      # a checkout path, never a machine's own
    state = load_checkpoint(path, expected_kind=KIND)
    cfg = portable_paths({k: v for k, v in state["config"].items() if k not in ("model", "threads")})
    return {"network": "critic (trainers.faces_critic)", **cfg, "roc_area": state["metrics"]["roc_area"],
            "generator": state["metrics"]["generator"]}


def main(argv: list[str] | None = None) -> None:
    defaults = CriticConfig()
    ap = argparse.ArgumentParser(prog="python -m trainers.faces_critic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the checkpoint to write (.pt)")
    for name, value in asdict(defaults).items():
        if isinstance(value, bool):
            ap.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=value)
        else:
            ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = vars(ap.parse_args(argv))
    out = args.pop("out")
    with one_line_errors():
        train(CriticConfig(**args), out)


if __name__ == "__main__":
    main()
