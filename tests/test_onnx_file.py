"""genrt.onnx_file: the decoder's position-table size, read from the ONNX file without the onnx package."""
from genrt.onnx_file import position_table_rows


def test_position_table_rows_reads_the_graph(tiny_poems_dir, tiny_poems_plain_dir):
    for folder in (tiny_poems_dir, tiny_poems_plain_dir):   # fused and standard attention exports
        assert position_table_rows(folder / "decoder.onnx") == 80 + 8   # PoemTransformer: max_len + 8 rows
    assert position_table_rows(tiny_poems_dir / "encoder.onnx") is None   # no position_ids input there
    assert position_table_rows(tiny_poems_dir / "manifest.json") is None  # not a graph: no answer, no crash


def test_a_missing_or_empty_file_has_no_answer(tmp_path):
    assert position_table_rows(tmp_path / "absent.onnx") is None
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert position_table_rows(tmp_path / "empty.onnx") is None
