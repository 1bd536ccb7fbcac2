"""export.model_dir: a model directory appears whole and checked, or not at all; non-empty targets need force."""
from pathlib import Path

import pytest

from export.model_dir import ExportError, check_target, require, staged_model_dir


def test_success_renames_the_staged_directory_into_place(tmp_path):
    out = tmp_path / "model"
    with staged_model_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out and not out.exists()
        (tmp / "manifest.json").write_text("{}")
    assert (out / "manifest.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)


def test_a_failed_check_leaves_nothing_behind(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(ExportError, match="parity"):
        with staged_model_dir(out) as tmp:
            (tmp / "decoder.onnx").write_bytes(b"half")
            require(False, "parity off by 1e-2")
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_target_needs_force_and_is_then_replaced_whole(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.onnx").write_text("old")
    with pytest.raises(ExportError, match="--force"):
        check_target(out, force=False)
    with pytest.raises(ExportError, match="--force"):
        with staged_model_dir(out):
            pass
    assert (out / "old.onnx").exists()
    with staged_model_dir(out, force=True) as tmp:
        (tmp / "new.onnx").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.onnx"]


def test_an_interrupt_while_replacing_leaves_the_old_model_or_the_new_one_whole(tmp_path, monkeypatch):
    """The old directory is moved aside before the new one goes in, and deleted only after: a Ctrl-C during the
    swap never leaves part of either at the target."""
    import export.model_dir as model_dir
    out = tmp_path / "model"
    out.mkdir()
    (out / "encoder.onnx").write_text("old")
    (out / "decoder.onnx").write_text("old")
    real_rename, renames = Path.rename, []

    def rename(self, target):
        renames.append(Path(target).name)
        if Path(target) == out and self.name.startswith(".model.tmp-"):
            raise KeyboardInterrupt                       # between moving the old one aside and the new one in
        return real_rename(self, target)
    monkeypatch.setattr(model_dir.Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        with staged_model_dir(out, force=True) as tmp:
            (tmp / "encoder.onnx").write_text("new")
    assert sorted((p.name, p.read_text()) for p in out.iterdir()) == [("decoder.onnx", "old"), ("encoder.onnx", "old")]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]          # nothing else left behind
    monkeypatch.undo()
    with staged_model_dir(out, force=True) as tmp:
        (tmp / "encoder.onnx").write_text("new")
    assert sorted((p.name, p.read_text()) for p in out.iterdir()) == [("encoder.onnx", "new")]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "model").write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        check_target(tmp_path / "model", force=True)


def test_portable_paths_keep_no_machine_path(tmp_path):
    from export.model_dir import portable_paths

    record = {"cache": "/root/runs/cache/poems", "out": str(tmp_path / "runs" / "poems"), "data": "../data/celeba",
              "nested": [{"init_from": "/home/someone/checkpoint.pt"}, "C:\\runs\\w.pt"], "steps": 3, "note": "a/b"}
    assert portable_paths(record, root=tmp_path) == {
        "cache": "poems", "out": "runs/poems", "data": "../data/celeba",
        "nested": [{"init_from": "checkpoint.pt"}, "w.pt"], "steps": 3, "note": "a/b"}


def test_exported_manifests_record_no_absolute_path(tiny_poems_dir, tiny_faces_model):
    import json

    for model in (tiny_poems_dir, tiny_faces_model):
        training = json.dumps(json.loads((model / "manifest.json").read_text(encoding="utf-8"))["training"])
        assert '"/' not in training, training
