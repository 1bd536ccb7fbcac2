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


def test_target_ratios_are_computed_per_model_directory():
    """Two int8 variants share provider, precision and threads: each ratio must use its own directory's rows."""
    from benchmarks.report import poems_table, target_lines

    def row(model_dir, search, cache, ms):
        return {"model": "poems", "engine": "genrt", "provider": "cpu", "precision": "int8", "threads": 1,
                "model_dir": model_dir, "search": search, "batch": 1, "cache": cache, "new_tokens": 64,
                "ms_per_token": ms, "p90_ms": ms * 64, "tokens_per_s": 1e3 / ms, "peak_rss_mb": 100}
    rows = [row("m/poems_int8", "greedy", "kv", 0.4), row("m/poems_int8", "greedy", "recompute", 2.8),
            row("m/poems_int8", "beam4", "kv", 1.0),
            row("x/poems_int8_dynamic", "greedy", "kv", 0.5), row("x/poems_int8_dynamic", "greedy", "recompute", 2.0),
            row("x/poems_int8_dynamic", "beam4", "kv", 0.9)]
    text = "\n".join(target_lines(rows))
    assert "poems_int8 (cpu int8) 1 thread(s), 64 new characters: KV cache 7.0x" in text
    assert "poems_int8 (cpu int8) 1 thread(s), 64 new characters: beam 4 costs 2.50x" in text
    assert "poems_int8_dynamic (cpu int8) 1 thread(s), 64 new characters: KV cache 4.0x" in text
    assert "poems_int8_dynamic (cpu int8) 1 thread(s), 64 new characters: beam 4 costs 1.80x" in text
    assert sum("| poems_int8_dynamic |" in line for line in poems_table(rows)) == 3


def test_kernel_benchmark_covers_every_decoder_matrix_and_scheme(tiny_poems_dir, tmp_path):
    from benchmarks.kernels import main as kernels_main
    result = kernels_main(["--model", str(tiny_poems_dir), "--out", str(tmp_path), "--quick"])
    rows = result["rows"]
    assert {r["scheme"] for r in rows} == {"fp32", "nbits", "dynamic"}
    assert len(rows) == 5 * 3 and all(r["us_m1"] > 0 and r["us_m32"] > 0 for r in rows)
    assert [r["n"] for r in rows if r["matrix"] == "output layer"][0] == 88      # the tiny vocab
    md = (tmp_path / "kernels.md").read_text(encoding="utf-8")
    assert "| nbits |" in md and "M=4 / M=1" in md
