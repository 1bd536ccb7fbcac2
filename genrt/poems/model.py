"""The exported poem model behind one interface: `step(tokens, cache) -> (logits, cache)`.

`PoemModel` runs `encoder.onnx` once per prompt and `decoder.onnx` once per new token with an explicit KV cache.
`RecomputeModel` wraps it without a cache (the whole prefix again every step) for the speed comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from genrt.contract import (
    ALL_LOGITS, LOG_NORM, POEMS_KIND, PoemsManifest, cross_key, cross_value, past_key, past_value,
)
from genrt.runtime import hot_loop_run, open_model_dir


# Threads when the caller names none: None = one per physical core, as for every genrt session. A second thread
# speeds up fp32 and several-row (beam, batch) steps and leaves int8 greedy level, once the encoder's idle pool no
# longer spins on the decoder's core (genrt.runtime.NON_SPINNING_GRAPHS; figures in README, "fp32 and threads").
DEFAULT_DECODE_THREADS = None


@dataclass(frozen=True)
class DecoderCache:
    """Everything the decoder needs besides the new tokens. Rows are hypotheses (prompt x beam).
    Tensors are numpy arrays, or onnxruntime OrtValues in the provider's memory when the model keeps a device cache."""
    self_kv: tuple[np.ndarray, ...]    # per layer K then V, each (N, H, T, Dh); T grows by one per step
    cross_kv: tuple[np.ndarray, ...]   # per layer K then V, each (N, H, S, Dh); computed once by the encoder
    src_mask: np.ndarray               # (N, S) float32, 1 = token
    length: int                        # T: target positions already in the cache
    prefix: np.ndarray | None = None   # (N, T) ids so far; kept only by RecomputeModel
    log_norm: np.ndarray | None = None  # (N,) log-sum-exp of the logits the step that made this cache returned,
                                        # when the decoder graph has a log_norm output; None after a reorder


