"""Field checks of a manifest's raw JSON that need nothing from the manifest classes (genrt.contract uses them):
every file name it holds stays inside the model directory, and every field has its JSON type."""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

OPTIONAL_FILES = ("t2s_file", "doubling_file", "discriminator_file")   # "" = the directory has none


def file_fields(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every file name a manifest holds: the `*_file` fields and the informative graphs.<name>.file entries."""
    named = [(k, v) for k, v in data.items() if k.endswith("_file") and not (k in OPTIONAL_FILES and v == "")]
    graphs = data.get("graphs") if isinstance(data.get("graphs"), dict) else {}
    return named + [(f"graphs.{k}.file", g["file"]) for k, g in graphs.items() if isinstance(g, dict) and "file" in g]


def file_name_problem(model_dir: Path, name: Any) -> str | None:
    """Why `name` is not a file inside `model_dir` (relative, no '..', not leaving it through a symlink), or None."""
    if not isinstance(name, str) or not name.strip():
        return f"must be a file name, got {name!r:.60}"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        return f"is an absolute path ({name!r:.60}); file names are relative to the model directory"
    if ".." in re.split(r"[\\/]", name):
        return f"contains '..' ({name!r:.60}); files must lie inside the model directory"
    try:
        inside = (model_dir / name).resolve().is_relative_to(model_dir.resolve())
    except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, a NUL byte
        return f"is not a usable file name ({name!r:.60}: {e})"
    return None if inside else f"resolves outside the model directory ({name!r:.60}, through a symlink)"


_FIELD_TYPES = {"int": int, "str": str, "dict[str, Any]": dict, "tuple[str, ...]": list, "bool": bool}


def field_type_problems(cls: type, values: dict[str, Any]) -> list[str]:
    """JSON types of the manifest fields (bool is not an int here)."""
    problems = []
    for name, value in values.items():
        expected = _FIELD_TYPES.get(str(cls.__dataclass_fields__[name].type))
        if expected is None:
            continue
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not ok:
            problems.append(f"field {name!r} must be {'a list of strings' if expected is list else expected.__name__}"
                            f", got {value!r:.40}")
    return problems
