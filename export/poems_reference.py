"""Torch references for checking the exported poem graphs.

`TorchNoCacheModel` speaks the runtime's `start/step/reorder` interface but re-runs the full torch model over
the whole prefix every step (no cache), so the same search code decodes with torch and with ONNX + KV cache
and the outputs can be compared token for token.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from genrt.contract import (
    EOS_ID, NEVER_GENERATED_SPECIAL_IDS, PAD_ID, PROMPT_FIRST_LINE, PROMPT_TITLE, SOS_ID, SPECIAL_TOKENS,
)

PROMPT_KIND_IDS = (SPECIAL_TOKENS.index(PROMPT_TITLE), SPECIAL_TOKENS.index(PROMPT_FIRST_LINE))
from genrt.poems.model import pad_batch
from genrt.decoding.processors import SuppressTokens
from genrt.decoding.scheduler import decode_beams, decode_greedy
from trainers.poems_model import PoemTransformer



@dataclass(frozen=True)
class TorchState:
    src_ids: torch.Tensor    # (N, S)
    src_mask: torch.Tensor   # (N, S)
    prefix: np.ndarray       # (N, T)


class TorchNoCacheModel:
    def __init__(self, model: PoemTransformer):
        self.model = model.eval()

    def start(self, sources: Sequence[Sequence[int]], copies: int = 1) -> TorchState:
        ids, mask = pad_batch(sources, PAD_ID)
        ids, mask = np.repeat(ids, copies, axis=0), np.repeat(mask, copies, axis=0)
        return TorchState(torch.from_numpy(ids), torch.from_numpy(mask), np.zeros((len(ids), 0), np.int64))

    @torch.no_grad()
    def step(self, tokens: np.ndarray, state: TorchState) -> tuple[np.ndarray, TorchState]:
        prefix = np.concatenate([state.prefix, tokens], axis=1)
        logits = self.model(state.src_ids, state.src_mask, torch.from_numpy(prefix))       # (N, T, V)
        return logits[:, -1].float().numpy(), TorchState(state.src_ids, state.src_mask, prefix)

    @staticmethod
    def reorder(state: TorchState, rows: np.ndarray) -> TorchState:
        return TorchState(state.src_ids, state.src_mask, state.prefix[rows])


def random_sources(vocab_size: int, count: int, seed: int = 0) -> list[list[int]]:
    """Prompts of varied lengths: a prompt-kind token (<title> or <first>) then ordinary (non-special) ids."""
    rng = np.random.default_rng(seed)
    return [[PROMPT_KIND_IDS[int(rng.integers(0, 2))]]
            + rng.integers(len(SPECIAL_TOKENS), vocab_size, int(rng.integers(2, 9))).tolist() for _ in range(count)]


def lockstep_logits(a, b, sources: Sequence[Sequence[int]], steps: int):
    """Decode two step models side by side, both fed model a's greedy tokens (from <sos>).
    Yields (logits a, logits b, cache a) after each step, each logits (N, V)."""
    cache_a, cache_b = a.start(sources), b.start(sources)
    tokens = np.ones((len(sources), 1), np.int64)
    for _ in range(steps):
        logits_a, cache_a = a.step(tokens, cache_a)
        logits_b, cache_b = b.step(tokens, cache_b)
        yield logits_a, logits_b, cache_a
        tokens = logits_a.argmax(1)[:, None]


@torch.no_grad()
def step_logit_parity(model: PoemTransformer, onnx_model, batches: Sequence[int] = (1, 3), steps: int = 6) -> float:
    """Max |logit difference| between the ONNX decoder stepping with its KV cache (after a multi-token prefill)
    and the torch model over the full prefix, at several batch sizes and cache lengths; the decoder's log_norm
    output (when it has one) against the torch logits' log-sum-exp counts too."""
    worst = 0.0
    for b in batches:
        sources = random_sources(model.config.vocab_size, b, seed=b)
        ref, cache = TorchNoCacheModel(model), onnx_model.start(sources)
        state = ref.start(sources)
        rng = np.random.default_rng(b)
        tokens = np.concatenate([np.full((b, 1), SOS_ID), rng.integers(6, model.config.vocab_size, (b, 2))], 1)
        for _ in range(steps):
            got, cache = onnx_model.step(tokens, cache)
            want, state = ref.step(tokens, state)
            worst = max(worst, float(np.abs(got - want).max()))
            if getattr(cache, "log_norm", None) is not None:
                want_norm = torch.logsumexp(torch.from_numpy(want).double(), dim=-1).numpy()
                worst = max(worst, float(np.abs(cache.log_norm - want_norm).max()))
            tokens = rng.integers(6, model.config.vocab_size, (b, 1))
    return worst


def compare_decoding(reference, candidate, prompts: int = 20, max_new: int = 24, num_beams: int = 4) -> dict:
    """Greedy and beam decoding with both models through the same search code; counts identical outputs."""
    vocab = candidate.manifest.vocab if hasattr(candidate, "manifest") else None
    vocab_size = len(vocab) if vocab else reference.model.config.vocab_size
    sources = random_sources(vocab_size, prompts, seed=1)
    suppress = [SuppressTokens(NEVER_GENERATED_SPECIAL_IDS)]
    same_greedy = same_beam = 0
    for src in sources:
        outs = []
        for m in (reference, candidate):
            greedy = decode_greedy(m, src, SOS_ID, max_new, EOS_ID, suppress)
            beams = decode_beams(m, src, SOS_ID, num_beams, max_new, EOS_ID, suppress, num_return=2)
            outs.append((greedy.tokens, [h.tokens for h in beams]))
        same_greedy += outs[0][0] == outs[1][0]
        same_beam += outs[0][1] == outs[1][1]
    return {"prompts": prompts, "greedy_identical": int(same_greedy), "beam_identical": int(same_beam)}
