"""trainers.diffaugment: shapes, determinism from the generator, gradients pass, policy parsing."""
from __future__ import annotations

import pytest
import torch

from trainers.diffaugment import POLICIES, diff_augment, parse_policy


def images(seed: int = 0) -> torch.Tensor:
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_every_policy_keeps_the_shape_and_changes_the_images():
    x = images()
    for name in POLICIES:
        y = diff_augment(x, (name,), torch.Generator().manual_seed(1))
        assert y.shape == x.shape and not torch.equal(x, y), name


def test_same_generator_seed_same_augmentation_and_empty_policy_is_identity():
    x, policy = images(), parse_policy("color,translation,cutout")
    a = diff_augment(x, policy, torch.Generator().manual_seed(5))
    b = diff_augment(x, policy, torch.Generator().manual_seed(5))
    c = diff_augment(x, policy, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(diff_augment(x, parse_policy(""), torch.Generator()), x)


def test_gradients_reach_the_input():
    x = images().requires_grad_(True)
    diff_augment(x, POLICIES, torch.Generator().manual_seed(2)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_cutout_zeroes_a_square_and_translation_zero_fills():
    x = torch.ones(4, 3, 16, 16)
    cut = diff_augment(x, ("cutout",), torch.Generator().manual_seed(3))
    assert ((cut == 0).float().mean(dim=(1, 2, 3)) > 0).all()
    moved = diff_augment(x, ("translation",), torch.Generator().manual_seed(3))
    assert set(moved.unique().tolist()) <= {0.0, 1.0}


def test_unknown_policy_is_named():
    with pytest.raises(ValueError, match="rotate"):
        parse_policy("color,rotate")
