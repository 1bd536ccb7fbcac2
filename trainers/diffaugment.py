"""Differentiable augmentation (Zhao et al. 2020, "DiffAugment"): the same random colour, translation and cutout
applied to every image D sees, real and fake, so gradients reach G through it. For small data sets.

All randomness comes from the `torch.Generator` passed in, so a training step replays exactly on resume.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [p for p in parts if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {', '.join(unknown)} (known: {', '.join(POLICIES)})")
    return parts


def _rand(gen: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.rand(*shape, generator=gen).to(device)


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x (B, 3, H, W): random brightness (±0.5), saturation (×0..2), contrast (×0.5..1.5) per image."""
    b = x.shape[0]
    x = x + (_rand(gen, b, 1, 1, 1, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(gen, b, 1, 1, 1, device=x.device) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(gen, b, 1, 1, 1, device=x.device) + 0.5) + mean


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio × size pixels, zero-filled."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = (torch.randint(-sh, sh + 1, (b, 1, 1), generator=gen)).to(x.device)
    ty = (torch.randint(-sw, sw + 1, (b, 1, 1), generator=gen)).to(x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square per image, ratio × size per side (clipped at the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=gen).to(x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=gen).to(x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, min=0, max=h - 1)
    gy = torch.clamp(gy + oy - cw // 2, min=0, max=w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    """x (B, 3, H, W) -> same shape, augmented by each op of `policy` in order; identity for an empty policy."""
    for name in policy:
        x = _OPS[name](x, gen)
    return x
