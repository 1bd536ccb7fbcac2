"""genrt's resource budget, in one place: every number a caller or a model directory gives that would grow memory,
time or disk in proportion is checked here before any work starts, and refused with a message naming the limit.

Entry points call these checks (the CLI, FaceGenerator, the manifest reader, the session maker); the limits are
far above any real use and far below what would exhaust a device.
"""
from __future__ import annotations

from math import prod
from typing import Any

import numpy as np


class ResourceError(ValueError):
    """A request over genrt's resource budget; the message names the parameter and the limit."""


MAX_THREADS = 256                # onnxruntime threads per session: starting more only stalls the load
MAX_IMAGES = 100_000             # images one call streams (faces --n / --interpolate, iter_batches, iter_interpolation)
MAX_BATCH = 1024                 # rows per graph call (faces and scoring batch sizes)
MAX_SEED = 2**63 - 1             # seeds of faces and poems alike (an int64, what most clients can hold)
MAX_ARRAY_BYTES = 2 << 30        # any one array genrt holds for a caller: generated images, a decoder's K/V cache
FLOAT32_BYTES = 4

# A model directory is read before its graphs are opened: these bound what a crafted manifest can make genrt do.
MAX_MANIFEST_BYTES = 64 << 20
MAX_GRAPH_ENTRIES = 64           # the manifest's informative `graphs` section
MODEL_SIZE_LIMITS = {
    "vocab": 1 << 20, "d_model": 1 << 16, "num_heads": 1024, "num_encoder_layers": 256, "num_decoder_layers": 256,
    "dim_feedforward": 1 << 18, "max_len": 1 << 16, "nz": 1 << 16, "image_size": 8192, "channels": 4,
}
# Protobuf fields genrt's own ONNX reader visits before giving up (a real decoder graph has a few thousand).
MAX_PROTO_FIELDS = 200_000


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_count(name: str, value: Any, high: int, low: int = 1) -> int:
    """An integer in [low, high] (numpy integers too): ValueError for a non-integer or below low, ResourceError
    above high."""
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r:.40}")
    if value > high:
        said = f"{int(value):,}" if value < 10 ** 15 else f"about {float(value):.1e}"   # no 300-digit numbers
        raise ResourceError(f"{name} is {said}; genrt's limit is {high:,}")
    return int(value)


def check_array(what: str, shape: tuple[int, ...], itemsize: int, hint: str = "") -> None:
    """Refuse to build an array of `shape` (elements of `itemsize` bytes) larger than MAX_ARRAY_BYTES."""
    size = prod(int(d) for d in shape) * itemsize
    if size > MAX_ARRAY_BYTES:
        raise ResourceError(f"{what} would take {size / 2**30:,.1f} GiB, over genrt's memory budget of "
                            f"{MAX_ARRAY_BYTES / 2**30:g} GiB{'; ' + hint if hint else ''}")


def check_threads(threads: Any) -> int | None:
    """None (= physical cores) or a thread count in [1, MAX_THREADS]."""
    if threads is None:
        return None
    if not _is_int(threads) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r:.40}")
    return check_count("threads", threads, MAX_THREADS)


# ---------------------------------------------------------------- poems (called by the generator before decoding)

def decode_rows(prompts: int, num_beams: int = 1, num_return_sequences: int = 1, best_of: int = 1) -> int:
    """Decoder rows one generate() call runs at once: every prompt holds max(beams, samples drawn) rows."""
    return prompts * max(num_beams, num_return_sequences, best_of)


def check_poem_decode(manifest: Any, prompts: int, num_beams: int = 1, num_return_sequences: int = 1,
                      best_of: int = 1, source_len: int | None = None) -> None:
    """Refuse a generate() call whose decoder cache would exceed the memory budget. Per row the self-attention
    cache grows to (layers, 2, max_len, d_model) and the cross-attention K/V hold (layers, 2, source_len, d_model),
    float32; `source_len` None = max_len."""
    rows = decode_rows(prompts, num_beams, num_return_sequences, best_of)
    positions = manifest.max_len + (manifest.max_len if source_len is None else source_len)
    check_array(f"the decoder cache for {rows:,} rows ({prompts:,} prompts x {rows // max(prompts, 1):,} beams or "
                f"samples)", (rows, manifest.num_decoder_layers, 2, positions, manifest.d_model), FLOAT32_BYTES,
                "use fewer prompts per call, or fewer beams or samples")


def check_poem_score(manifest: Any, batch_size: int, longest: int) -> None:
    """Refuse a score() batch whose teacher-forced logits (batch, longest, vocab) float32 exceed the budget."""
    longest = min(longest, manifest.max_len)
    check_array(f"scoring {batch_size:,} poems at once", (batch_size, longest, len(manifest.vocab)), FLOAT32_BYTES,
                "use a smaller batch size")
