"""The exported poem model behind one interface: `start`, `step(tokens, cache) -> (logits, cache)`, `reorder`,
`join`.

`PoemModel` runs `encoder.onnx` once per batch of prompts and `decoder.onnx` once per new token with an explicit KV
cache. Rows are hypotheses (prompt x beam / returned sequence), and each row keeps its own length: its cached
positions sit in slots 0..length-1 of buffers whose width is a multiple of CACHE_ALIGN, and the decoder's
`self_mask` says which slots a row has filled. So rows that joined at different steps share one decoder call
(`join`), rows leave at once (`reorder` with fewer rows), and, the widths being whole multiples of the SIMD width,
no row's numbers depend on the others (genrt.contract.CACHE_ALIGN).
`RecomputeModel` wraps it without a cache (the whole prefix again every step) for the speed comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from genrt.contract import (
    ALL_LOGITS, CACHE_ALIGN, LOG_NORM, POEMS_KIND, SELF_MASK, PoemsManifest, cross_key, cross_value, past_key,
    past_value,
)
from genrt.decoding.lanes import in_lanes
from genrt.providers import CPU, provider_spec
from genrt.runtime import (
    GRAPH_RUN_ERRORS, GraphRunError, check_threads, hot_loop_run, open_model_dir, physical_cores,
)


# Threads when the caller names none: None = one per physical core, as for every genrt session. On CPU the
# decoder runs one thread per call and the threads become lanes (genrt.decoding.lanes): schedulers stepping at
# once, each call on its own core.
DEFAULT_DECODE_THREADS = None
DECODER_THREADS_PER_LANE = 1


def aligned(width: int) -> int:
    """The smallest multiple of CACHE_ALIGN that holds `width` positions (at least one block)."""
    return max(CACHE_ALIGN, -(-width // CACHE_ALIGN) * CACHE_ALIGN)


@dataclass(frozen=True)
class DecoderCache:
    """Everything the decoder needs besides the new tokens, one row per hypothesis. Tensors are numpy arrays, or
    onnxruntime OrtValues in the provider's memory when the model keeps a device cache."""
    self_kv: tuple                     # per layer K then V, each (N, H, T, Dh): slot t holds position t of a row
    filled: np.ndarray                 # (N, T) bool: the slots each row attends (its positions so far)
    lengths: np.ndarray                # (N,) int64: positions each row has decoded = the next token's position
    cross_kv: tuple                    # per layer K then V, each (N, H, S, Dh); computed once by the encoder
    src_mask: np.ndarray               # (N, S) float32, 1 = token
    prefix: np.ndarray | None = None   # (N, T) ids so far; kept only by RecomputeModel
    log_norm: np.ndarray | None = None  # (N,) log-sum-exp of the logits the step that made this cache returned,
                                        # when the decoder graph has a log_norm output; None after a reorder
    step_mask: np.ndarray | None = None  # (N, T+1) float32: `self_mask` of a one-token step (filled, then 1), kept
                                         # up to date in place between steps; None = rebuild it

    @property
    def rows(self) -> int:
        return len(self.lengths)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> ids (B, W) int64 right-padded, mask (B, W) float32; W = the longest sequence, or `width`."""
    width = max(len(s) for s in seqs) if width is None else width
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


def _pad_axis(x: np.ndarray, axis: int, width: int) -> np.ndarray:
    """x zero-padded at the end of `axis` to `width` (zeros: a masked slot must hold a finite value)."""
    if x.shape[axis] == width:
        return x
    shape = list(x.shape)
    shape[axis] = width - x.shape[axis]
    return np.concatenate([x, np.zeros(shape, x.dtype)], axis=axis)


def _host(x) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.numpy()


def append_rows(x: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """x (N, ...) then extra (M, ...), as the first N + M rows of a buffer with spare rows: written into x's own
    buffer when it has room (no copy of x's rows), else into a new one twice the size. Requests join the batch
    often; this keeps a join from copying every row already decoding."""
    n, m = len(x), len(extra)
    base = x.base
    if (isinstance(base, np.ndarray) and base.shape[1:] == x.shape[1:] and len(base) >= n + m
            and base.ctypes.data == x.ctypes.data and x.flags.c_contiguous):
        base[n:n + m] = extra
        return base[:n + m]
    grown = np.empty((2 * (n + m),) + x.shape[1:], x.dtype)
    grown[:n], grown[n:n + m] = x, extra
    return grown[:n + m]


def keep_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x[rows] for fewer rows (those that stay), written over x's first rows: the buffer keeps its spare rows, and
    only the positions whose row changes are copied (a request moved into the place of one that left costs its own
    rows, not every row after the gap)."""
    moved = np.flatnonzero(rows != np.arange(len(rows)))
    if moved.size:
        x[moved] = x[rows[moved]]                    # the right side is gathered into a temporary first
    return x[:len(rows)]


class PoemModel:
    """`device_cache=True` (the default on CUDA) keeps the KV cache in the provider's memory between steps via
    IOBinding: only token ids and masks go in and logits come out each step, and each step's keys are appended
    (the cache grows by one slot a step for every row). Reordering and joining rows then go through the host.
    It needs a decoder that returns the grown cache (cache_outputs "present"); one that returns only the new
    positions ("new", the bundled int8 model: no step copies the cache) keeps its cache on the host."""

    def __init__(self, manifest: PoemsManifest, encoder, decoder, provider: str, model_dir: Path,
                 device_cache: bool | None = None, lanes: int = 1):
        self.manifest, self.provider, self.model_dir = manifest, provider, model_dir
        self.lanes = lanes                  # decoder calls made at once, from as many threads (genrt.decoding.lanes)
        self.encoder, self.decoder = encoder, decoder
        self._run_decoder = hot_loop_run(decoder)
        layers = range(manifest.num_decoder_layers)
        self._cross_names = [n for i in layers for n in (cross_key(i), cross_value(i))]
        self._past_names = [n for i in layers for n in (past_key(i), past_value(i))]
        # logits, present (or new) K/V per layer, then log_norm if the graph has it (not the scoring output: a step
        # needs only the last position)
        self._decoder_outputs = [t.name for t in manifest.decoder().outputs if t.name != ALL_LOGITS]
        self._kv_count = 2 * manifest.num_decoder_layers
        self._new_kv_only = manifest.cache_outputs == "new"
        spec = provider_spec(provider)
        if device_cache and self._new_kv_only:
            raise ValueError(f"{model_dir} has a decoder that returns only the new positions' keys and values "
                             f"(cache_outputs 'new'), which the runtime writes into a host cache: device_cache=True "
                             f"needs one that returns the grown cache ('present', as python -m export.poems writes)")
        self.device_cache = (spec.device_cache and not self._new_kv_only) if device_cache is None else device_cache
        self._device = spec.ort_device
        # the device the session runs on (--provider-option device_id=1): the cache it keeps lives there too
        taken = getattr(decoder, "get_provider_options", dict)().get(spec.ort_name, {})
        self._device_id = int(taken.get("device_id", 0) or 0)

    @classmethod
    def load(cls, model_dir: str | Path | None = None, provider: str = "auto", threads: int | None = None,
             precision: str | None = None, device_cache: bool | None = None,
             provider_options: dict | None = None) -> "PoemModel":
        """Open a model directory (None = the bundled model of `precision`; by default the provider's precision,
        genrt.providers)."""
        threads = check_threads(threads)
        opened = open_model_dir(model_dir, POEMS_KIND, provider, threads, precision, DEFAULT_DECODE_THREADS,
                                provider_options, graph_threads={"decoder": DECODER_THREADS_PER_LANE})
        # CPU: one lane per thread asked for; an accelerator batches all rows in one call
        lanes = (threads or DEFAULT_DECODE_THREADS or physical_cores()) if opened.provider == CPU else 1
        return cls(opened.manifest, opened.sessions["encoder"], opened.sessions["decoder"], opened.provider,
                   opened.model_dir, device_cache, lanes)

    @property
    def batch_invariant(self) -> bool:
        """A row decodes to the same numbers whatever shares its calls: declared by the model directory (checked at
        export) and true only for the host cache, whose slots keep every row's layout."""
        return self.manifest.batch_invariant and not self.device_cache

    # ---------------------------------------------------------------- rows in

    def start(self, sources: Sequence[Sequence[int]], copies: int | Sequence[int] = 1) -> DecoderCache:
        """Encode the sources in one call (padded to a multiple of CACHE_ALIGN), then repeat each one's rows
        `copies` times (one count for all, or one per source: beams / return sequences). Rows come out grouped:
        source 0's copies, then source 1's, ..."""
        counts = np.full(len(sources), copies) if np.isscalar(copies) else np.asarray(copies)
        src_ids, src_mask = pad_batch(sources, self.manifest.pad_id, aligned(max(len(s) for s in sources)))
        try:
            cross = self.encoder.run(self._cross_names, {"src_ids": src_ids, "src_mask": src_mask})  # (B, H, S, Dh)
        except GRAPH_RUN_ERRORS as e:
            raise GraphRunError(f"{self.manifest.encoder_file} failed: {str(e).splitlines()[0]}") from None
        if (counts != 1).any():
            cross = [np.repeat(x, counts, axis=0) for x in cross]                               # (N, H, S, Dh)
            src_mask = np.repeat(src_mask, counts, axis=0)
        rows = len(src_mask)
        width = 0 if self.device_cache else CACHE_ALIGN
        return DecoderCache(self.empty_self_kv(rows, width), np.zeros((rows, width), bool),
                            np.zeros(rows, np.int64), tuple(self._upload(x) for x in cross), self._upload(src_mask))

    def start_batched(self, sources: Sequence[Sequence[int]], copies: int = 1) -> DecoderCache:
        """`start` (kept for callers that name the batched form)."""
        return self.start(sources, copies)

    def empty_self_kv(self, rows: int, width: int = 0) -> tuple:
        m = self.manifest
        return tuple(self._upload(np.zeros((rows, m.num_heads, width, m.head_dim), np.float32))  # (N, H, T, Dh)
                     for _ in self._past_names)

    def join(self, first: DecoderCache, second: DecoderCache) -> DecoderCache:
        """The rows of `first` then those of `second`, whatever their lengths: both padded to the wider cache and
        source (masked slots of zeros)."""
        width = max(first.filled.shape[1], second.filled.shape[1])
        src = max(_host(first.src_mask).shape[1], _host(second.src_mask).shape[1])

        def cat(a, b, axis, size):
            return append_rows(_pad_axis(_host(a), axis, size), _pad_axis(_host(b), axis, size))
        return DecoderCache(
            tuple(self._upload(cat(a, b, 2, width)) for a, b in zip(first.self_kv, second.self_kv)),
            cat(first.filled, second.filled, 1, width), np.concatenate([first.lengths, second.lengths]),
            tuple(self._upload(cat(a, b, 2, src)) for a, b in zip(first.cross_kv, second.cross_kv)),
            self._upload(cat(first.src_mask, second.src_mask, 1, src)))

    # ---------------------------------------------------------------- one step

    def step(self, tokens: np.ndarray, cache: DecoderCache) -> tuple[np.ndarray, DecoderCache]:
        """tokens (N, k) int64 at each row's next k positions -> logits (N, V) for the next token, and the cache
        with the k positions filled. The host cache is written in place: the cache passed in must not be used
        afterwards."""
        n, k = tokens.shape
        positions = cache.lengths[:, None] if k == 1 else cache.lengths[:, None] + np.arange(k)  # (N, k)
        self_mask = cache.step_mask if k == 1 and cache.step_mask is not None else \
            np.concatenate([cache.filled, np.ones((n, k), bool)], axis=1).astype(np.float32)    # (N, T+k)
        try:
            if self.device_cache:
                logits, *outs = self._run_bound(tokens, positions, self_mask, cache)
            else:
                feeds = {"input_ids": tokens, "position_ids": positions, "src_mask": cache.src_mask,
                         SELF_MASK: self_mask}
                feeds.update(zip(self._past_names, cache.self_kv))
                feeds.update(zip(self._cross_names, cache.cross_kv))
                logits, *outs = self._run_decoder(self._decoder_outputs, feeds)
        except GRAPH_RUN_ERRORS as e:
            raise GraphRunError(f"{self.manifest.decoder_file} failed: {str(e).splitlines()[0]}") from None
        if logits.shape != (n, len(self.manifest.vocab)):
            raise GraphRunError(f"{self.manifest.decoder_file} returned logits of shape {logits.shape}, expected "
                                f"{(n, len(self.manifest.vocab))}")
        kv_out, log_norm = outs[:self._kv_count], (outs[-1] if self.manifest.log_norm else None)
        step_mask = None
        if self.device_cache:        # the grown cache as it comes: new keys appended after every row's slots
            self_kv, filled = tuple(kv_out), np.concatenate([cache.filled, np.ones((n, k), bool)], axis=1)
        else:
            self_kv, filled = self._fill_slots(cache, kv_out, k)
            if k == 1 and filled is cache.filled:            # same width: the mask gains the slots just filled
                step_mask = self_mask
                step_mask[:, :-1] = filled
        return logits, replace(cache, self_kv=self_kv, filled=filled, lengths=cache.lengths + k, log_norm=log_norm,
                               step_mask=step_mask)

    def _fill_slots(self, cache: DecoderCache, kv_out: list[np.ndarray], k: int) -> tuple[tuple, np.ndarray]:
        """Write the k new keys/values (each new (N, H, k, Dh), or the last k of each present (N, H, T+k, Dh))
        into each row's next slots, widening the buffers by whole CACHE_ALIGN blocks when a row runs out of room."""
        width, lengths = cache.filled.shape[1], cache.lengths
        first = 0 if self._new_kv_only else width                  # where the new positions sit in kv_out
        low, high = (int(lengths[0]),) * 2 if len(lengths) == 1 else (int(lengths.min()), int(lengths.max()))
        self_kv, filled = cache.self_kv, cache.filled
        if high + k > width:
            grown = aligned(high + k)
            self_kv = tuple(_pad_axis(x, 2, grown) for x in self_kv)
            filled = _pad_axis(filled, 1, grown)
        same = low == high                                  # rows in step (one request, or a batch started
        rows = None if same else np.arange(len(lengths))    # together): one slice instead of a gather per row
        for j in range(k):
            if same:
                slot = low + j
                for buf, new in zip(self_kv, kv_out):
                    buf[:, :, slot, :] = new[:, :, first + j, :]                          # (N, H, Dh)
                filled[:, slot] = True
                continue
            slot = cache.lengths + j
            for buf, new in zip(self_kv, kv_out):
                buf[rows, :, slot, :] = new[:, :, first + j, :]                           # (N, H, Dh)
            filled[rows, slot] = True
        return self_kv, filled

    def _run_bound(self, tokens: np.ndarray, positions: np.ndarray, self_mask: np.ndarray, cache: DecoderCache):
        """One decoder call with IOBinding: cache tensors in and out stay in the provider's memory."""
        binding = self.decoder.io_binding()
        binding.bind_cpu_input("input_ids", tokens)
        binding.bind_cpu_input("position_ids", positions)
        binding.bind_cpu_input(SELF_MASK, self_mask)
        binding.bind_ortvalue_input("src_mask", cache.src_mask)
        for name, value in zip(self._past_names + self._cross_names, cache.self_kv + cache.cross_kv):
            binding.bind_ortvalue_input(name, value)
        for name in self._decoder_outputs:      # logits and log_norm to the host, the cache stays on the device
            if name in ("logits", LOG_NORM):
                binding.bind_output(name, "cpu")
            else:
                binding.bind_output(name, self._device, self._device_id)
        self.decoder.run_with_iobinding(binding)
        logits, *outs = binding.get_outputs()
        if self.manifest.log_norm:
            outs[-1] = outs[-1].numpy()
        return (logits.numpy(), *outs)

    # ---------------------------------------------------------------- rows moved or dropped

    def reorder(self, cache: DecoderCache, rows: np.ndarray) -> DecoderCache:
        """Row i of the result continues old row rows[i]; rows may repeat (a beam copied) and may be fewer than
        before (rows that finished leave). A square reordering only moves rows that share their source (beams of
        one prompt), so only the self-attention cache moves, in place on the host, copying just the rows that
        change: the cache passed in must not be used afterwards."""
        rows = np.asarray(rows, np.int64)
        prefix = cache.prefix[rows] if cache.prefix is not None else None
        if len(rows) != cache.rows:                  # rows leave (and beams may move): the rest keep their buffers
            pick = keep_rows if not self.device_cache else lambda x, r: x[r]
            return DecoderCache(tuple(self._upload(pick(_host(x), rows)) for x in cache.self_kv),
                                pick(cache.filled, rows), cache.lengths[rows],
                                tuple(self._upload(pick(_host(x), rows)) for x in cache.cross_kv),
                                self._upload(pick(_host(cache.src_mask), rows)), prefix)
        if self.device_cache:
            moved = tuple(self._upload(x.numpy()[rows]) for x in cache.self_kv)
            filled = cache.filled[rows]
        else:
            changed = changed_rows(rows)
            moved = tuple(move_rows(x, rows, changed) for x in cache.self_kv)
            filled = move_rows(cache.filled, rows, changed)
        return replace(cache, self_kv=moved, filled=filled, lengths=cache.lengths[rows], prefix=prefix,
                       log_norm=None, step_mask=None)

    # ---------------------------------------------------------------- scoring

    def teacher_forced_logits(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]
                              ) -> list[np.ndarray]:
        """Logits of every target position in one encoder and one decoder call: targets[i] = <sos> + ids (the
        decoder input) -> per pair (len(targets[i]), V) float32, row t predicting the id after targets[i][t].
        Targets are padded to a multiple of CACHE_ALIGN, so a pair scores the same in any batch (and in any lane:
        with several lanes the pairs are split among them and scored at once)."""
        if not self.manifest.scoring:
            raise ValueError(f"{self.model_dir} has no scoring output ({ALL_LOGITS}); re-export it with "
                             f"python -m export.poems to score poems")
        if self.lanes > 1 and len(sources) > 1:     # the pairs split among the lanes, scored at once
            parts = np.array_split(np.arange(len(sources)), min(self.lanes, len(sources)))
            scored = in_lanes(lambda rows: self._teacher_forced([sources[i] for i in rows],
                                                                [targets[i] for i in rows]), parts)
            return [logits for part in scored for logits in part]
        return self._teacher_forced(sources, targets)

    def _teacher_forced(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]
                        ) -> list[np.ndarray]:
        cache = self.start(sources)
        ids, _ = pad_batch(targets, self.manifest.pad_id, aligned(max(len(t) for t in targets)))  # pads after <eos>
        positions = np.ascontiguousarray(np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape))
        self_mask = np.concatenate([cache.filled, np.ones(ids.shape, bool)], axis=1).astype(np.float32)
        feeds = {"input_ids": ids, "position_ids": positions, "src_mask": _host(cache.src_mask), SELF_MASK: self_mask}
        feeds.update(zip(self._past_names, (_host(x) for x in cache.self_kv)))
        feeds.update(zip(self._cross_names, (_host(x) for x in cache.cross_kv)))
        try:
            (all_logits,) = self.decoder.run([ALL_LOGITS], feeds)                   # (B, N, V)
        except GRAPH_RUN_ERRORS as e:
            raise GraphRunError(f"{self.manifest.decoder_file} failed: {str(e).splitlines()[0]}") from None
        if all_logits.shape[:2] != ids.shape:
            raise GraphRunError(f"{self.manifest.decoder_file} returned all_logits of shape {all_logits.shape}, "
                                f"expected {ids.shape + (len(self.manifest.vocab),)}")
        return [all_logits[i, :len(t)] for i, t in enumerate(targets)]

    def _upload(self, array: np.ndarray):
        if not self.device_cache:
            return array
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self._device, self._device_id)


