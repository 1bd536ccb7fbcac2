"""The benchmark tool works end to end on tiny models and writes valid files (no timing assertions)."""
import json

from PIL import Image

from benchmarks.__main__ import main


def test_quick_benchmark_writes_json_markdown_and_png(tiny_faces_model, tiny_poems_dir, tiny_poems_checkpoint,
                                                      tmp_path):
    main(["--quick", "--out", str(tmp_path), "--threads", "1", "--faces-model", str(tiny_faces_model),
          "--poems-model", str(tiny_poems_dir), "--poems-checkpoint", str(tiny_poems_checkpoint),
          "--faces-checkpoint", str(tmp_path / "absent.pt")])
    result = json.loads((tmp_path / "latest.json").read_text())
    rows = result["rows"]
    assert result["machine"]["onnxruntime"] and result["quick"] is True
    assert {r["n"] for r in rows if r["model"] == "faces"} == {1, 16}
    poems = [r for r in rows if r["model"] == "poems" and r["engine"] == "genrt"]
    assert {(r["search"], r["cache"]) for r in poems} >= {("greedy", "kv"), ("greedy", "recompute"),
                                                         ("beam4", "kv"), ("sample", "kv"), ("first-token", "kv")}
    assert any(r["engine"] == "torch-eager" and r["model"] == "poems" for r in rows)
    assert all(r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] * 0.5 for r in rows)
    md = (tmp_path / "latest.md").read_text()
    assert "### Faces" in md and "### Poems" in md and "KV cache" in md
    with Image.open(tmp_path / "latest.png") as im:
        assert im.width == 900 and im.height > 40


def test_forms_benchmark_compares_with_and_without_form_tokens(tiny_form_poems_dir, tmp_path):
    from benchmarks.forms import main as forms_main
    results = forms_main(["--model", str(tiny_form_poems_dir), "--prompts-per-form", "3", "--forms", "五言绝句",
                          "--threads", "1", "--out", str(tmp_path)])
    rows = results["forms"]
    assert [r["form_token"] for r in rows] == [False, True]
    assert all(r["well_formed_constrained"] == 1.0 and r["prompts"] == 3 for r in rows)
    assert all(0.0 <= r["constraint_changed_output"] <= 1.0 for r in rows)
    md = (tmp_path / "forms.md").read_text(encoding="utf-8")
    assert "form token in source" in md and (tmp_path / "forms.json").is_file()
