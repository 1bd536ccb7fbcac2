"""genrt must run where PyTorch is not installed: import it, generate, and use the CLI with `import torch` blocked."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BLOCK_TORCH = textwrap.dedent("""
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by test_torch_free)")
            return None

    sys.meta_path.insert(0, BlockTorch())
""")


def run_without_torch(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter whose sitecustomize blocks every torch import."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_genrt_generates_faces_without_torch(tiny_faces_model, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was importable: the blocker did not work")

        import genrt, genrt.cli, genrt.faces, genrt.runtime, genrt.contract
        from genrt import FaceGenerator
        faces = FaceGenerator.load({str(tiny_faces_model)!r}, provider="cpu", threads=1)
        images = faces.generate(3, seed=0)
        assert images.shape == (3, 64, 64, 3) and images.dtype.name == "uint8", images.shape

        from genrt.cli import main
        main(["faces", "--model", {str(tiny_faces_model)!r}, "-o", "out", "--n", "2", "--seed", "1",
              "--threads", "1"], standalone_mode=False)
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        print("ok")
    """)
    result = run_without_torch(script, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["face_0000.png", "face_0001.png", "grid.png"]


def test_no_torch_import_in_genrt_sources():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "genrt").rglob("*.py")
                 if any(line.strip().startswith(("import torch", "from torch")) for line in p.read_text().splitlines())]
    assert offenders == []


def test_genrt_writes_poems_without_torch(tiny_poems_dir, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from genrt import PoemGenerator
        gen = PoemGenerator.load({str(tiny_poems_dir)!r}, provider="cpu", threads=1)
        poems = gen.generate(["春江", "明月"], num_beams=2, max_new_tokens=8)
        assert len(poems) == 2 and all(isinstance(p[0].text, str) for p in poems)
        assert "".join(gen.stream("春江", max_new_tokens=5)) == gen.generate("春江", max_new_tokens=5)[0].text
        from genrt.poems.engine import PoemEngine
        with PoemEngine(gen) as engine:
            assert engine.generate(["春江"], max_new_tokens=5) == [gen.generate("春江", max_new_tokens=5)]
        from genrt.cli import main
        main(["poem", "春江", "--model", {str(tiny_poems_dir)!r}, "--max-new-tokens", "6", "--threads", "1"],
             standalone_mode=False)
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        print("ok")
    """)
    result = run_without_torch(script, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
