"""export.faces_subpixel: the ConvTranspose-free generator computes the same function, and its int8 graph uses
onnxruntime's integer kernels (QLinearConv / QGemm), not a dequantized ConvTranspose."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from export.faces import FacesGraph, export_int8, fold_batchnorm, build_manifest, export_checked
from export.faces_subpixel import LatentProjection, SubPixelUp, shifted_conv, subpixel_net
from trainers.common import config_dict
from trainers.faces import load_generator
from trainers.faces_model import Generator

torch.set_num_threads(1)


@pytest.mark.parametrize("size", [1, 4, 7])
@pytest.mark.parametrize("bias", [False, True])
def test_shifted_conv_plus_shuffle_equals_conv_transpose(size, bias):
    torch.manual_seed(size)
    ct = nn.ConvTranspose2d(6, 5, 4, 2, 1, bias=bias)
    x = torch.randn(3, 6, size, size)                                   # (B, C_in, H, W)
    up = SubPixelUp(ct, nn.Identity(), size, channels_last_out=False)
    with torch.no_grad():
        torch.testing.assert_close(up(x), ct(x), rtol=0, atol=1e-5)
        channels_last = SubPixelUp(ct, nn.Identity(), size, channels_last_out=True)(x)
        torch.testing.assert_close(channels_last, ct(x).permute(0, 2, 3, 1), rtol=0, atol=1e-5)
    assert shifted_conv(ct).weight.shape == (20, 6, 2, 2)


def test_latent_projection_equals_the_first_conv_transpose():
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(10, 8, 4, 1, 0, bias=True)
    z = torch.randn(5, 10)
    with torch.no_grad():
        torch.testing.assert_close(LatentProjection(ct)(z), ct(z[:, :, None, None]), rtol=0, atol=1e-5)


def test_other_conv_transposes_are_refused():
    with pytest.raises(ValueError, match="k=4, s=2, p=1"):
        SubPixelUp(nn.ConvTranspose2d(4, 4, 3, 2, 1), nn.Identity(), 4, False)


def test_whole_generator_rewrite_matches_pytorch():
    torch.manual_seed(1)
    g = Generator(nz=12, ngf=4)
    for m in g.modules():  # non-trivial BatchNorm statistics, so folding is exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    g.eval()
    z = torch.randn(4, 12)
    with torch.no_grad():
        want = g(z[:, :, None, None])                                   # (B, 3, 64, 64)
        got = subpixel_net(fold_batchnorm(g.net))(z[:, :, None, None])  # (B, 64, 64, 3)
        torch.testing.assert_close(got.permute(0, 3, 1, 2), want, rtol=0, atol=1e-5)
        graph = FacesGraph(g, 12, as_uint8=True, subpixel=True)(z)
        plain = FacesGraph(g, 12, as_uint8=True, subpixel=False)(z)
    assert graph.shape == plain.shape == (4, 64, 64, 3)
    assert (graph.int() - plain.int()).abs().max() <= 1


def test_int8_graph_runs_integer_kernels_and_stays_close(tiny_faces_checkpoint, tmp_path):
    generator, cfg, state = load_generator(tiny_faces_checkpoint)
    fp32 = tmp_path / "fp32.onnx"
    subpixel = tmp_path / "subpixel.onnx"
    export_checked(generator, cfg.nz, fp32, ("z", "images"), (1, 3), 0, 1, subpixel=False)
    report = export_checked(generator, cfg.nz, subpixel, ("z", "images"), (1, 3), 0, 1, subpixel=True)
    assert max(report.float_max_abs.values()) < 1e-4
    messages = []
    out = export_int8(subpixel, tmp_path / "int8", build_manifest(config_dict(cfg), state, 64, "int8"),
                      reference_graph=fp32, threads=1, log=messages.append)
    ops = collections.Counter(n.op_type for n in onnx.load(str(out / "generator.onnx")).graph.node)
    assert "ConvTranspose" not in ops and ops["Conv"] >= 4 and ops["QuantizeLinear"] > 0
    mean_abs = float(messages[0].split("mean abs ")[1].split(",")[0])
    assert mean_abs < 8.0, messages[0]  # uint8 levels; a broken rewrite or calibration gives tens


def test_the_session_fuses_int8_convolutions(tiny_faces_checkpoint, tmp_path):
    """What makes the int8 variant fast: onnxruntime turns the QDQ convolutions into QLinearConv kernels."""
    import onnxruntime as ort
    generator, cfg, state = load_generator(tiny_faces_checkpoint)
    subpixel = tmp_path / "subpixel.onnx"
    export_checked(generator, cfg.nz, subpixel, ("z", "images"), (1,), 0, 1, subpixel=True)
    out = export_int8(subpixel, tmp_path / "int8", build_manifest(config_dict(cfg), state, 64, "int8"), threads=1,
                      log=lambda _: None)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out / "generator.onnx"), opts, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert ops["QLinearConv"] + ops.get("NhwcQLinearConv", 0) >= 4, ops
    images = ort.InferenceSession(str(out / "generator.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"z": np.zeros((2, cfg.nz), np.float32)})[0]
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
