"""The command line's one error boundary: whatever goes wrong ends in one line on stderr and an exit code, never a
traceback, and never in exit 0 with the output lost.

    exit 2    an 'Error: ...' line: bad input or files, a resource limit, a failing graph, an unwritable output
    exit 130  interrupted (Ctrl-C, SIGINT); 143: terminated (SIGTERM). Temporary files are removed on the way out.
    exit 1    stdout was closed by its reader (`genrt poem ... | head -1`): quietly, as click does for --help.

genrt.cli's group class calls `boundary()` around every command; the commands call `require_stdout()` before work
whose result goes to stdout, and `note()` for remarks on stderr.
"""
from __future__ import annotations

import errno
import io
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

import click

from genrt.contract import ManifestError
from genrt.runtime import GRAPH_RUN_ERRORS, GraphRunError, ProviderError

INTERRUPTED_EXIT = 130           # 128 + SIGINT, what a shell reports for Ctrl-C
TERMINATED_EXIT = 143            # 128 + SIGTERM
CLOSED_PIPE_EXIT = 1            # click's own exit when its output pipe closes


class UserError(click.ClickException):
    """A problem with the user's input or files: printed as one 'Error: ...' line, exit code 2."""
    exit_code = 2


class Interrupted(click.ClickException):
    """Ctrl-C or SIGTERM: one line, exit 130 (143 for SIGTERM), after the run removed what it had written."""

    def __init__(self, terminated: bool = False):
        super().__init__("terminated" if terminated else "interrupted")
        self.exit_code = TERMINATED_EXIT if terminated else INTERRUPTED_EXIT

    def show(self, file=None) -> None:
        note(f"genrt: {self.message}")


class StdoutClosed(click.ClickException):
    """Whoever read stdout closed it (`| head`): nothing to say, since nobody reads the rest; exit 1."""
    exit_code = CLOSED_PIPE_EXIT

    def __init__(self):
        super().__init__("standard output was closed")

    def show(self, file=None) -> None:
        pass


def closed_pipe(e: BaseException) -> bool:
    return isinstance(e, StdoutError) and e.errno == errno.EPIPE


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so every cleanup on the way runs."""


class StdoutError(OSError):
    """Writing the command's output to standard output failed (a full disk, a closed pipe)."""


class GuardedStdout(io.TextIOWrapper):
    """The process's stdout, telling its own write failures apart from those of the files a command writes."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as e:
            raise StdoutError(e.errno, e.strerror) from None

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            raise StdoutError(e.errno, e.strerror) from None


def guard_stdout() -> None:
    """Put GuardedStdout in place of the interpreter's own stdout (an embedding caller's stream is left alone)."""
    out = sys.stdout
    if type(out) is io.TextIOWrapper:
        sys.stdout = GuardedStdout(out.buffer, encoding=out.encoding, errors=out.errors,
                                   line_buffering=out.line_buffering, write_through=out.write_through)


def one_line(e: BaseException) -> str | None:
    """The one-line message for an exception the command line expects, or None for a bug (left to show)."""
    if isinstance(e, StdoutError):
        return f"cannot write to standard output: {e.strerror or e}"
    if isinstance(e, GRAPH_RUN_ERRORS):
        return f"a model graph failed while running: {str(e).strip().splitlines()[0] if str(e).strip() else e}"
    if isinstance(e, RecursionError):
        return "the input is nested too deeply to be read"
    if isinstance(e, MemoryError):
        return "not enough memory for this request: ask for fewer images, prompts, beams or a smaller batch"
    if isinstance(e, (ManifestError, ProviderError, GraphRunError, ValueError, OSError)):
        return " ".join(str(e).split()) or type(e).__name__
    return None


def click_error(e: BaseException) -> click.ClickException | None:
    """What the command line shows for an exception it expects (a closed pipe: nothing), or None for a bug."""
    if closed_pipe(e):
        return StdoutClosed()
    message = one_line(e)
    return None if message is None else UserError(message)


@contextmanager
def boundary() -> Iterator[None]:
    """Translate what a command raises into UserError or Interrupted (click shows them in one line)."""
    try:
        with signals_as_exceptions():
            yield
            flush_stdout()
    except click.ClickException:
        raise
    except KeyboardInterrupt as e:
        raise Interrupted(terminated=isinstance(e, Terminated)) from None
    except Exception as e:
        error = click_error(e)
        if error is None:
            raise
        raise error from None


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM raises Terminated while a command runs (in the main thread; a SIGTERM the caller ignores stays
    ignored), so that cleanup runs as it does for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def open_standard_fds() -> None:
    """Put /dev/null on a closed stdin, stdout or stderr, so no file genrt opens gets that number (and receives
    text meant for the terminal, from Python or from onnxruntime's native logging). sys.stdout stays None where
    it was, so require_stdout still knows."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


def require_stdout() -> None:
    """Refuse to start work whose result would be lost: standard output closed."""
    if sys.stdout is None:
        raise UserError("standard output is closed: there is nowhere to print the result")


def flush_stdout() -> None:
    """Push the command's output out now, inside the boundary: a full or closed pipe is reported, not lost."""
    if sys.stdout is not None:
        sys.stdout.flush()


def discard_stdout() -> None:
    """After stdout failed: send what is still buffered to /dev/null, so Python's exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def note(text: str) -> None:
    """A remark on stderr (a seed, a warning, an error line) that never fails the run: a closed or full stderr
    loses the remark, not the output."""
    try:
        click.echo(text, err=True)
    except (OSError, ValueError):
        pass


def stderr_usable() -> bool:
    """Whether a progress bar can draw: stderr open."""
    return sys.stderr is not None and not getattr(sys.stderr, "closed", False)
