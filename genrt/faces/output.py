"""The output folder of one `genrt faces` run: what genrt may write there, remove there, and when.

A run owns its folder from start to end: it holds an exclusive lock on the folder (a second run into the same folder
is refused at once), writes every new image into a hidden staging folder inside it, and only when all of them are
written moves them into place and removes the earlier run's images that --overwrite replaces. A run that fails or
is interrupted removes its staging folder and leaves the earlier run untouched; files genrt did not write (names
that only look like its own, see OWN_FILE) are never removed.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from genrt.faces.images import own_files

try:
    import fcntl
except ImportError:        # no flock (Windows): runs into one folder are not serialised there
    fcntl = None

STAGING_PREFIX = ".genrt-stage-"
# What a run killed outright (SIGKILL, power loss) can leave: its staging folder, or a PNG's temporary file
DEBRIS = re.compile(r"\.genrt-stage-[A-Za-z0-9_]+|\.genrt-[A-Za-z0-9_]+\.(?:png|gif)\.tmp")


class OutputError(OSError):
    """The output folder cannot be used (busy, not a folder, an earlier run without --overwrite)."""


def check_out_path(out: object) -> Path:
    """-o/--out as a Path: a non-empty name (an empty one would silently mean the current folder)."""
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise OutputError(f"the output folder must be named, got {str(out)!r:.60}")
    return Path(out)


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM are held back in the block and delivered when it ends (on a platform with
    pthread_sigmask, in the main thread; elsewhere a no-op)."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class RunFolder:
    """`with RunFolder(out, overwrite) as run:` write into `run.stage`, then `run.commit()`. Leaving the block
    without commit (an error, Ctrl-C, SIGTERM turned into an exception) removes what the run wrote."""

    def __init__(self, out: str | Path, overwrite: bool = False):
        self.out = check_out_path(out)
        self.overwrite = overwrite
        self.stage: Path | None = None
        self._lock_fd: int | None = None
        self._made = self._locked = False

    def __enter__(self) -> "RunFolder":
        if self.out.exists() and not self.out.is_dir():
            raise OutputError(f"output path {self.out} exists and is not a directory")
        for _ in range(3):                       # another run may remove a folder it made between our mkdir and lock
            self._made = not self.out.exists()   # made by this run: removed again if the run leaves nothing in it
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"cannot create output directory {self.out}: {e.strerror or e}") from None
            self._lock()
            if self._holds_the_folder():
                break
            self._unlock()
        else:
            raise OutputError(f"{self.out} was removed by another run while this one started; try again")
        try:
            self._remove_debris()
            earlier = own_files(self.out)
            if earlier and not self.overwrite:
                raise OutputError(f"{self.out} already holds {len(earlier)} files of an earlier run "
                                  f"({earlier[0].name}, ...); use --overwrite to replace them or choose another --out")
            self.stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out))
        except BaseException:
            self._remove_if_made_and_empty()
            self._unlock()
            raise
        return self

    def commit(self) -> list[Path]:
        """Move the staged files into the folder (each rename atomic, replacing a link, never following it), then
        remove the earlier run's files that no new file replaced. Returns the new files. Every name is checked
        before the first move, and Ctrl-C or SIGTERM waits until the last one: the folder holds one run or the
        other, never a mix."""
        staged = sorted(self.stage.iterdir())
        blocked = [self.out / f.name for f in staged
                   if (self.out / f.name).exists() and (self.out / f.name).is_dir()
                   and not (self.out / f.name).is_symlink()]
        if blocked:
            raise OutputError(f"{blocked[0]} is a folder where this run writes an image; move it away or choose "
                              f"another --out")
        earlier = set(own_files(self.out))
        placed = []
        with signals_held():
            for file in staged:
                target = self.out / file.name
                os.replace(file, target)
                placed.append(target)
            for path in earlier - set(placed):
                path.unlink(missing_ok=True)
        self.stage.rmdir()
        self.stage = None
        return placed

    def __exit__(self, *exc) -> None:
        try:
            if self.stage is not None:
                try:
                    shutil.rmtree(self.stage, ignore_errors=True)
                except KeyboardInterrupt:                 # a signal landed mid-cleanup: finish it, then report it
                    shutil.rmtree(self.stage, ignore_errors=True)
                    raise
                finally:
                    self.stage = None
        finally:
            self._remove_if_made_and_empty()
            self._unlock()

    def _remove_if_made_and_empty(self) -> None:
        """A run that fails or is interrupted before it commits leaves no folder it made (a committed one holds
        files, so it stays). Only while it holds the folder's lock: a run that lost the race for a folder two runs
        made at once must not remove it from under the one that won."""
        if self._made and self._locked:
            try:
                self.out.rmdir()                      # only an empty folder: anything else in it stays
            except OSError:
                pass

    # ------------------------------------------------------------ the lock: held by an open file, so a run that
    # dies for any reason releases it, and no lock file is left behind

    def _lock(self) -> None:
        if fcntl is None:                             # no locks on this system: the run counts as holding it
            self._locked = True
            return
        self._lock_fd = os.open(self.out, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._unlock()
            raise OutputError(f"another genrt run is writing to {self.out}; wait for it or choose another "
                              f"--out") from None
        self._locked = True

    def _holds_the_folder(self) -> bool:
        """The locked descriptor is still the folder at `out` (not one removed after we opened it)."""
        if self._lock_fd is None:
            return True
        try:
            here, locked = os.stat(self.out), os.fstat(self._lock_fd)
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (locked.st_dev, locked.st_ino)

    def _unlock(self) -> None:
        self._locked = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove_debris(self) -> None:
        """Remove what a killed run left (only genrt's own temporary names; safe: this run holds the lock)."""
        for path in self.out.iterdir():
            if DEBRIS.fullmatch(path.name):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
