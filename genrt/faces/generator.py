"""Face generation with onnxruntime only: latents (B, nz) in, uint8 images (B, 64, 64, 3) out."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnxruntime as ort

from genrt import limits
from genrt.contract import FACES_KIND, FacesManifest
from genrt.runtime import GRAPH_RUN_ERRORS, GraphRunError, open_model_dir

DEFAULT_BATCH_SIZE = 64
INTERPOLATION_MODES = ("slerp", "lerp")


def _positive_int(value: object, name: str, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r:.40}")
    return limits.check_count(name, value, high) if high is not None else int(value)


def check_seed(seed: object) -> int | None:
    """None (fresh randomness) or an integer in [0, limits.MAX_SEED], numpy integers too."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= limits.MAX_SEED:
        raise ValueError(f"seed must be an integer from 0 to {limits.MAX_SEED}, got {seed!r:.40}")
    return int(seed)


def _fraction(value: object, name: str) -> float:
    """A number in (0, 1], numpy numbers too; ValueError naming `name` otherwise (nan and booleans included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r:.40}")
    value = float(value)
    if not (0.0 < value <= 1.0):        # also false for nan
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return value


def check_keep(keep: object) -> float:
    """The fraction of drawn faces to keep when filtering, in (0, 1]. 1.0 = no filter."""
    return _fraction(keep, "keep")


def check_truncation(psi: object) -> float:
    """Truncation psi in (0, 1]: latents are pulled toward the mean latent (0) as z * psi. 1.0 = off."""
    return _fraction(psi, "truncation")


def candidate_count(n: int, keep: float) -> int:
    """How many faces are drawn to keep n: ceil(n / keep), within limits.MAX_IMAGES (rounded first, so that
    3 / 0.3 is 10 and not 11)."""
    what = f"faces drawn to keep {n:,} of them at keep {keep:g}"
    drawn = round(n / keep, 9)
    if not math.isfinite(drawn):                       # a keep so small that n / keep overflows
        raise limits.ResourceError(f"{what}: too many; genrt's limit is {limits.MAX_IMAGES:,}")
    return limits.check_count(what, math.ceil(drawn), limits.MAX_IMAGES)


class FaceGenerator:
    """A loaded faces model: one onnxruntime session, created at load and reused by every call.

    `generate` and friends keep no state between calls (randomness comes from a per-call numpy Generator), so
    one FaceGenerator can serve several threads at once."""

    def __init__(self, manifest: FacesManifest, session: ort.InferenceSession, model_dir: Path, provider: str,
                 discriminator: ort.InferenceSession | None = None):
        self.manifest = manifest
        self.model_dir = model_dir
        self.provider = provider
        self._session = session
        self._discriminator = discriminator     # None: the directory ships none, and faces cannot be filtered
        spec = manifest.graph()
        self._input_name = spec.inputs[0].name
        self._output_name = spec.outputs[0].name

    @classmethod
    def load(cls, model_dir: str | Path | None = None, provider: str = "auto", threads: int | None = None,
             precision: str | None = None, provider_options: dict | None = None,
             spin: bool = True) -> FaceGenerator:
        """Open a model directory (None = the bundled model of `precision`; by default the provider's:
        genrt.providers.PROVIDER_TABLE), checking manifest and graph. `provider` is a short name or any
        onnxruntime execution provider name; `provider_options` go to onnxruntime as they are. spin=False: the
        generator's idle threads sleep at once after a call, for a process where another loop needs the cores
        (genrt serve, beside the poem decoder); True keeps them ready for the next call."""
        opened = open_model_dir(model_dir, FACES_KIND, provider, threads, precision,
                                provider_options=provider_options, spin=spin)
        return cls(opened.manifest, opened.sessions["generator"], opened.model_dir, opened.provider,
                   opened.sessions.get("discriminator"))

    @property
    def can_filter(self) -> bool:
        """Whether the model directory ships its discriminator: `keep` < 1 and `realness` need it."""
        return self._discriminator is not None

    @property
    def nz(self) -> int:
        return self.manifest.nz

    @property
    def image_shape(self) -> tuple[int, int, int]:
        m = self.manifest
        return (m.image_size, m.image_size, m.channels)

    # ------------------------------------------------------------ latents

    def latents(self, n: int, seed: int | None = None, truncation: float = 1.0) -> np.ndarray:
        """n latents (n, nz) float32: standard normal, times `truncation`; the same seed gives the same latents."""
        n, psi, seed = _positive_int(n, "n"), check_truncation(truncation), check_seed(seed)
        limits.check_array(f"{n:,} latents", (n, self.nz), limits.FLOAT32_BYTES)
        return np.random.default_rng(seed).standard_normal((n, self.nz), dtype=np.float32) * np.float32(psi)

    def _latent_batches(self, n: int, seed: int | None, batch_size: int, psi: float) -> Iterator[np.ndarray]:
        """The rows of `latents(n, seed, psi)`, drawn batch by batch so memory stays bounded for huge n."""
        rng = np.random.default_rng(seed)
        for start in range(0, n, batch_size):
            z = rng.standard_normal((min(batch_size, n - start), self.nz), dtype=np.float32)    # (B, nz)
            yield z * np.float32(psi)

    # ------------------------------------------------------------ images

    def _run(self, z: np.ndarray) -> np.ndarray:
        """Images (B, H, W, 3) uint8 for latents z (B, nz): the graph's output is checked, so a graph that returns
        fewer or other images than asked is an error, never a short result."""
        try:
            images = self._session.run([self._output_name], {self._input_name: z})[0]
        except GRAPH_RUN_ERRORS as e:
            raise GraphRunError(f"{self.manifest.graph_file} failed: {str(e).strip().splitlines()[0]}") from None
        expected = (len(z), *self.image_shape)
        if getattr(images, "shape", None) != expected or images.dtype != np.uint8:
            raise GraphRunError(f"{self.manifest.graph_file} returned {getattr(images, 'dtype', '?')} images of shape "
                                f"{tuple(getattr(images, 'shape', ()))} for {len(z)} latents; expected uint8 "
                                f"{expected}")
        return images

    def realness(self, images: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """The discriminator's logits (B,) float32 for uint8 faces (B, H, W, 3): higher = rated more like a real
        photo. The scale is the discriminator's own; only the order means anything."""
        self._need_discriminator()
        batch_size = _positive_int(batch_size, "batch_size", limits.MAX_BATCH)
        images = np.ascontiguousarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape or len(images) == 0:
            raise ValueError(f"faces must be uint8 of shape (batch >= 1, {', '.join(map(str, self.image_shape))}), "
                             f"got {images.dtype} {images.shape}")
        return np.concatenate([self._score(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])

    def _need_discriminator(self) -> None:
        if self._discriminator is None:
            raise ValueError(f"{self.model_dir} has no discriminator graph, so faces cannot be filtered; export the "
                             "model with it (python -m export.faces, without --no-discriminator)")

    def _score(self, images: np.ndarray) -> np.ndarray:
        """realness (B,) float32 for images (B, H, W, 3) uint8, checked like the generator's output."""
        spec = self.manifest.discriminator()
        try:
            scores = self._discriminator.run([spec.outputs[0].name], {spec.inputs[0].name: images})[0]
        except GRAPH_RUN_ERRORS as e:
            raise GraphRunError(f"{spec.file} failed: {str(e).strip().splitlines()[0]}") from None
        if getattr(scores, "shape", None) != (len(images),) or scores.dtype != np.float32:
            raise GraphRunError(f"{spec.file} returned {getattr(scores, 'dtype', '?')} scores of shape "
                                f"{tuple(getattr(scores, 'shape', ()))} for {len(images)} faces; expected float32 "
                                f"({len(images)},)")
        return scores

    def iter_batches(self, n: int, seed: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                     truncation: float = 1.0, keep: float = 1.0) -> Iterator[np.ndarray]:
        """Yield n faces as uint8 batches (B, H, W, 3); concatenated they equal `generate(n, seed, ...)`.
        keep < 1 filters: see `generate`."""
        n = _positive_int(n, "n", limits.MAX_IMAGES)
        batch_size = _positive_int(batch_size, "batch_size", limits.MAX_BATCH)
        psi, seed, keep = check_truncation(truncation), check_seed(seed), check_keep(keep)
        if keep < 1.0:
            self._need_discriminator()
            latents = self._kept_latents(n, candidate_count(n, keep), seed, batch_size, psi)
        else:
            latents = self._latent_batches(n, seed, batch_size, psi)
        for z in latents:
            yield self._run(z)

    def _kept_latents(self, n: int, candidates: int, seed: int | None, batch_size: int,
                      psi: float) -> Iterator[np.ndarray]:
        """Batches (B, nz) of the n latents, among `latents(candidates, seed, psi)`, whose faces the discriminator
        rates highest, in draw order. Memory holds the candidates' latents and scores, never their images: the
        kept faces are generated again."""
        z = self.latents(candidates, seed, psi)                                     # (candidates, nz)
        scores = np.concatenate([self._score(self._run(z[i:i + batch_size]))        # (candidates,)
                                 for i in range(0, candidates, batch_size)])
        chosen = np.zeros(candidates, dtype=bool)
        chosen[np.argsort(-scores, kind="stable")[:n]] = True              # ties: the earlier face
        kept = z[chosen]                                                            # (n, nz)
        for start in range(0, n, batch_size):
            yield kept[start:start + batch_size]

    def generate(self, n: int, seed: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 progress: Callable[[int], None] | None = None, truncation: float = 1.0,
                 keep: float = 1.0) -> np.ndarray:
        """n faces (n, H, W, 3) uint8. `progress(k)` is called after each batch of k images. `truncation` psi < 1
        trades diversity for typical faces (latents scaled toward the mean). `keep` < 1 filters: ceil(n / keep)
        faces are drawn and the n that the model's discriminator rates most real are returned, in the order drawn
        (needs a directory that ships its discriminator: `can_filter`)."""
        n = _positive_int(n, "n", limits.MAX_IMAGES)
        limits.check_array(f"{n:,} images", (n, *self.image_shape), 1, "stream them with iter_batches")
        images = np.empty((n, *self.image_shape), dtype=np.uint8)   # (n, H, W, 3)
        done = 0
        for batch in self.iter_batches(n, seed, batch_size, truncation, keep):
            images[done:done + len(batch)] = batch
            done += len(batch)
            if progress:
                progress(len(batch))
        return images

    def generate_from_latents(self, z: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Faces for given latents z (B, nz) -> (B, H, W, 3) uint8."""
        batch_size = _positive_int(batch_size, "batch_size", limits.MAX_BATCH)
        raw = np.asarray(z)
        if raw.dtype.kind not in "biuf":
            raise ValueError(f"latents must be real numbers, got an array of {raw.dtype}")
        with np.errstate(over="ignore"):             # beyond float32's range becomes inf, refused below
            z = np.ascontiguousarray(raw, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.nz or len(z) == 0:
            raise ValueError(f"latents must have shape (batch >= 1, {self.nz}), got {z.shape}")
        if not np.isfinite(z).all():
            raise ValueError("latents must be finite (a NaN or an infinity, or a value beyond float32's range)")
        limits.check_array(f"{len(z):,} images", (len(z), *self.image_shape), 1)
        return np.concatenate([self._run(z[i:i + batch_size]) for i in range(0, len(z), batch_size)])

    def iter_interpolation(self, k: int, seed: int | None = None, mode: str = "slerp",
                           batch_size: int = DEFAULT_BATCH_SIZE, truncation: float = 1.0) -> Iterator[np.ndarray]:
        """Yield k frames (B, H, W, 3) uint8 batch by batch, morphing between the two latents
        `latents(2, seed, truncation)`, both ends included: memory stays bounded for any k."""
        k = _positive_int(k, "k", limits.MAX_IMAGES)
        batch_size = _positive_int(batch_size, "batch_size", limits.MAX_BATCH)
        if mode not in INTERPOLATION_MODES:
            raise ValueError(f"unknown interpolation mode {mode!r}; choose one of {', '.join(INTERPOLATION_MODES)}")
        start, end = self.latents(2, seed, truncation)
        for i in range(0, k, batch_size):
            t = linspace_part(k, i, min(i + batch_size, k))                                # (B,)
            yield self._run(interpolate_latents(start, end, t=t, mode=mode))

    def interpolate(self, k: int, seed: int | None = None, mode: str = "slerp",
                    batch_size: int = DEFAULT_BATCH_SIZE, truncation: float = 1.0) -> np.ndarray:
        """k faces (k, H, W, 3) morphing between the two latents `latents(2, seed)`, both ends included."""
        k = _positive_int(k, "k", limits.MAX_IMAGES)
        limits.check_array(f"{k:,} frames", (k, *self.image_shape), 1, "stream them with iter_interpolation")
        return np.concatenate(list(self.iter_interpolation(k, seed, mode, batch_size, truncation)))


# ---------------------------------------------------------------- latent interpolation

def linspace_part(k: int, start: int, stop: int) -> np.ndarray:
    """np.linspace(0, 1, k)[start:stop], bit for bit, without building the other k - (stop - start) values."""
    t = np.arange(start, stop, dtype=np.float64) * (1.0 / (k - 1) if k > 1 else 0.0)
    if k > 1 and stop == k:
        t[-1] = 1.0
    return t


def interpolate_latents(start: np.ndarray, end: np.ndarray, k: int | None = None, mode: str = "slerp",
                        t: np.ndarray | None = None) -> np.ndarray:
    """k latents (k, nz) from start to end (or one per fraction in `t`, 0 = start, 1 = end). slerp follows the
    sphere the Gaussian latents live near."""
    if mode not in INTERPOLATION_MODES:
        raise ValueError(f"unknown interpolation mode {mode!r}; choose one of {', '.join(INTERPOLATION_MODES)}")
    if t is None:
        t = np.linspace(0.0, 1.0, _positive_int(k, "k"), dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[:, None]                     # (k, 1)
    a, b = start.astype(np.float64), end.astype(np.float64)          # (nz,)
    cos_omega = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    omega = math.acos(float(np.clip(cos_omega, -1.0, 1.0)))
    if mode == "lerp" or math.sin(omega) < 1e-6:                    # (nearly) parallel: slerp degenerates to lerp
        frames = (1 - t) * a + t * b
    else:
        frames = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / math.sin(omega)
    return frames.astype(np.float32)                                 # (k, nz)


# ---------------------------------------------------------------- files and grids
