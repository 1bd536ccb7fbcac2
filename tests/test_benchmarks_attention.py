"""benchmarks.attention: the fused and plain self-attention graphs compute the same step, and the report."""
import pytest

pytest.importorskip("onnx")

from benchmarks import attention  # noqa: E402


@pytest.mark.parametrize("rows, positions", [(1, 16), (3, 32), (2, 2)])
def test_both_forms_compute_the_same_attention(rows, positions):
    fused, plain = attention.session(attention.fused_graph()), attention.session(attention.plain_graph())
    a, b = attention.feeds(rows, positions, seed=rows)
    out_fused, present_k, present_v = fused.run(None, a)
    out_plain, new_k, new_v = plain.run(None, b)
    assert out_fused.shape == out_plain.shape == (rows, 1, attention.HEADS * attention.HEAD_DIM)
    assert abs(out_fused - out_plain).max() < 1e-5
    assert (new_k[..., 0] == present_k[:, :, -1]).all() and (new_v[:, :, 0] == present_v[:, :, -1]).all()


def test_report_rows_and_markdown(tmp_path):
    report = attention.main(["--quick", "--rows", "2", "--positions", "16", "--out", str(tmp_path / "a.json")])
    (row,) = report["rows"]
    assert (row["rows"], row["positions"]) == (2, 16) and row["fused_us"] > 0 and row["plain_us"] > 0
    assert row["max_abs_difference"] < 1e-5
    assert "| 2 | 16 |" in (tmp_path / "a.md").read_text()


def test_bad_sizes_are_refused(capsys):
    with pytest.raises(SystemExit):
        attention.main(["--rows", "0"])
    assert "--rows" in capsys.readouterr().err
