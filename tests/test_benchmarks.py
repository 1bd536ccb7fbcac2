"""The benchmark tool works end to end on tiny models and writes valid files (no timing assertions)."""
import json

from PIL import Image

from benchmarks.__main__ import main


def test_quick_benchmark_writes_json_markdown_and_png(tiny_faces_model, tiny_poems_dir, tiny_poems_checkpoint,
                                                      tmp_path):
    main(["--quick", "--out", str(tmp_path), "--threads", "1", "--faces-model", str(tiny_faces_model),
          "--poems-model", str(tiny_poems_dir), "--poems-checkpoint", str(tiny_poems_checkpoint),
          "--faces-checkpoint", str(tiny_faces_model)])                  # the folded peer from the model dir
    result = json.loads((tmp_path / "latest.json").read_text())
    rows = result["rows"]
    assert result["machine"]["onnxruntime"] and result["quick"] is True
    assert {r["n"] for r in rows if r["model"] == "faces"} == {1, 16}
    poems = [r for r in rows if r["model"] == "poems" and r["engine"] == "genrt"]
    assert {(r["search"], r["cache"]) for r in poems} >= {("greedy", "kv"), ("greedy", "recompute"),
                                                         ("beam4", "kv"), ("sample", "kv"), ("first-token", "kv")}
    assert any(r["engine"] == "torch-eager" and r["model"] == "poems" for r in rows)
    assert any(r["engine"] == "torch-eager" and r["model"] == "faces" and "folded" in r["weights"] for r in rows)
    assert result["machine"]["cpu_flags"] is not None
    assert all(r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] * 0.5 for r in rows)
    md = (tmp_path / "latest.md").read_text()
    assert "### Faces" in md and "### Poems" in md and "KV cache" in md
    with Image.open(tmp_path / "latest.png") as im:
        assert im.width == 900 and im.height > 40
