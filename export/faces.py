"""Export the DCGAN generator (and its discriminator) to self-contained ONNX graphs that follow
genrt.contract.FacesManifest.

    python -m export.faces --checkpoint runs/faces/checkpoint.pt --out genrt/models/faces [--int8]

The graph takes z (batch, nz) float32 and returns images (batch, H, W, 3) uint8: the [-1, 1] -> uint8 conversion
and the NCHW -> NHWC permute run inside the graph, so the runtime needs nothing but onnxruntime.
Before the manifest is written the export is checked: onnx.checker, float parity with PyTorch (a float-output
twin of the graph, max abs diff <= 1e-4), uint8 parity (off-by-one rounding allowed) and the contract's graph I/O.

The discriminator, when the checkpoint holds one (training checkpoints do), becomes `discriminator.onnx`:
uint8 images (batch, H, W, 3), the generator's output, -> realness logits (batch,), BatchNorm folded, checked
against PyTorch on random images. It is what `genrt faces --filter` runs to keep the faces it rates most real;
--no-discriminator leaves it out. --critic ships a critic trained after the GAN instead (trainers.faces_critic:
the GAN's own discriminator barely tells the finished generator's worst faces apart); the manifest records which
(discriminator_training).

--int8 also writes `<out>_int8`: the generator rewritten without ConvTranspose (export/faces_subpixel.py: 2x2
convolutions + pixel shuffle, checked against PyTorch like the fp32 graph), then statically quantized (QDQ) so that
onnxruntime runs QLinearConv/QGemm kernels, and compared with the fp32 graph on fresh latents. Its discriminator is
quantized the same way, calibrated on generated faces; if it keeps other faces than the fp32 one (below 85 % of
the same half kept), the fp32 discriminator is shipped there instead.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from export.faces_subpixel import subpixel_net
from export.model_dir import ExportError, check_target, command_errors, portable_paths, staged_model_dir
from genrt.contract import FacesManifest, ManifestError, MANIFEST_NAME, write_manifest
from genrt.runtime import load_checked_session, make_session
from trainers.common import config_dict
from trainers.faces import load_discriminator, load_generator
from trainers.faces_critic import IMAGE_SIZE as CRITIC_IMAGE_SIZE, critic_summary, load_critic

OPSET = 17
FLOAT_TOLERANCE = 1e-4      # max abs diff of the [-1, 1] output, ONNX Runtime vs PyTorch
UINT8_TOLERANCE = 1         # rounding of values that sit on a .5 boundary may flip by one level
PARITY_BATCH_SIZES = (1, 5, 64)
DISCRIMINATOR_FILE = "discriminator.onnx"
DISCRIMINATOR_TOLERANCE = 1e-4   # max |onnx - torch| of a logit, relative to max(1, |logit|)
CELEBA_LICENCE = ("CelebA: non-commercial research purposes only (MMLAB, CUHK); "
                  "these weights inherit that restriction")



@dataclass
class ParityReport:
    float_max_abs: dict[int, float]      # batch size -> max |onnx - torch| of the [-1, 1] output
    uint8_max_abs: dict[int, int]        # batch size -> max |onnx - torch| of the uint8 images
    uint8_mismatches: dict[int, int]     # batch size -> number of uint8 values that differ

    def summary(self) -> str:
        return ", ".join(f"batch {b}: float {self.float_max_abs[b]:.2e}, uint8 max {self.uint8_max_abs[b]} "
                         f"({self.uint8_mismatches[b]} values differ)" for b in self.float_max_abs)


# ---------------------------------------------------------------- the graph

def fold_batchnorm(net: nn.Sequential) -> nn.Sequential:
    """Fold each eval-mode BatchNorm2d into the Conv2d / ConvTranspose2d before it (fewer nodes, cleaner int8)."""
    layers: list[nn.Module] = []
    for layer in net:
        if isinstance(layer, nn.BatchNorm2d) and layers and isinstance(layers[-1], (nn.Conv2d, nn.ConvTranspose2d)):
            layers[-1] = fuse_conv_bn_eval(layers[-1], layer, transpose=isinstance(layers[-1], nn.ConvTranspose2d))
        else:
            layers.append(layer)
    return nn.Sequential(*layers)


class FacesGraph(nn.Module):
    """z (B, nz) -> images (B, H, W, 3) uint8, or the raw (B, 3, H, W) [-1, 1] output when as_uint8=False.

    subpixel=False keeps the generator's ConvTranspose layers (fastest in fp32); subpixel=True rewrites them as
    convolutions + pixel shuffle (export/faces_subpixel.py), the form that has fast int8 kernels."""

    def __init__(self, generator: nn.Module, nz: int, as_uint8: bool = True, subpixel: bool = False):
        super().__init__()
        folded = fold_batchnorm(copy.deepcopy(generator).eval().net)
        self.net = subpixel_net(folded) if subpixel else folded
        self.nz, self.as_uint8, self.channels_last = nz, as_uint8, subpixel

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z.reshape(-1, self.nz, 1, 1))                    # (B, 3, H, W) or (B, H, W, 3) in [-1, 1]
        if not self.as_uint8:
            return x.permute(0, 3, 1, 2) if self.channels_last else x  # (B, 3, H, W)
        pixels = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return pixels if self.channels_last else pixels.permute(0, 2, 3, 1)  # (B, H, W, 3) uint8


class DiscriminatorGraph(nn.Module):
    """images (B, H, W, 3) uint8 -> realness (B,) float32: the trainer's discriminator in eval mode, BatchNorm
    folded, with the generator's output format converted inside the graph (NHWC uint8 -> NCHW in [-1, 1])."""

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.net = fold_batchnorm(copy.deepcopy(discriminator).eval().net)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0           # (B, 3, H, W) in [-1, 1]
        return self.net(x).flatten()                                    # (B,)


