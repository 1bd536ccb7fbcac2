"""trainers.common: config <-> argparse, atomic checkpoints, single-node gloo defaults."""
from __future__ import annotations

import dataclasses
import os
import sys

import pytest

pytest.importorskip("torch")
from trainers.common import (  # noqa: E402
    DistInfo, load_checkpoint, main_process_first, parse_config, save_checkpoint, use_loopback_when_single_node,
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
    save_checkpoint(path, {"step": 3, "config": {"steps": 10}})
    assert load_checkpoint(path) == {"step": 3, "config": {"steps": 10}}
    assert not list(path.parent.glob("*.tmp"))


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
