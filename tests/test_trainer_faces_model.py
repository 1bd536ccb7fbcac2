"""trainers.faces_model: shapes, DCGAN init, the moving average and BatchNorm recalibration."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from trainers.faces_model import Discriminator, Generator, init_weights, recalibrate_batchnorm, update_ema

torch.set_num_threads(1)


def test_generator_and_discriminator_shapes_at_two_batch_sizes():
    G, D = Generator(nz=16, ngf=8).eval(), Discriminator(ndf=8).eval()
    for batch in (1, 3):
        images = G(torch.randn(batch, 16, 1, 1))
        assert images.shape == (batch, 3, 64, 64) and images.abs().max() <= 1.0
        assert D(images).shape == (batch,)


def test_dcgan_init_draws_conv_weights_at_std_002_and_batchnorm_around_one():
    torch.manual_seed(0)
    G = Generator(nz=100, ngf=64)
    G.apply(init_weights)
    conv = G.net[3].weight
    assert conv.mean().abs() < 1e-3 and conv.std().item() == pytest.approx(0.02, rel=0.02)
    bn = G.net[1]
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01) and torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_update_ema_lerps_parameters_and_copies_buffers():
    model, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(2.0)
        ema.weight.fill_(0.0)
        model.running_mean.fill_(5.0)
    update_ema(ema, model, decay=0.75)
    assert torch.allclose(ema.weight, torch.full((3,), 0.5))          # 0.75 * 0 + 0.25 * 2
    assert torch.equal(ema.running_mean, model.running_mean)
    update_ema(ema, model, decay=0.0)
    assert torch.equal(ema.weight, model.weight)


def test_recalibrate_batchnorm_recomputes_statistics_deterministically_and_keeps_weights():
    torch.manual_seed(1)
    G = Generator(nz=16, ngf=8)
    G.apply(init_weights)
    stale = copy.deepcopy(G)
    for m in stale.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
    a = recalibrate_batchnorm(copy.deepcopy(stale), nz=16, seed=7, batches=2, batch_size=8)
    b = recalibrate_batchnorm(copy.deepcopy(stale), nz=16, seed=7, batches=2, batch_size=8)
    assert not a.training
    assert torch.equal(a.net[1].running_mean, b.net[1].running_mean)
    assert not torch.allclose(a.net[1].running_mean, stale.net[1].running_mean)
    assert torch.equal(a.net[0].weight, stale.net[0].weight)
    assert a.net[1].momentum == stale.net[1].momentum                 # momentum restored after the cumulative pass