class RecomputeModel:
    """Same interface, no KV cache: every step re-runs the decoder over the whole prefix (for benchmarks)."""

    def __init__(self, model: PoemModel):
        self.model, self.manifest = model, model.manifest

    def start(self, sources: Sequence[Sequence[int]], copies: int = 1) -> DecoderCache:
        cache = self.model.start(sources, copies)
        return replace(cache, prefix=np.zeros((cache.rows, 0), np.int64))

    def step(self, tokens: np.ndarray, cache: DecoderCache) -> tuple[np.ndarray, DecoderCache]:
        prefix = np.concatenate([cache.prefix, tokens], axis=1)                     # (N, T+k)
        fresh = replace(cache, self_kv=self.model.empty_self_kv(len(prefix)), filled=np.zeros((len(prefix), 0), bool),
                        lengths=np.zeros(len(prefix), np.int64))
        logits, stepped = self.model.step(prefix, fresh)
        return logits, replace(cache, prefix=prefix, lengths=cache.lengths + tokens.shape[1],
                               log_norm=stepped.log_norm)

    def reorder(self, cache: DecoderCache, rows: np.ndarray) -> DecoderCache:
        return replace(cache, prefix=cache.prefix[rows], lengths=cache.lengths[rows], src_mask=cache.src_mask[rows],
                       cross_kv=tuple(x[rows] for x in cache.cross_kv))
