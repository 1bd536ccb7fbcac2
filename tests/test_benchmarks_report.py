"""benchmarks.report: the markdown tables, the target ratios and the PNG chart of a benchmark run."""
from PIL import Image

from benchmarks.report import _fmt, faces_table, model_name, poems_table, write_markdown, write_png


def test_target_ratios_are_computed_per_model_directory():
    """Two int8 variants share provider, precision and threads: each ratio must use its own directory's rows."""
    from benchmarks.report import poems_table, target_lines

    def row(model_dir, search, cache, ms):
        return {"model": "poems", "engine": "genrt", "provider": "cpu", "precision": "int8", "threads": 1,
                "model_dir": model_dir, "search": search, "batch": 1, "cache": cache, "new_tokens": 64,
                "ms_per_token": ms, "p90_ms": ms * 64, "tokens_per_s": 1e3 / ms, "peak_rss_mb": 100}
    rows = [row("m/poems_int8", "greedy", "kv", 0.4), row("m/poems_int8", "greedy", "recompute", 2.8),
            row("m/poems_int8", "beam4", "kv", 1.0), row("m/poems_int8", "beam4-sampled", "kv", 1.2),
            row("x/poems_int8_dynamic", "greedy", "kv", 0.5), row("x/poems_int8_dynamic", "greedy", "recompute", 2.0),
            row("x/poems_int8_dynamic", "beam4", "kv", 0.9)]
    text = "\n".join(target_lines(rows))
    assert "poems_int8 (cpu int8) 1 thread(s), 64 new characters: KV cache 7.0x" in text
    assert "poems_int8 (cpu int8) 1 thread(s), 64 new characters: beam 4 costs 2.50x" in text
    assert "64 new characters: sampled beam 4 (the recommended --num-beams) costs 3.00x greedy" in text
    assert "poems_int8_dynamic (cpu int8) 1 thread(s), 64 new characters: KV cache 4.0x" in text
    assert "poems_int8_dynamic (cpu int8) 1 thread(s), 64 new characters: beam 4 costs 1.80x" in text
    assert sum("| poems_int8_dynamic |" in line for line in poems_table(rows)) == 3
    assert "sampled" not in text.split("poems_int8_dynamic (cpu int8)", 1)[1]     # that directory has no such row



def faces_row(engine, n, median, threads=1):
    return {"model": "faces", "engine": engine, "provider": "cpu", "precision": "fp32", "threads": threads, "n": n,
            "median_ms": median, "p90_ms": median * 1.5, "images_per_s": n / median * 1e3, "load_s": 0.25,
            "peak_rss_mb": 80.4}


def poems_row(search, ms, **extra):
    return {"model": "poems", "engine": "genrt", "provider": "cpu", "precision": "fp32", "threads": 1,
            "model_dir": "genrt/models/poems", "search": search, "batch": 1, "cache": "kv", "new_tokens": 64,
            "ms_per_token": ms, "median_ms": ms * 64, "p90_ms": ms * 64 * 1.25, "tokens_per_s": 1e3 / ms,
            "peak_rss_mb": 120, "load_s": 0.5, **extra}


def test_numbers_keep_three_decimals_below_ten_and_one_above():
    assert _fmt(3.14159) == "3.142" and _fmt(9.9996) == "10.000" and _fmt(12.34) == "12.3"


def test_model_name_is_the_directory_name_or_a_dash():
    assert model_name({"model_dir": "genrt/models/poems_int8"}) == "poems_int8"
    assert model_name({"model_dir": None}) == "-" and model_name({}) == "-"


def test_faces_table_is_sorted_by_batch_then_engine():
    rows = [faces_row("torch-eager", 16, 40.0), faces_row("genrt", 16, 20.0), faces_row("genrt", 1, 2.5)]
    table = faces_table(rows + [poems_row("greedy", 0.5)])
    assert table[0].startswith("| engine | provider | precision | threads | n |") and len(table) == 5
    assert table[2] == "| genrt | cpu | fp32 | 1 | 1 | 2.500 | 3.750 | 400 | 0.25 | 80 |"
    assert [line.split(" | ")[0] for line in table[3:]] == ["| genrt", "| torch-eager"]
    assert faces_table([poems_row("greedy", 0.5)]) == []


def test_poems_table_keeps_first_token_rows_apart():
    rows = [poems_row("greedy", 0.5), poems_row("first-token", 1.0, median_ms=3.0)]
    table = poems_table(rows)
    assert "| genrt | poems | cpu | fp32 | 1 | greedy | 1 | kv | 64 | 0.500 | 0.625 | 2000 | 120 |" in table
    assert not any("| first-token |" in line for line in table)
    assert table[-1] == "| poems | cpu | fp32 | 1 | 3.000 | 0.50 |"
    assert poems_table([faces_row("genrt", 1, 2.0)]) == []


def test_markdown_names_the_machine_and_each_section(tmp_path):
    rows = [faces_row("genrt", 16, 20.0), faces_row("torch-eager", 16, 50.0), poems_row("greedy", 0.5),
            poems_row("greedy", 2.0, cache="recompute")]
    result = {"machine": {"date": "2025-01-01", "cpu": "Test CPU", "cores": 4, "cpu_flags": [], "onnxruntime": "1.22",
                          "torch": None, "numpy": "2.0"}, "quick": True,
              "graph_ops": {"poems": {"decoder": {"MatMul": 8, "Add": 4}}}, "rows": rows}
    write_markdown(result, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert text.startswith("Measured 2025-01-01 on Test CPU (4 logical cores; none of the listed kernel flags)")
    assert "(quick run: few repeats)." in text
    assert "Graphs measured (onnxruntime kernels by op type): poems decoder: MatMul x8 Add x4." in text
    assert "### Faces" in text and "### Poems" in text and "### Against the targets" in text
    assert "KV cache 4.0x faster per token" in text
    assert "- faces n=16, cpu fp32 1 thread(s): 20.00 ms per call, 2.5x torch eager" in text


def test_png_has_one_bar_per_batch_one_poem_row_and_faces_n16(tmp_path):
    rows = [poems_row("greedy", 0.5), poems_row("beam4", 1.0), poems_row("greedy", 0.2, batch=8),
            faces_row("genrt", 16, 20.0), faces_row("genrt", 1, 2.0)]
    write_png({"rows": rows}, tmp_path / "r.png")
    with Image.open(tmp_path / "r.png") as im:
        assert im.size == (900, 40 + 22 * 3)
