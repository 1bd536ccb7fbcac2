"""`python -m genrt ...` and the `genrt` command."""
import signal
import sys


def _interrupted(error: BaseException | None) -> bool:
    """A KeyboardInterrupt, or an error a library raised from one (onnxruntime turns it into an ImportError)."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False


def run() -> None:
    """The command line, with a Ctrl-C during start-up (while numpy and onnxruntime load) ending in one line."""
    try:
        from genrt.cli import main
    except BaseException as e:
        if not _interrupted(e):
            raise
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a Ctrl-C still pending must not kill the exit itself
        print("genrt: interrupted", file=sys.stderr)
        sys.exit(130)
    main(prog_name="genrt")


if __name__ == "__main__":
    run()