def discriminator_reference(discriminator: nn.Module, images: np.ndarray) -> np.ndarray:
    """The unmodified discriminator's logits (B,) for uint8 images (B, H, W, 3), as in training."""
    with torch.no_grad():
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
        return discriminator.eval()(x).numpy()


def reference_output(generator: nn.Module, z: torch.Tensor, as_uint8: bool) -> np.ndarray:
    """What the graph must reproduce, computed by the unmodified checkpoint generator."""
    with torch.no_grad():
        x = generator.eval()(z[:, :, None, None])                       # (B, 3, H, W) in [-1, 1]
        if as_uint8:
            x = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return x.numpy()


def export_graph(module: nn.Module, path: Path, spec_names: tuple[str, str],
                 example: torch.Tensor | None = None) -> None:
    """Trace to a single .onnx file (weights inside), dynamic batch axis "batch".

    Uses the TorchScript exporter (dynamo=False): on torch 2.13 it emits opset 17 directly and embeds the
    weights, while the dynamo exporter only emits opset >= 18 and converts down."""
    input_name, output_name = spec_names
    z = torch.zeros(2, module.nz) if example is None else example        # (B, nz) for a generator
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            module.eval(), (z,), str(path), dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    if uses_external_data(path):
        raise ExportError(f"{path} keeps weights outside the file")


def uses_external_data(path: Path) -> bool:
    model = onnx.load(str(path), load_external_data=False)
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer) or \
        any(path.parent.glob(path.name + ".data"))


# ---------------------------------------------------------------- checks

def random_latents(batch: int, nz: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, nz), dtype=np.float32)  # (B, nz)


