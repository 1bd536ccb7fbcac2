"""Temperature calibration of a trained poem model, folded into its weights.

Label smoothing (0.1) trains the model toward a target that puts part of the probability on every character, so
its raw probabilities are too flat: dividing the logits by a temperature T < 1 gives the characters that do come
a higher likelihood. `fit_temperature` finds the T that minimises the NLL on *training* pairs (one parameter, so
the validation split stays unseen and can still report the result), and `fold_temperature` makes it part of the
network: logits = dec_norm(x) @ E^T, so scaling the final LayerNorm's weight and bias by 1/T scales every logit by
exactly 1/T, at no cost at run time. The tied embedding E is left alone.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genrt.contract import PAD_ID
from trainers.poems_model import PoemTransformer

TEMPERATURES = tuple(np.round(np.arange(0.60, 1.21, 0.02), 2))   # the grid fit_temperature searches


@torch.no_grad()
def nll_at_temperatures(model: PoemTransformer, pairs, batches, temperatures=TEMPERATURES) -> dict[float, float]:
    """NLL per character of `pairs` (a trainers.poems.PairSet) over `batches` with logits / T, for each T; one
    forward pass per batch (eval mode, fp32)."""
    was_training = model.training
    model.eval()
    sums, count = np.zeros(len(temperatures)), 0
    for idx in batches:
        src, src_mask, tgt_in, tgt_out = pairs.collate(idx)
        logits = model(src, src_mask, tgt_in).float()                         # (B, N, V)
        keep = tgt_out != PAD_ID
        kept, targets = logits[keep], tgt_out[keep]                             # (K, V), (K,)
        for i, t in enumerate(temperatures):
            sums[i] += F.cross_entropy(kept / t, targets, reduction="sum").item()
        count += int(keep.sum())
    model.train(was_training)
    return {float(t): float(s / max(1, count)) for t, s in zip(temperatures, sums)}


def fit_temperature(model: PoemTransformer, pairs, batches, temperatures=TEMPERATURES) -> tuple[float, dict]:
    """The grid temperature with the lowest NLL on `pairs`, refined by the vertex of the parabola through it and
    its neighbours. -> (T, NLL per T on the grid)."""
    nll = nll_at_temperatures(model, pairs, batches, temperatures)
    ts = sorted(nll)
    i = min(range(len(ts)), key=lambda j: nll[ts[j]])
    if 0 < i < len(ts) - 1:
        a, b, _ = np.polyfit(ts[i - 1:i + 2], [nll[t] for t in ts[i - 1:i + 2]], 2)
        best = float(-b / (2 * a)) if a > 0 else ts[i]
        best = min(max(best, ts[i - 1]), ts[i + 1])
    else:
        best = ts[i]                                 # at the edge of the grid: no refinement beyond it
    return round(best, 4), nll


@torch.no_grad()
def fold_temperature(model: PoemTransformer, temperature: float) -> PoemTransformer:
    """Make the model's logits logits / temperature, exactly, by scaling its final LayerNorm. Returns the model."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    model.dec_norm.weight.div_(temperature)
    model.dec_norm.bias.div_(temperature)
    return model
