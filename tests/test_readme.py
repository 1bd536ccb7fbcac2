"""README.md's commands and Python, run as written: README cannot drift from what genrt does."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def commands() -> list[list[str]]:
    return [shlex.split(line, comments=True) for block in blocks("bash") for line in block.splitlines()
            if shlex.split(line, comments=True)]


GENRT_RUNS = [c for c in commands() if c[0] == "genrt" and c[1] != "serve"]


def test_readme_has_commands_of_every_kind():
    kinds = {c[0] for c in commands()}
    assert {"genrt", "bash", ".ci/run", "pip", "python3", "."} <= kinds
    assert len(GENRT_RUNS) >= 12 and len(blocks("python")) == 2


@pytest.mark.parametrize("argv", GENRT_RUNS, ids=lambda a: " ".join(a[1:4]))
def test_every_genrt_command_runs(argv, tmp_path, monkeypatch):
    from genrt.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENRT_MODELS", str(tmp_path / "models"))
    args = [str(REPO) if a == "." and argv[1:3] == ["models", "install"] else a for a in argv[1:]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, f"{' '.join(argv)}:\n{result.output}"


def test_serve_commands_parse():
    """genrt serve runs for real in tests/test_serve_command.py; here every README form of it must parse."""
    pytest.importorskip("fastapi")
    from genrt.cli import main
    serve = main.get_command(None, "serve")
    forms = [c for c in commands() if c[:2] == ["genrt", "serve"]]
    assert forms
    for argv in forms:
        with serve.make_context("serve", argv[2:]) as ctx:                 # raises on an unknown or bad option
            assert ctx.params


def test_setup_commands_are_what_ci_runs():
    """The quick start and the test command are the scripts CI runs; every extra named exists."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/quickstart.sh" in ci and "python -m pytest -q" in ci and '".[train,dev]"' in ci
    for script in (REPO / "scripts" / "quickstart.sh", REPO / ".ci" / "run"):
        assert os.access(script, os.X_OK)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    for argv in (c for c in commands() if c[0] == "pip"):
        for arg in argv:
            match = re.fullmatch(r"\.\[([a-z,]+)\]", arg)
            if match:
                assert set(match.group(1).split(",")) <= set(extras), arg


def test_the_python_blocks_run_as_scripts(tmp_path):
    """Each block saved as a file and run, as a reader would (engine processes import the script again)."""
    outputs = []
    for i, code in enumerate(blocks("python")):
        script = tmp_path / f"block{i}.py"
        script.write_text(code, encoding="utf-8")
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "GENRT_MODELS": str(tmp_path / "models")})
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    assert len(outputs) == 2 and outputs[0].count("，") >= 4 and outputs[1].count("，") >= 4
