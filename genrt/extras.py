"""The command that installs one of genrt's optional extras, worded so it works wherever genrt came from.

`pip install "genrt[forms]"` needs genrt on a package index; from a wheel or a checkout the packages an extra adds
are installed by name (`pip install "pypinyin>=0.50"`), and a checkout can also name the extra itself
(`pip install ".[forms]"`). The extras' packages are read from the installed metadata, so pyproject.toml stays
their one home.
"""
from __future__ import annotations

import re
from importlib import metadata

# Extras whose package replaces one genrt already depends on: both provide the same module, so the old one goes.
REPLACES = {"gpu": "onnxruntime"}


def extra_requirements(extra: str) -> list[str]:
    """Requirement strings an extra adds, e.g. ["pypinyin>=0.50"] for "forms"; [] when genrt is not installed."""
    try:
        requires = metadata.requires("genrt") or []
    except metadata.PackageNotFoundError:
        return []
    marker = re.compile(r"""extra\s*==\s*["']""" + re.escape(extra) + r"""["']""")
    return [r.split(";")[0].strip() for r in requires if ";" in r and marker.search(r.split(";", 1)[1])]


def install_hint(extra: str) -> str:
    """One line a user can paste: the extra's packages by name, and the checkout form of the same install."""
    packages = extra_requirements(extra)
    checkout = f'pip install ".[{extra}]" from a genrt checkout'
    if not packages:
        return checkout
    command = "pip install " + " ".join(f'"{p}"' for p in packages)
    if extra in REPLACES:
        command = f"pip uninstall -y {REPLACES[extra]} && {command}"
    return f"{command} (or {checkout})"