@dataclass(frozen=True)
class GroupedCache:
    """One DecoderCache per prompt, each with its own rows (beams / return sequences) and unpadded source: for
    models whose kernels give a row slightly different numbers depending on the other rows in the call (int8),
    so that a prompt decodes to the same poem alone or in any batch."""
    groups: tuple[DecoderCache, ...]
    rows_per_group: int

    @property
    def length(self) -> int:
        return self.groups[0].length

    @property
    def log_norm(self) -> np.ndarray | None:
        norms = [g.log_norm for g in self.groups]
        return None if any(n is None for n in norms) else np.concatenate(norms)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """-> ids (B, S) int64 right-padded, mask (B, S) float32."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, np.int64)
    mask = np.zeros((len(seqs), width), np.float32)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = s, 1.0
    return ids, mask


def move_rows(x: np.ndarray, rows: np.ndarray, changed: np.ndarray | None = None) -> np.ndarray:
    """x[rows] for a square reordering, done in place when x is writable: only changed rows are copied (beam
    search keeps most beams where they are from one step to the next). `changed` = changed_rows(rows), when
    the caller moves several arrays the same way."""
    if not x.flags.writeable:
        return x[rows]
    if changed is None:
        changed = changed_rows(rows)
    if changed.size:
        x[changed] = x[rows[changed]]          # the right side is gathered into a temporary first
    return x


def changed_rows(rows: np.ndarray) -> np.ndarray:
    """The positions i with rows[i] != i."""
    return np.flatnonzero(rows != np.arange(len(rows)))


class PoemModel:
    """`device_cache=True` (the default on CUDA) keeps the KV cache in the provider's memory between steps via
    IOBinding: only token ids go in and logits come out each step. Beam reordering then copies the self-attention
    cache through the host once per step."""

    def __init__(self, manifest: PoemsManifest, encoder, decoder, provider: str, model_dir: Path,
                 device_cache: bool | None = None):
        self.manifest, self.provider, self.model_dir = manifest, provider, model_dir
        self.encoder, self.decoder = encoder, decoder
        self._run_decoder = hot_loop_run(decoder)
        layers = range(manifest.num_decoder_layers)
        self._cross_names = [n for i in layers for n in (cross_key(i), cross_value(i))]
        self._past_names = [n for i in layers for n in (past_key(i), past_value(i))]
        # logits, present K/V per layer, then log_norm if the graph has it (not the scoring output: a step needs
        # only the last position)
        self._decoder_outputs = [t.name for t in manifest.decoder().outputs if t.name != ALL_LOGITS]
        self._present_count = 2 * manifest.num_decoder_layers
        self.device_cache = provider == "cuda" if device_cache is None else device_cache
        self._device = "cuda" if provider == "cuda" else "cpu"
        # int8 kernels (MatMulNBits, dynamic quantization) give a row numbers that depend on the other rows of
        # the call; decoding each prompt in a call of its own keeps results independent of batch composition
        self.per_prompt_calls = manifest.precision == "int8" and not self.device_cache

    @classmethod
    def load(cls, model_dir: str | Path | None = None, provider: str = "auto", threads: int | None = None,
             precision: str | None = None, device_cache: bool | None = None) -> "PoemModel":
        """Open a model directory (None = the bundled model of `precision`; by default int8 on CPU, fp32 on
        CUDA)."""
        opened = open_model_dir(model_dir, POEMS_KIND, provider, threads, precision, DEFAULT_DECODE_THREADS)
        return cls(opened.manifest, opened.sessions["encoder"], opened.sessions["decoder"], opened.provider,
                   opened.model_dir, device_cache)

    def start(self, sources: Sequence[Sequence[int]], copies: int = 1) -> DecoderCache | GroupedCache:
        """Encode each source once, then repeat its rows `copies` times (beams / return sequences).
        Rows come out grouped: prompt 0's copies, then prompt 1's, ..."""
        if self.per_prompt_calls and len(sources) > 1:
            return GroupedCache(tuple(self.start_batched([s], copies) for s in sources), copies)
        return self.start_batched(sources, copies)

    def start_batched(self, sources: Sequence[Sequence[int]], copies: int = 1) -> DecoderCache:
        """`start` as one padded batch for every prompt, whatever the precision."""
        src_ids, src_mask = pad_batch(sources, self.manifest.pad_id)               # (B, S)
        cross = self.encoder.run(self._cross_names, {"src_ids": src_ids, "src_mask": src_mask})
        if copies > 1:
            cross = [np.repeat(x, copies, axis=0) for x in cross]                   # (B*copies, H, S, Dh)
            src_mask = np.repeat(src_mask, copies, axis=0)
        return DecoderCache(self.empty_self_kv(len(src_mask)), tuple(self._upload(x) for x in cross),
                            self._upload(src_mask), 0)

    def empty_self_kv(self, rows: int) -> tuple:
        m = self.manifest
        empty = np.zeros((rows, m.num_heads, 0, m.head_dim), np.float32)           # (N, H, 0, Dh)
        return tuple(self._upload(empty) for _ in self._past_names)

    def step(self, tokens: np.ndarray, cache: DecoderCache | GroupedCache):
        """tokens (N, k) int64 at positions T..T+k-1 -> logits (N, V) for the next token, cache grown by k."""
        if isinstance(cache, GroupedCache):
            r = cache.rows_per_group
            outs = [self._step_one(tokens[i * r:(i + 1) * r], g) for i, g in enumerate(cache.groups)]
            return np.concatenate([o[0] for o in outs]), GroupedCache(tuple(o[1] for o in outs), r)
        return self._step_one(tokens, cache)

    def _step_one(self, tokens: np.ndarray, cache: DecoderCache) -> tuple[np.ndarray, DecoderCache]:
        n, k = tokens.shape
        positions = (np.full((n, 1), cache.length, np.int64) if k == 1 else                 # (N, k)
                     np.ascontiguousarray(np.broadcast_to(np.arange(cache.length, cache.length + k,
                                                                    dtype=np.int64), (n, k))))
        if self.device_cache:
            logits, *outs = self._run_bound(tokens, positions, cache)
        else:
            feeds = {"input_ids": tokens, "position_ids": positions, "src_mask": cache.src_mask}
            feeds.update(zip(self._past_names, cache.self_kv))
            feeds.update(zip(self._cross_names, cache.cross_kv))
            logits, *outs = self._run_decoder(self._decoder_outputs, feeds)
        present, log_norm = outs[:self._present_count], (outs[-1] if self.manifest.log_norm else None)
        return logits, DecoderCache(tuple(present), cache.cross_kv, cache.src_mask, cache.length + k, cache.prefix,
                                    log_norm)

    def _run_bound(self, tokens: np.ndarray, positions: np.ndarray, cache: DecoderCache):
        """One decoder call with IOBinding: cache tensors in and out stay in the provider's memory."""
        binding = self.decoder.io_binding()
        binding.bind_cpu_input("input_ids", tokens)
        binding.bind_cpu_input("position_ids", positions)
        binding.bind_ortvalue_input("src_mask", cache.src_mask)
        for name, value in zip(self._past_names + self._cross_names, cache.self_kv + cache.cross_kv):
            binding.bind_ortvalue_input(name, value)
        for name in self._decoder_outputs:      # logits and log_norm to the host, the cache stays on the device
            binding.bind_output(name, "cpu" if name in ("logits", LOG_NORM) else self._device)
        self.decoder.run_with_iobinding(binding)
        logits, *outs = binding.get_outputs()
        if self.manifest.log_norm:
            outs[-1] = outs[-1].numpy()
        return (logits.numpy(), *outs)

    def teacher_forced_logits(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]
                              ) -> list[np.ndarray]:
        """Logits of every target position in one encoder and one decoder call per batch (per prompt for int8,
        like `start`): targets[i] = <sos> + ids (the decoder input) -> per pair (len(targets[i]), V) float32,
        row t predicting the id after targets[i][t]."""
        if not self.manifest.scoring:
            raise ValueError(f"{self.model_dir} has no scoring output ({ALL_LOGITS}); re-export it with "
                             f"python -m export.poems to score poems")
        if self.per_prompt_calls and len(sources) > 1:
            return [self.teacher_forced_logits([s], [t])[0] for s, t in zip(sources, targets)]
        cache = self.start_batched(sources)
        ids, _ = pad_batch(targets, self.manifest.pad_id)                           # (B, N), pads after <eos>
        positions = np.ascontiguousarray(np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape))
        feeds = {"input_ids": ids, "position_ids": positions, "src_mask": _host(cache.src_mask)}
        feeds.update(zip(self._past_names, (_host(x) for x in cache.self_kv)))
        feeds.update(zip(self._cross_names, (_host(x) for x in cache.cross_kv)))
        (all_logits,) = self.decoder.run([ALL_LOGITS], feeds)                       # (B, N, V)
        return [all_logits[i, :len(t)] for i, t in enumerate(targets)]

    def _upload(self, array: np.ndarray):
        if not self.device_cache:
            return array
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self._device, 0)

    def reorder(self, cache: DecoderCache | GroupedCache, rows: np.ndarray):
        """Row i of the result continues old row rows[i]. Beam search only moves rows within a prompt's group,
        and all rows of a group share the same cross-attention K/V, so only the self-attention cache moves.
        On the host the cache arrays are rearranged in place, copying only the rows that change: the cache passed
        in must not be used afterwards."""
        if isinstance(cache, GroupedCache):
            r = cache.rows_per_group
            local = rows.reshape(-1, r) - (np.arange(len(cache.groups)) * r)[:, None]     # (B, r) within group
            if (local < 0).any() or (local >= r).any():
                raise ValueError("reorder moved a row to another prompt's group")
            return GroupedCache(tuple(self.reorder(g, loc) for g, loc in zip(cache.groups, local)), r)
        prefix = cache.prefix[rows] if cache.prefix is not None else None
        if self.device_cache:
            moved = tuple(self._upload(x.numpy()[rows]) for x in cache.self_kv)
        else:
            changed = changed_rows(rows)
            moved = tuple(move_rows(x, rows, changed) for x in cache.self_kv)
        return replace(cache, self_kv=moved, prefix=prefix, log_norm=None)


def _host(x) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.numpy()


class RecomputeModel:
    """Same interface, no KV cache: every step re-runs the decoder over the whole prefix (for benchmarks)."""

    def __init__(self, model: PoemModel):
        self.model, self.manifest = model, model.manifest

    def start(self, sources: Sequence[Sequence[int]], copies: int = 1) -> DecoderCache:
        cache = self.model.start_batched(sources, copies)
        return replace(cache, prefix=np.zeros((len(sources) * copies, 0), np.int64))

    def step(self, tokens: np.ndarray, cache: DecoderCache) -> tuple[np.ndarray, DecoderCache]:
        prefix = np.concatenate([cache.prefix, tokens], axis=1)                     # (N, T+k)
        fresh = replace(cache, self_kv=self.model.empty_self_kv(len(prefix)), length=0)
        logits, stepped = self.model.step(prefix, fresh)
        return logits, replace(cache, prefix=prefix, length=prefix.shape[1], log_norm=stepped.log_norm)

    def reorder(self, cache: DecoderCache, rows: np.ndarray) -> DecoderCache:
        return replace(cache, prefix=cache.prefix[rows])
