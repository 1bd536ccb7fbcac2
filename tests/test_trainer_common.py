"""trainers.common: config <-> argparse, atomic and safe checkpoints, single-node gloo defaults."""
from __future__ import annotations

import dataclasses
import os
import pickle
import sys

import pytest

torch = pytest.importorskip("torch")
from trainers.common import (  # noqa: E402
    CheckpointError, DistInfo, load_checkpoint, main_process_first, parse_config, save_checkpoint,
    use_loopback_when_single_node,
)


@dataclasses.dataclass
class Toy:
    steps: int = 10
    lr: float = 1e-3
    name: str = "run"
    amp: bool = False


def test_every_config_field_becomes_a_flag():
    cfg = parse_config(Toy, ["--steps", "5", "--lr", "0.5", "--name", "x", "--amp"])
    assert cfg == Toy(steps=5, lr=0.5, name="x", amp=True)
    assert parse_config(Toy, []) == Toy()


def test_checkpoint_write_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "deep" / "checkpoint.pt"
    state = {"kind": "faces-dcgan", "step": 3, "config": {"steps": 10, "lr": 0.5, "name": "x"}, "history": [{}],
             "weights": {"w": torch.ones(2, 3)}}
    save_checkpoint(path, state)
    loaded = load_checkpoint(path, expected_kind="faces-dcgan")
    assert loaded["config"] == state["config"] and torch.equal(loaded["weights"]["w"], state["weights"]["w"])
    assert not list(path.parent.glob("*.tmp"))


class WritesAMarker:
    """Unpickling this calls open(marker, "w"): what a crafted checkpoint would do with os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer, problem", [
    ("torch.save", "refused: unsafe pickle"),
    (2, "refused: unsafe pickle"),                                # a bare pickle, the legacy torch format
    (5, "is truncated or not a torch checkpoint"),                # opcodes the safe unpickler does not know
])
def test_a_pickle_that_runs_code_is_refused(tmp_path, writer, problem):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    payload = {"kind": "faces-dcgan", "step": WritesAMarker(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=writer))
    with pytest.raises(CheckpointError, match=rf"evil\.pt: {problem}") as err:
        load_checkpoint(path)
    assert not marker.exists()
    assert "\n" not in str(err.value)
    pickle.loads(pickle.dumps(WritesAMarker(tmp_path / "control")))  # the payload is live: plain pickle runs it
    assert (tmp_path / "control").exists()


def write_truncated(path):
    save_checkpoint(path, {"kind": "faces-dcgan", "w": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:1500])


@pytest.mark.parametrize("make, problem", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (write_truncated, "is truncated or not a torch checkpoint"),
    (lambda p: p.write_text("not a checkpoint"), "is truncated or not a torch checkpoint"),
    (lambda p: torch.save(torch.zeros(2), p), "not a genrt checkpoint .it holds a Tensor"),
    (lambda p: torch.save({"step": 1}, p), "not a genrt checkpoint .it holds a dict without a 'kind' entry"),
    (lambda p: save_checkpoint(p, {"kind": "faces-dcgan"}),
     "is a 'faces-dcgan' checkpoint, expected 'poems-transformer' or 'poems-transformer-weights'"),
])
def test_every_unusable_checkpoint_is_one_line_naming_path_and_problem(tmp_path, make, problem):
    path = tmp_path / "checkpoint.pt"
    make(path)
    with pytest.raises(CheckpointError, match=problem) as err:
        load_checkpoint(path, expected_kind=("poems-transformer", "poems-transformer-weights"))
    assert str(err.value).startswith(f"checkpoint {path}: ") and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError) and err.value.path == path


def test_a_failed_save_leaves_no_tmp_file_and_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"kind": "faces-dcgan", "step": 1})

    def disk_full(obj, f):
        open(f, "wb").write(b"half a checkpoint")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: not written \(OSError: \[Errno 28\] No space left"
                       ) as err:
        save_checkpoint(path, {"kind": "faces-dcgan", "step": 2})
    assert "\n" not in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="loopback interface name is Linux's")
def test_single_node_gloo_binds_to_loopback_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    use_loopback_when_single_node(world_size=2)
    assert os.environ["GLOO_SOCKET_IFNAME"] == "lo"

    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth7")
    use_loopback_when_single_node(world_size=2)
    assert os.environ["GLOO_SOCKET_IFNAME"] == "eth7"


def test_multi_node_runs_keep_gloo_default(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    use_loopback_when_single_node(world_size=4)
    assert "GLOO_SOCKET_IFNAME" not in os.environ


def test_main_process_first_is_a_plain_block_without_a_process_group():
    ran = []
    with main_process_first(DistInfo()):
        ran.append(1)
    assert ran == [1]


def test_a_checkpoint_under_a_file_is_one_line_error(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(CheckpointError, match=r"taken/checkpoint\.pt: not written \((FileExists|NotADirectory)Error"):
        save_checkpoint(tmp_path / "taken" / "checkpoint.pt", {"kind": "faces-dcgan"})
