"""Property: any argument vector for `genrt faces` ends in success or in one 'Error:' line with exit 2, never a
traceback, and writes nothing outside its -o folder."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from genrt.cli import main

VALUES = st.sampled_from(["0", "1", "2", "-1", "3.5", "nan", "inf", "", " ", "1e9", "99999999999999999999", "x",
                          "٣", "０", "\n", "auto", "cpu", "int8", "0-3", "1,1"])
OPTIONS = st.sampled_from(["--n", "--seed", "--seeds", "--batch-size", "--truncation", "--interpolate", "--nrow",
                           "--threads", "--provider", "--precision", "--fps"])
FLAGS = st.sampled_from(["--grid", "--no-grid", "--overwrite", "--bogus", "-o", "--model"])
ARGV = st.lists(st.one_of(st.tuples(OPTIONS, VALUES).map(list), FLAGS.map(lambda f: [f])), max_size=5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(argv=ARGV)
def test_any_faces_argv(tiny_faces_model, argv):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        args = ["faces", "--model", str(tiny_faces_model), "-o", str(out), "--n", "2"]
        args += [word for option in argv for word in option]
        here = os.getcwd()
        os.chdir(folder)                          # a relative -o from the vector writes here, not into the checkout
        try:
            result = CliRunner().invoke(main, args)
        finally:
            os.chdir(here)
        assert "Traceback" not in result.output and result.exit_code in (0, 2), (args, result.output)
        if result.exit_code == 2:
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error:"), (args, result.stderr)
        assert {p.name for p in Path(folder).iterdir()} <= {"out"} | {a for a in args if not a.startswith("/")}