def check_parity(generator: nn.Module, nz: int, uint8_graph: Path, float_graph: Path,
                 batch_sizes: Sequence[int] = PARITY_BATCH_SIZES, seed: int = 0,
                 threads: int | None = None) -> ParityReport:
    """Run both graphs in onnxruntime on random latents and compare with PyTorch; raise ExportError if off."""
    uint8_session = make_session(uint8_graph, "cpu", threads)
    float_session = make_session(float_graph, "cpu", threads)
    input_name = uint8_session.get_inputs()[0].name
    report = ParityReport({}, {}, {})
    for i, batch in enumerate(batch_sizes):
        z = random_latents(batch, nz, seed + i)
        got_float = float_session.run(None, {input_name: z})[0]        # (B, 3, H, W) float32
        got_uint8 = uint8_session.run(None, {input_name: z})[0]        # (B, H, W, 3) uint8
        want_float = reference_output(generator, torch.from_numpy(z), as_uint8=False)
        want_uint8 = reference_output(generator, torch.from_numpy(z), as_uint8=True)
        if got_uint8.shape != want_uint8.shape or got_uint8.dtype != np.uint8:
            raise ExportError(f"batch {batch}: graph gave {got_uint8.dtype} {got_uint8.shape}, "
                              f"expected uint8 {want_uint8.shape}")
        pixel_diff = np.abs(got_uint8.astype(np.int16) - want_uint8.astype(np.int16))
        report.float_max_abs[batch] = float(np.abs(got_float - want_float).max())
        report.uint8_max_abs[batch] = int(pixel_diff.max())
        report.uint8_mismatches[batch] = int(np.count_nonzero(pixel_diff))
    worst_float, worst_uint8 = max(report.float_max_abs.values()), max(report.uint8_max_abs.values())
    if worst_float > FLOAT_TOLERANCE or worst_uint8 > UINT8_TOLERANCE:
        raise ExportError(f"onnxruntime and PyTorch disagree: {report.summary()}")
    return report


def check_contract(model_dir: Path, manifest: FacesManifest, threads: int | None = None) -> None:
    """Every graph's I/O names, dtypes and shapes must be exactly the contract's."""
    try:
        for spec in manifest.graphs().values():
            load_checked_session(model_dir, spec, "cpu", threads)
    except ManifestError as e:
        raise ExportError(str(e)) from None


def export_discriminator(discriminator: nn.Module, path: Path, manifest: FacesManifest,
                         batch_sizes: Sequence[int] = PARITY_BATCH_SIZES, seed: int = 0,
                         threads: int | None = None) -> float:
    """Write the discriminator graph to `path` and check it against PyTorch on random images; returns the largest
    difference of a logit relative to max(1, |logit|), or raises ExportError beyond DISCRIMINATOR_TOLERANCE."""
    spec = manifest.discriminator()
    size, channels = manifest.image_size, manifest.channels
    example = torch.zeros(2, size, size, channels, dtype=torch.uint8)                 # (B, H, W, 3)
    export_graph(DiscriminatorGraph(discriminator), path, (spec.inputs[0].name, spec.outputs[0].name), example)
    session = make_session(path, "cpu", threads)
    worst = 0.0
    for i, batch in enumerate(batch_sizes):
        images = np.random.default_rng(seed + i).integers(0, 256, (batch, size, size, channels), dtype=np.uint8)
        got = session.run(None, {spec.inputs[0].name: images})[0]                    # (B,)
        want = discriminator_reference(discriminator, images)
        if got.shape != want.shape:
            raise ExportError(f"{spec.file}: {got.shape} logits for {batch} images, expected {want.shape}")
        worst = max(worst, float((np.abs(got - want) / np.maximum(1.0, np.abs(want))).max()))
    if worst > DISCRIMINATOR_TOLERANCE:
        raise ExportError(f"{spec.file}: onnxruntime and PyTorch disagree by {worst:.2e} (relative)")
    return worst


# ---------------------------------------------------------------- manifest

def training_summary(cfg_dict: dict, state: dict) -> dict:
    """Training settings worth shipping: the checkpoint config (minus local-machine details, paths made portable) +
    steps done."""
    local_only = {"out", "device", "resume", "dry_run", "threads"}
    summary = portable_paths({k: v for k, v in cfg_dict.items() if k not in local_only})
    summary["steps_completed"] = int(state.get("step", 0))
    return summary


def build_manifest(cfg_dict: dict, state: dict, image_size: int, precision: str = "fp32",
                   discriminator: bool = False, discriminator_training: dict | None = None) -> FacesManifest:
    return FacesManifest(nz=int(cfg_dict["nz"]), image_size=image_size, precision=precision,
                         training=training_summary(cfg_dict, state), data_licence=CELEBA_LICENCE,
                         discriminator_file=DISCRIMINATOR_FILE if discriminator else "",
                         discriminator_training=dict(discriminator_training or {}) if discriminator else {})


