"""Writing a model directory safely: into a fresh temporary sibling, checked there, then renamed into place.

A directory that loads is therefore always a finished, checked export: killed mid-check, the target is untouched
(a stale `.<name>.tmp-*` sibling may remain); a failed check raises ExportError and removes the temporary folder.
An existing non-empty target is refused unless `force`, and then replaced whole, never mixed with new files.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path, PureWindowsPath
from typing import Any, Iterator


class ExportError(RuntimeError):
    """An export or its checks failed; the message says which and by how much."""


def check_target(out_dir: str | Path, force: bool) -> Path:
    """Refuse a target that is a file, or a non-empty directory without `force` (before any work starts)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty; pass --force to replace it (its files are removed first)")
    return out


@contextlib.contextmanager
def staged_model_dir(out_dir: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory beside `out_dir`; when the block ends without an exception it becomes
    `out_dir` (replacing an existing one only with `force`); otherwise it is removed."""
    out = check_target(out_dir, force).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)                                  # mkdtemp's 0700 would make the model private
    try:
        yield tmp
        check_target(out, force)                      # still true after the (long) export?
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, out: Path) -> None:
    """`tmp` becomes `out` in two renames: the old directory is moved aside first and removed only once the new one
    is in place, so an interrupt leaves the old model or the new one at `out`, never part of either (at worst a
    `.<name>.old-*` sibling holding the old one remains)."""
    if not out.exists():
        tmp.rename(out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(aside / out.name)
    try:
        tmp.rename(out)
    except BaseException:
        (aside / out.name).rename(out)                # put the old one back
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def staged_rewrite(model_dir: str | Path) -> Iterator[Path]:
    """staged_model_dir over `model_dir` itself, holding a copy of its files to rewrite: the directory changes all at
    once when the block ends without an exception, and not at all otherwise."""
    model_dir = Path(model_dir)
    with staged_model_dir(model_dir, force=True) as tmp:
        for item in model_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        yield tmp


@contextlib.contextmanager
def command_errors(what: str = "export failed") -> Iterator[None]:
    """For export commands: the failures they expect (a failed check, a missing or broken model directory or
    checkpoint, a bad value, a file that cannot be read or written) end the command with one line, not a
    traceback. ManifestError and CheckpointError are ValueErrors."""
    try:
        yield
    except (ExportError, ValueError, OSError) as e:
        raise SystemExit(f"{what}: {' '.join(str(e).split()) or type(e).__name__}") from None


def replace_text(path: Path, text: str) -> None:
    """Write a file of a model directory in place of the old one all at once (a temporary file, then a rename):
    a crash mid-write leaves the old file, never a truncated one the manifest still names."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def require(condition: bool, message: str) -> None:
    """An export check that `python -O` keeps (unlike assert)."""
    if not condition:
        raise ExportError(message)


def portable_paths(value: Any, root: str | Path | None = None) -> Any:
    """A manifest's training record without the exporting machine's paths: every absolute path string (in nested
    dicts and lists too) becomes relative to `root` (default: the working directory) when it lies under it, else
    just its file or folder name. Relative paths, and strings that are not paths, are kept as they are."""
    if isinstance(value, dict):
        return {k: portable_paths(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [portable_paths(v, root) for v in value]
    if not isinstance(value, str):
        return value
    if PureWindowsPath(value).drive and not value.startswith("/"):      # C:\runs\poems: another system's path
        return PureWindowsPath(value).name
    if not value.startswith(("/", "~")):
        return value
    path = Path(value).expanduser().resolve()
    try:
        return str(path.relative_to(Path(root or Path.cwd()).resolve()))
    except ValueError:
        return path.name
