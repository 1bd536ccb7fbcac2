"""export.faces: one self-contained ONNX file that matches PyTorch and the contract."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.faces import (
    CELEBA_LICENCE, DISCRIMINATOR_FILE, FLOAT_TOLERANCE, ExportError, FacesGraph, check_parity,
    discriminator_reference, export_discriminator, export_faces, export_graph, random_latents, reference_output,
)
from genrt.contract import FacesManifest, read_manifest
from genrt.faces import FaceGenerator
from genrt.graph_io import check_graph_io, session_io
from trainers.faces import load_discriminator, load_generator

torch.set_num_threads(1)


def cpu_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("graph", ["generator.onnx", DISCRIMINATOR_FILE])
def test_model_dir_holds_self_contained_graphs(tiny_faces_model, graph):
    assert sorted(p.name for p in tiny_faces_model.iterdir()) == ["discriminator.onnx", "generator.onnx",
                                                                 "manifest.json"]
    model = onnx.load(str(tiny_faces_model / graph), load_external_data=False)
    assert model.graph.initializer, "weights must live inside the .onnx file"
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == 17


def test_graph_io_matches_contract(tiny_faces_model):
    manifest = read_manifest(tiny_faces_model)
    inputs, outputs = session_io(cpu_session(tiny_faces_model / manifest.graph_file))
    assert check_graph_io(manifest.graph(), inputs, outputs) == []
    assert inputs[0][2][0] == outputs[0][2][0] == "batch"           # the dynamic axis is named "batch"


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_uint8_graph_matches_pytorch(tiny_faces_model, tiny_faces_checkpoint, batch):
    generator, cfg, _ = load_generator(tiny_faces_checkpoint)
    z = random_latents(batch, cfg.nz, seed=batch)                    # (B, nz)
    got = cpu_session(tiny_faces_model / "generator.onnx").run(None, {"z": z})[0]
    want = reference_output(generator, torch.from_numpy(z), as_uint8=True)
    assert got.shape == (batch, 64, 64, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_float_parity_is_within_tolerance(tiny_faces_checkpoint, tmp_path):
    generator, cfg, _ = load_generator(tiny_faces_checkpoint)
    uint8_path, float_path = tmp_path / "u8.onnx", tmp_path / "f32.onnx"
    export_graph(FacesGraph(generator, cfg.nz, as_uint8=True), uint8_path, ("z", "images"))
    export_graph(FacesGraph(generator, cfg.nz, as_uint8=False), float_path, ("z", "images"))
    report = check_parity(generator, cfg.nz, uint8_path, float_path, batch_sizes=(1, 5), threads=1)
    assert set(report.float_max_abs) == {1, 5}
    assert max(report.float_max_abs.values()) <= FLOAT_TOLERANCE
    assert max(report.uint8_max_abs.values()) <= 1


def test_parity_check_catches_a_wrong_graph(tiny_faces_checkpoint, tmp_path):
    generator, cfg, _ = load_generator(tiny_faces_checkpoint)
    other = FacesGraph(generator, cfg.nz)
    with torch.no_grad():
        other.net[0].weight.mul_(3.0)                                # a graph that no longer matches PyTorch
    export_graph(other, tmp_path / "u8.onnx", ("z", "images"))
    export_graph(FacesGraph(generator, cfg.nz, as_uint8=False), tmp_path / "f32.onnx", ("z", "images"))
    with pytest.raises(ExportError, match="disagree"):
        check_parity(generator, cfg.nz, tmp_path / "u8.onnx", tmp_path / "f32.onnx", batch_sizes=(2,), threads=1)


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_discriminator_graph_matches_pytorch_on_generated_faces(tiny_faces_model, tiny_faces_checkpoint, batch):
    generator, cfg, _ = load_generator(tiny_faces_checkpoint)
    faces = reference_output(generator, torch.from_numpy(random_latents(batch, cfg.nz, seed=batch)), as_uint8=True)
    got = cpu_session(tiny_faces_model / DISCRIMINATOR_FILE).run(None, {"images": faces})[0]
    want = discriminator_reference(load_discriminator(tiny_faces_checkpoint), faces)
    assert got.shape == want.shape == (batch,) and got.dtype == np.float32
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4)
    assert batch == 1 or np.ptp(want) > 0                            # the faces get different scores


def test_discriminator_parity_check_catches_a_wrong_graph(tiny_faces_checkpoint, tiny_faces_model, tmp_path,
                                                           monkeypatch):
    import export.faces as export_faces_module
    manifest = read_manifest(tiny_faces_model)
    monkeypatch.setattr(export_faces_module, "discriminator_reference",
                        lambda d, images: discriminator_reference(d, images) + 0.01)
    with pytest.raises(ExportError, match="discriminator.onnx: onnxruntime and PyTorch disagree"):
        export_discriminator(load_discriminator(tiny_faces_checkpoint), tmp_path / "d.onnx", manifest,
                             batch_sizes=(3,), threads=1)


def test_no_discriminator_and_a_generator_only_checkpoint_give_a_plain_directory(tiny_faces_checkpoint, tmp_path):
    from trainers.common import load_checkpoint, save_checkpoint
    plain = export_faces(tiny_faces_checkpoint, tmp_path / "plain", discriminator=False, batch_sizes=(2,),
                         threads=1, log=lambda _: None)
    assert sorted(p.name for p in plain.iterdir()) == ["generator.onnx", "manifest.json"]
    assert read_manifest(plain).discriminator_file == "" and "discriminator" not in read_manifest(plain).graphs()
    state = load_checkpoint(tiny_faces_checkpoint)
    del state["discriminator"]
    save_checkpoint(tmp_path / "generator_only.pt", state)
    lines: list[str] = []
    out = export_faces(tmp_path / "generator_only.pt", tmp_path / "g", batch_sizes=(2,), threads=1,
                       log=lines.append)
    assert not (out / DISCRIMINATOR_FILE).exists() and any("holds no discriminator" in line for line in lines)


def test_manifest_records_training_and_licence(tiny_faces_model, tiny_faces_checkpoint):
    _, cfg, _ = load_generator(tiny_faces_checkpoint)
    manifest = read_manifest(tiny_faces_model, expected_kind="faces-dcgan")
    assert isinstance(manifest, FacesManifest)
    assert (manifest.nz, manifest.image_size, manifest.channels, manifest.precision) == (cfg.nz, 64, 3, "fp32")
    assert manifest.training["ngf"] == cfg.ngf == 8
    assert manifest.training["steps_completed"] == 2
    assert "out" not in manifest.training                            # local-machine details stay out
    assert manifest.data_licence == CELEBA_LICENCE and "non-commercial" in manifest.data_licence
    raw = json.loads((tiny_faces_model / "manifest.json").read_text())
    assert raw["graphs"]["generator"]["outputs"][0]["name"] == "images"


def test_export_command_line_and_int8(tiny_faces_checkpoint, tmp_path, capsys):
    from export.faces import main

    main(["--checkpoint", str(tiny_faces_checkpoint), "--out", str(tmp_path / "faces"), "--int8", "--threads", "1"])
    printed = capsys.readouterr().out
    assert "parity vs PyTorch" in printed and "of the half each keeps is the same" in printed
    assert read_manifest(tmp_path / "faces").precision == "fp32"
    int8 = read_manifest(tmp_path / "faces_int8")
    assert int8.precision == "int8" and int8.nz == read_manifest(tmp_path / "faces").nz
    assert int8.discriminator_file == DISCRIMINATOR_FILE


@pytest.mark.parametrize("int8_out", ["faces", "faces/int8", "."])
def test_an_int8_directory_that_overlaps_the_model_directory_is_refused(tiny_faces_checkpoint, tmp_path, int8_out):
    from export.faces import export_faces
    from export.model_dir import ExportError
    with pytest.raises(ExportError, match="must lie apart"):
        export_faces(tiny_faces_checkpoint, tmp_path / "faces", int8=True, int8_out_dir=tmp_path / int8_out,
                     force=True, log=lambda _: None)
    assert not (tmp_path / "faces").exists()


@pytest.mark.parametrize("agreement, quantized", [(0.0, True), (1.01, False)])
def test_int8_discriminator_is_quantized_unless_it_keeps_other_faces(tiny_faces_checkpoint, tmp_path, monkeypatch,
                                                                     agreement, quantized):
    import export.faces as export_faces_module
    monkeypatch.setattr(export_faces_module, "DISCRIMINATOR_INT8_AGREEMENT", agreement)
    lines: list[str] = []
    export_faces(tiny_faces_checkpoint, tmp_path / "faces", int8=True, batch_sizes=(2,), threads=1, log=lines.append)
    graph = onnx.load(str(tmp_path / "faces_int8" / DISCRIMINATOR_FILE))
    assert any(node.op_type == "QuantizeLinear" for node in graph.graph.node) == quantized
    assert any("ships the fp32 discriminator.onnx instead" in line for line in lines) == (not quantized)
    generator = FaceGenerator.load(tmp_path / "faces_int8", provider="cpu", threads=1)
    assert generator.generate(3, seed=1, keep=0.5).shape == (3, 64, 64, 3)
    assert not list(tmp_path.rglob("*.onnx.data"))