# ---------------------------------------------------------------- the whole export

def export_faces(checkpoint: str | Path, out_dir: str | Path, *, int8: bool = False,
                 int8_out_dir: str | Path | None = None, batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
                 seed: int = 0, threads: int | None = None, force: bool = False, discriminator: bool = True,
                 critic: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Export, check, write the manifest last, in a temporary directory renamed into place. Returns the model
    directory (and writes `<out>_int8` if int8). A non-empty target is refused unless `force`. `discriminator`:
    ship the checkpoint's discriminator too, when it has one (what `genrt faces --filter` runs); `critic`: a
    trainers.faces_critic checkpoint to ship in its place."""
    final_dir = check_target(out_dir, force)
    int8_final = (Path(int8_out_dir) if int8_out_dir else final_dir.with_name(final_dir.name + "_int8")) if int8 \
        else None
    if int8_final is not None:
        a, b = final_dir.absolute(), int8_final.absolute()
        if a == b or a in b.parents or b in a.parents:
            raise ExportError(f"the int8 directory {int8_final} must lie apart from {final_dir} (not the same "
                              f"folder, nor one inside the other)")
        check_target(int8_final, force)
    if critic is not None and not discriminator:
        raise ExportError("--critic is the filter's graph: it cannot be shipped with --no-discriminator")
    generator, cfg, state = load_generator(checkpoint)
    if critic is not None and cfg.image_size != CRITIC_IMAGE_SIZE:
        raise ExportError(f"--critic judges {CRITIC_IMAGE_SIZE}x{CRITIC_IMAGE_SIZE} faces; {checkpoint} draws "
                          f"{cfg.image_size}x{cfg.image_size}")
    trained = critic_summary(critic) if critic is not None else {}
    realness = load_critic(critic) if critic is not None else load_discriminator(checkpoint) if discriminator else None
    if discriminator and realness is None:
        log(f"{checkpoint} holds no discriminator: the model directory will have none (no --filter)")
    with staged_model_dir(final_dir, force) as out_dir:
        graph_path = _export_fp32(generator, realness, cfg, state, out_dir, batch_sizes, seed, threads, log, trained)
        if int8_final is not None:
            with staged_model_dir(int8_final, force) as int8_dir:
                _export_int8_variant(generator, realness, cfg, state, graph_path, int8_dir, batch_sizes, seed,
                                     threads, log, trained)
    return final_dir


def _export_fp32(generator, critic, cfg, state, out_dir: Path, batch_sizes, seed, threads, log,
                 trained: dict) -> Path:
    cfg_dict = config_dict(cfg)

    image_size = reference_output(generator, torch.zeros(1, cfg.nz), as_uint8=True).shape[1]
    manifest = build_manifest(cfg_dict, state, image_size, discriminator=critic is not None,
                              discriminator_training=trained)
    spec = manifest.graph()
    names = (spec.inputs[0].name, spec.outputs[0].name)
    graph_path = out_dir / spec.file
    report = export_checked(generator, cfg.nz, graph_path, names, batch_sizes, seed, threads, subpixel=False)
    log(f"parity vs PyTorch: {report.summary()}")
    _export_critic(critic, out_dir, manifest, batch_sizes, seed, threads, log)
    check_contract(out_dir, manifest, threads)
    write_manifest(out_dir, manifest)
    log(f"checked {spec.file} ({graph_path.stat().st_size / 1e6:.1f} MB) and {MANIFEST_NAME}")
    return graph_path


def _export_critic(critic, out_dir: Path, manifest: FacesManifest, batch_sizes, seed, threads, log) -> None:
    if critic is None:
        return
    path = out_dir / manifest.discriminator_file
    worst = export_discriminator(critic, path, manifest, batch_sizes, seed, threads)
    log(f"checked {manifest.discriminator_file} ({path.stat().st_size / 1e6:.1f} MB): "
        f"parity vs PyTorch {worst:.1e} (relative)")


def _export_int8_variant(generator, critic, cfg, state, graph_path: Path, int8_dir: Path, batch_sizes, seed,
                         threads, log, trained: dict) -> None:
    cfg_dict = config_dict(cfg)
    image_size = reference_output(generator, torch.zeros(1, cfg.nz), as_uint8=True).shape[1]
    manifest = build_manifest(cfg_dict, state, image_size, "int8", discriminator=critic is not None,
                              discriminator_training=trained)
    spec = manifest.graph()
    names = (spec.inputs[0].name, spec.outputs[0].name)
    with tempfile.TemporaryDirectory() as tmp:
        if critic is not None:
            _export_critic(critic, Path(tmp), manifest, batch_sizes, seed, threads, log)
            export_int8_discriminator(Path(tmp) / manifest.discriminator_file, int8_dir, manifest, graph_path,
                                      seed=seed, threads=threads, log=log)
        subpixel_path = Path(tmp) / "generator_subpixel.onnx"
        report = export_checked(generator, cfg.nz, subpixel_path, names, batch_sizes, seed, threads, subpixel=True)
        log(f"sub-pixel form parity vs PyTorch: {report.summary()}")
        export_int8(subpixel_path, int8_dir, manifest, reference_graph=graph_path, seed=seed, threads=threads,
                    log=log)


def export_checked(generator: nn.Module, nz: int, path: Path, names: tuple[str, str], batch_sizes: Sequence[int],
                   seed: int, threads: int | None, subpixel: bool) -> ParityReport:
    """Write the uint8 graph to `path` and check it (and its float twin) against PyTorch."""
    export_graph(FacesGraph(generator, nz, as_uint8=True, subpixel=subpixel), path, names)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "generator_float.onnx"
        export_graph(FacesGraph(generator, nz, as_uint8=False, subpixel=subpixel), float_path, names)
        return check_parity(generator, nz, path, float_path, batch_sizes, seed, threads)


# ---------------------------------------------------------------- optional int8

# Quantized: the matrix products and what sits between them; Tanh and the uint8 conversion stay float.
INT8_OPS = ["Conv", "Gemm", "Relu", "Transpose", "Reshape", "Slice"]


# The discriminator's convolutions and activations quantized; its input conversion and last logit stay float.
DISCRIMINATOR_INT8_OPS = ["Conv", "LeakyRelu"]
DISCRIMINATOR_INT8_AGREEMENT = 0.85   # at least this share of the faces the fp32 graph keeps at keep 0.5 kept alike
DISCRIMINATOR_CHECK_FACES = 512


def export_int8_discriminator(fp32_graph: Path, out_dir: Path, manifest: FacesManifest, generator_graph: Path, *,
                              calibration_batches: int = 8, batch: int = 32, seed: int = 0,
                              threads: int | None = None, log: Callable[[str], None] = print) -> float:
    """Static QDQ quantization of the discriminator, calibrated on faces of `generator_graph` (the images it
    scores at run time), then compared with the fp32 graph on fresh faces: of the half each rates most real, the
    share both keep. Returns that share; below DISCRIMINATOR_INT8_AGREEMENT the fp32 graph is written instead
    (an undertrained discriminator's logits are too close together for 8 bits to keep their order)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    generator = make_session(generator_graph, "cpu", threads)
    spec = manifest.discriminator()
    z_name, image_name = manifest.graph().inputs[0].name, spec.inputs[0].name

    def faces(count: int, from_seed: int) -> np.ndarray:                 # (count, H, W, 3) uint8
        return np.concatenate([generator.run(None, {z_name: random_latents(batch, manifest.nz, from_seed + i)})[0]
                               for i in range(-(-count // batch))])[:count]

    class GeneratedFaces(CalibrationDataReader):
        def __init__(self) -> None:
            images = faces(calibration_batches * batch, seed + 3000)
            self.batches = iter([{image_name: images[i:i + batch]} for i in range(0, len(images), batch)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    out_dir.mkdir(parents=True, exist_ok=True)
    int8_path = out_dir / spec.file
    quantize_static(str(fp32_graph), str(int8_path), GeneratedFaces(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=DISCRIMINATOR_INT8_OPS)
    onnx.checker.check_model(onnx.load(str(int8_path)), full_check=True)
    images = faces(DISCRIMINATOR_CHECK_FACES, seed + 4000)
    half = DISCRIMINATOR_CHECK_FACES // 2
    kept = [set(np.argsort(-make_session(path, "cpu", threads).run(None, {image_name: images})[0])[:half].tolist())
            for path in (fp32_graph, int8_path)]
    agreement = len(kept[0] & kept[1]) / half
    log(f"int8 {spec.file} ({int8_path.stat().st_size / 1e6:.1f} MB) vs fp32 on {DISCRIMINATOR_CHECK_FACES} faces: "
        f"{agreement:.1%} of the half each keeps is the same")
    if agreement < DISCRIMINATOR_INT8_AGREEMENT:
        shutil.copyfile(fp32_graph, int8_path)
        log(f"below {DISCRIMINATOR_INT8_AGREEMENT:.0%}: the int8 directory ships the fp32 {spec.file} instead")
    return agreement


def export_int8(fp32_graph: Path, out_dir: Path, manifest: FacesManifest, *, reference_graph: Path | None = None,
                calibration_batches: int = 8, batch: int = 16, seed: int = 0, threads: int | None = None,
                log: Callable[[str], None] = print) -> Path:
    """Static QDQ quantization of `fp32_graph` (the sub-pixel form), calibrated on random latents (the generator's
    real inputs), then compared with `reference_graph` (default: `fp32_graph`) on fresh latents."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    input_name = manifest.graph().inputs[0].name

    class RandomLatents(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{input_name: random_latents(batch, manifest.nz, seed + 1000 + i)}
                                 for i in range(calibration_batches)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    int8_path = out_dir / manifest.graph_file
    # BatchNorm is already folded, so the graph needs no quant_pre_process (ORT logs a hint that it could).
    quantize_static(str(fp32_graph), str(int8_path), RandomLatents(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=INT8_OPS)
    onnx.checker.check_model(onnx.load(str(int8_path)), full_check=True)
    check_contract(out_dir, manifest, threads)
    z = random_latents(64, manifest.nz, seed + 2000)
    fp32_images = make_session(reference_graph or fp32_graph, "cpu", threads).run(None, {input_name: z})[0]
    int8_images = make_session(int8_path, "cpu", threads).run(None, {input_name: z})[0]
    diff = np.abs(fp32_images.astype(np.int16) - int8_images.astype(np.int16))
    log(f"int8 vs fp32 on 64 latents: mean abs {diff.mean():.2f}, max abs {diff.max()} (uint8 levels)")
    write_manifest(out_dir, manifest)
    log(f"wrote {int8_path} ({int8_path.stat().st_size / 1e6:.1f} MB) and {out_dir / MANIFEST_NAME}")
    return out_dir


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="trainer checkpoint (runs/faces/checkpoint.pt)")
    parser.add_argument("--out", required=True, type=Path, help="model directory to write (genrt/models/faces)")
    parser.add_argument("--int8", action="store_true", help="also write a statically quantized copy to <out>_int8")
    parser.add_argument("--int8-out", type=Path, default=None, help="directory of the int8 copy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random latents used for checks")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads for the checks")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out (and --int8-out)")
    parser.add_argument("--no-discriminator", dest="discriminator", action="store_false",
                        help="leave the discriminator out (smaller directories; genrt faces --filter needs it)")
    parser.add_argument("--critic", type=Path, default=None,
                        help="ship this critic (python -m trainers.faces_critic) as the filter's graph instead of "
                             "the GAN's discriminator")
    args = parser.parse_args(argv)
    with command_errors():
        out = export_faces(args.checkpoint, args.out, int8=args.int8, int8_out_dir=args.int8_out,
                           seed=args.seed, threads=args.threads, force=args.force,
                           discriminator=args.discriminator, critic=args.critic)
    print(f"wrote {out}" + (f" and {args.int8_out or str(out) + '_int8'}" if args.int8 else ""))


if __name__ == "__main__":
    main()
