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
    CELEBA_LICENCE, FLOAT_TOLERANCE, ExportError, FacesGraph, check_parity, export_graph,
    random_latents, reference_output,
)
from genrt.contract import FacesManifest, read_manifest
from genrt.graph_io import check_graph_io, session_io
from trainers.faces import load_generator

torch.set_num_threads(1)


def cpu_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_model_dir_holds_one_self_contained_graph(tiny_faces_model):
    assert sorted(p.name for p in tiny_faces_model.iterdir()) == ["generator.onnx", "manifest.json"]
    model = onnx.load(str(tiny_faces_model / "generator.onnx"), load_external_data=False)
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
    assert "parity vs PyTorch" in capsys.readouterr().out
    assert read_manifest(tmp_path / "faces").precision == "fp32"
    int8 = read_manifest(tmp_path / "faces_int8")
    assert int8.precision == "int8" and int8.nz == read_manifest(tmp_path / "faces").nz
    assert not list(tmp_path.rglob("*.onnx.data"))
