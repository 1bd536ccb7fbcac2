"""`genrt models`: list where each variant is found, install variants from a checkout."""
import shutil

from click.testing import CliRunner

from genrt.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_install_then_list(tmp_path, monkeypatch, tiny_faces_model):
    monkeypatch.setenv("GENRT_MODELS", str(tmp_path / "user"))
    shutil.copytree(tiny_faces_model, tmp_path / "checkout" / "genrt" / "models" / "faces")
    result = run("models", "install", "fp32", "--from", str(tmp_path / "checkout"))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"installed {tmp_path / 'user' / 'faces'}"
    listing = run("models", "list").stdout.splitlines()
    assert f"faces  fp32  installed  {tmp_path / 'user' / 'faces'}" in listing
    again = run("models", "install", "fp32", "--from", str(tmp_path / "checkout"))
    assert again.exit_code == 2 and "--force" in again.stderr and len(again.stderr.splitlines()) == 1
    assert run("models", "install", "fp32", "--from", str(tmp_path / "checkout"), "--force").exit_code == 0


def test_a_source_without_the_precision_is_one_line(tmp_path, monkeypatch, tiny_faces_model):
    monkeypatch.setenv("GENRT_MODELS", str(tmp_path / "user"))
    shutil.copytree(tiny_faces_model, tmp_path / "checkout" / "genrt" / "models" / "faces")
    result = run("models", "install", "fp16", "--from", str(tmp_path / "checkout"))
    assert result.exit_code == 2 and "no fp16 model" in result.stderr and len(result.stderr.splitlines()) == 1
    result = run("models", "install", "fp32", "--from", str(tmp_path))
    assert result.exit_code == 2 and "neither a genrt checkout" in result.stderr


def test_help_examples_run(tmp_path, monkeypatch):
    """`genrt models install fp32 --from .` run from the checkout, into a scratch user models folder."""
    from pathlib import Path

    from tests.cli_examples import example_argvs

    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "genrt" / "models" / "faces").is_dir():
        import pytest
        pytest.skip("no fp32 models in this checkout")
    monkeypatch.setenv("GENRT_MODELS", str(tmp_path / "user"))
    monkeypatch.chdir(checkout)
    examples = example_argvs("models")
    assert len(examples) >= 2
    for argv in examples:
        result = run(*argv)
        assert result.exit_code == 0, (argv, result.output)
    assert (tmp_path / "user" / "poems" / "manifest.json").is_file()
