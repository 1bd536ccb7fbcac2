"""Pieces both trainers share: config <-> argparse, seeding, DDP setup, atomic checkpoints."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

C = TypeVar("C")


def parse_config(config_cls: type[C], argv: list[str] | None = None, description: str = "") -> C:
    """Build an argparse parser from a config dataclass: every field becomes `--field-name`."""
    parser = argparse.ArgumentParser(description=description)
    for f in fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default)
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(flag, dest=f.name, type=kind, default=default)
    return config_cls(**vars(parser.parse_args(argv)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Start a process group when launched by torchrun (WORLD_SIZE set); a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "gloo":
        use_loopback_when_single_node(world_size)
    dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def use_loopback_when_single_node(world_size: int) -> None:
    """Gloo binds to the address the hostname resolves to, which some sandboxes and containers cannot
    connect to. When every rank is on this machine, loopback always works; GLOO_SOCKET_IFNAME still wins."""
    single_node = os.environ.get("LOCAL_WORLD_SIZE") == str(world_size)
    if single_node and sys.platform.startswith("linux") and "GLOO_SOCKET_IFNAME" not in os.environ:
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"


@contextlib.contextmanager
def main_process_first(info: DistInfo):
    """Rank 0 runs the block (e.g. writes a shared cache) before the other ranks run it (and read the cache)."""
    distributed = info.world_size > 1 and dist.is_initialized()
    if distributed and not info.is_main:
        dist.barrier()
    yield
    if distributed and info.is_main:
        dist.barrier()


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def pick_device(requested: str, info: DistInfo) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", info.local_rank)
    return torch.device(requested)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file in the same directory, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(Path(path), map_location=map_location, weights_only=False)


def config_from_checkpoint(config_cls: type[C], state: dict[str, Any]) -> C:
    known = {f.name for f in fields(config_cls)}
    return config_cls(**{k: v for k, v in state["config"].items() if k in known})


def config_dict(config: Any) -> dict[str, Any]:
    return asdict(config)
