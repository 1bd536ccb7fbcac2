"""The DCGAN of trainers.faces, in torch: generator, discriminator, DCGAN init, the generator's moving average
and its BatchNorm recalibration. Training (trainers.faces), export (export.faces) and the SWD benchmark build
the networks from here."""
from __future__ import annotations

import torch
import torch.nn as nn


class Generator(nn.Module):
    """z (B, nz, 1, 1) -> image (B, 3, 64, 64) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64):
        super().__init__()

        def up(cin: int, cout: int, stride: int = 2, pad: int = 1) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.net = nn.Sequential(
            *up(nz, ngf * 8, 1, 0),          # (B, 8ngf, 4, 4)
            *up(ngf * 8, ngf * 4),           # (B, 4ngf, 8, 8)
            *up(ngf * 4, ngf * 2),           # (B, 2ngf, 16, 16)
            *up(ngf * 2, ngf),               # (B, ngf, 32, 32)
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False),
            nn.Tanh(),                       # (B, 3, 64, 64)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """image (B, 3, 64, 64) -> real/fake logit (B,)."""

    def __init__(self, ndf: int = 64):
        super().__init__()

        def down(cin: int, cout: int, norm: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
            if norm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.LeakyReLU(0.2, inplace=True)]

        self.net = nn.Sequential(
            *down(3, ndf, norm=False),        # (B, ndf, 32, 32)
            *down(ndf, ndf * 2),              # (B, 2ndf, 16, 16)
            *down(ndf * 2, ndf * 4),          # (B, 4ndf, 8, 8)
            *down(ndf * 4, ndf * 8),          # (B, 8ndf, 4, 4)
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def init_weights(m: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02), BatchNorm gamma N(1, 0.02), beta 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BatchNorm statistics) are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def recalibrate_batchnorm(G: nn.Module, nz: int, seed: int, batches: int = 16, batch_size: int = 64) -> nn.Module:
    """Recompute BatchNorm running statistics for G's own (EMA) weights: the copied statistics belong to the raw
    generator. Cumulative average over `batches` seeded noise batches; returns G in eval mode."""
    norms = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    G.train()
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    for _ in range(batches):
        G(torch.randn(batch_size, nz, 1, 1, generator=gen).to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return G.eval()
