"""`python -m genrt ...` and the `genrt` command."""
import os
import sys

INTERRUPTED_EXITS = (130, 143)   # Ctrl-C, SIGTERM (genrt.cli_boundary)


def _interrupted(error: BaseException | None) -> bool:
    """A KeyboardInterrupt, or an error a library raised from one (onnxruntime turns it into an ImportError)."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False


def _exit_now(code: int) -> None:
    """Exit at once with `code`, the cleanup already done. A Ctrl-C that landed inside code a C extension ran
    through PyRun_* (onnxruntime's import does) leaves the interpreter marked as killed by SIGINT even once the
    error was handled, so a normal exit would end as death by SIGINT instead of `code`."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run() -> None:
    """The command line, with a Ctrl-C during start-up (while numpy and onnxruntime load) ending in one line."""
    try:
        from genrt.cli import main
    except BaseException as e:
        if not _interrupted(e):
            raise
        print("genrt: interrupted", file=sys.stderr)
        _exit_now(130)
    try:
        main(prog_name="genrt")
    except SystemExit as e:
        if e.code in INTERRUPTED_EXITS:
            _exit_now(e.code)
        raise


if __name__ == "__main__":
    run()
