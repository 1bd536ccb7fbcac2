"""Pieces both trainers share: config <-> argparse, seeding, DDP setup, atomic and safe checkpoints."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pickle
import random
import re
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Collection, Sequence, TypeVar

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
    """Every rank waits for the others (rank 0 may still be writing its checkpoint) before the group goes: a rank
    that destroyed its gloo group while a peer still held connections to it was seen to abort (SIGABRT)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def pick_device(requested: str, info: DistInfo) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", info.local_rank)
    try:
        return torch.device(requested)
    except RuntimeError as e:
        raise ValueError(f"--device {requested!r}: {str(e).splitlines()[0]}") from None


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


class CheckpointError(ValueError):
    """A checkpoint cannot be written or used: missing, empty, truncated, not a checkpoint, an unsafe pickle, or of
    another kind. The message is one line naming the path and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"checkpoint {path}: {problem}")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file in the same directory, then rename: a crash never leaves half a checkpoint, and a
    failed write (disk full, unpicklable value) leaves no .tmp file behind and the previous checkpoint untouched."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # nothing to remove when the folder itself could not be made
            tmp.unlink(missing_ok=True)
        if not isinstance(e, Exception):  # KeyboardInterrupt and friends: cleaned up, passed on as they are
            raise
        raise CheckpointError(path, f"not written ({_one_line(e)})") from e


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    expected_kind: str | Sequence[str] | None = None) -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint: tensors and plain values only (weights_only=True, so a crafted
    pickle cannot run code). `expected_kind` (one "kind" or several) rejects another model's checkpoint. Every
    failure is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "is a directory, not a file" if path.is_dir() else "no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "is empty")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        raise CheckpointError(path, f"cannot be read ({_one_line(e)})") from None
    except pickle.UnpicklingError as e:
        raise CheckpointError(path, _unpickling_problem(e)) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... for truncated or foreign files
        raise CheckpointError(path, f"is truncated or not a torch checkpoint ({_one_line(e)})") from None
    check_checkpoint_kind(path, state, expected_kind)
    return state


def check_checkpoint_kind(path: str | Path, state: Any, expected_kind: str | Sequence[str] | None) -> None:
    """A checkpoint is a dict with a string "kind"; with `expected_kind`, one of those."""
    if not isinstance(state, dict) or not isinstance(state.get("kind"), str):
        what = "a dict without a 'kind' entry" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise CheckpointError(path, f"is not a genrt checkpoint (it holds {what})")
    wanted = (expected_kind,) if isinstance(expected_kind, str) else tuple(expected_kind or ())
    if wanted and state["kind"] not in wanted:
        raise CheckpointError(path, f"is a {state['kind']!r} checkpoint, expected {' or '.join(map(repr, wanted))}")


def _unpickling_problem(e: pickle.UnpicklingError) -> str:
    """torch's weights-only unpickler explains itself in a paragraph: keep its one telling sentence."""
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(\.\s|\s*Check the documentation|$)", str(e), re.S)
    detail = " ".join(found.group(1).split()) if found else ""
    if "global" in detail.lower():  # the pickle names a function or class to call: what an exploit does
        return f"refused: unsafe pickle, a checkpoint holds only tensors and plain values ({detail})"
    return f"is truncated or not a torch checkpoint ({detail or _one_line(e)})"


def _one_line(e: BaseException, limit: int = 160) -> str:
    """`Type: first sentence of the message`, on one line (torch's messages run to paragraphs)."""
    text = f"{type(e).__name__}: {' '.join(str(e).split()).split('. ')[0]}".rstrip(": ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def one_line_errors():
    """For command-line entry points: what a run expects to go wrong (a bad or missing checkpoint, a bad setting,
    a data folder that is not there) becomes one 'error: ...' line and exit status 2, not a traceback.
    CheckpointError is a ValueError."""
    try:
        yield
    except (ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        raise SystemExit(2) from None


def changed_settings(saved: dict, cfg: Any, place_settings: Collection[str]) -> list[str]:
    """One line per training setting of the resumed checkpoint that this invocation changes (e.g. --dropout, or
    --steps and --lr-decay-start to move a decay): a resume takes its settings from the command line, so one left
    out falls back to its default, and saying so keeps that from passing unnoticed. `place_settings`: where and
    how the run executes (paths, threads, device), which a resume may change freely."""
    now = config_dict(cfg)
    return [f"resuming with {name.replace('_', '-')} {saved[name]!r} -> {now[name]!r}"
            for name in now if name in saved and name not in place_settings and saved[name] != now[name]]


def config_from_checkpoint(config_cls: type[C], state: dict[str, Any]) -> C:
    known = {f.name for f in fields(config_cls)}
    return config_cls(**{k: v for k, v in state["config"].items() if k in known})


def config_dict(config: Any) -> dict[str, Any]:
    return asdict(config)
