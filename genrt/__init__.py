"""genrt: on-device generation with onnxruntime (no PyTorch at run time)."""
from genrt import privacy  # noqa: F401  first: onnxruntime must not be imported before telemetry is off

__version__ = "0.1.0"

__all__ = ["FaceGenerator", "GenerationOptions", "Poem", "PoemGenerator", "__version__"]

# The public names are imported when first used, so `import genrt` (and the command line's start-up, where a
# Ctrl-C must end in one line) does not load numpy and onnxruntime before it needs them.
_HOMES = {"FaceGenerator": "genrt.faces", "Poem": "genrt.poems.generator", "PoemGenerator": "genrt.poems.generator",
          "GenerationOptions": "genrt.poems.options"}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'genrt' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
