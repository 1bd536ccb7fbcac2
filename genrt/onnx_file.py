"""What the contract needs from an ONNX file, read without the onnx package: a minimal protobuf walker.

Only `position_table_rows` is public: the number of rows of the decoder's position-embedding table, so that a
manifest's `max_len` can be checked against the graph at load (genrt.contract).
"""
from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any, Iterator

from genrt.limits import MAX_PROTO_FIELDS


def position_table_rows(graph_path: str | Path, positions_input: str = "position_ids") -> int | None:
    """Rows of the embedding table that `positions_input` indexes (Gather(table, position_ids), the table an
    initializer, possibly through a Cast), read from the ONNX file itself without the onnx package: onnxruntime
    cannot show initializers. None when the file is empty, unreadable or built some other way, and when it is not
    found within MAX_PROTO_FIELDS fields: a huge or garbage file is left to onnxruntime, never walked in Python."""
    try:
        with open(graph_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _position_rows(buf, positions_input)
    except (OSError, ValueError, IndexError):  # an empty file cannot be mapped; a corrupt one runs off the end
        return None


# ONNX protobuf field numbers (onnx/onnx.proto): ModelProto.graph; GraphProto.node, .initializer;
# NodeProto.input, .output, .op_type; TensorProto.dims, .name.
_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_INITIALIZER = 7, 1, 5
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE = 1, 2, 4
_TENSOR_DIMS, _TENSOR_NAME = 1, 8


def _position_rows(buf: Any, positions_input: str) -> int | None:
    buf = _Budgeted(buf)
    graph = next((v for num, v in _proto_fields(buf, 0, len(buf)) if num == _MODEL_GRAPH), None)
    if not isinstance(graph, tuple):
        return None
    rows: dict[str, int] = {}
    source: dict[str, str] = {}          # output of a Cast/Identity -> its input
    table = None
    for num, v in _proto_fields(buf, *graph):
        if num == _GRAPH_INITIALIZER and isinstance(v, tuple):
            name, dims = _tensor_name_and_dims(buf, v)
            if dims:
                rows[name] = dims[0]
        elif num == _GRAPH_NODE and isinstance(v, tuple):
            op, inputs, outputs = _node(buf, v)
            if op == "Gather" and len(inputs) == 2 and inputs[1] == positions_input:
                table = inputs[0]
            elif op in ("Cast", "Identity") and inputs and outputs:
                source[outputs[0]] = inputs[0]
    table = source.get(table, table)
    return rows.get(table) if table is not None else None


def _tensor_name_and_dims(buf: Any, span: tuple[int, int]) -> tuple[str, list[int]]:
    name, dims = "", []
    for num, v in _proto_fields(buf, *span):
        if num == _TENSOR_NAME and isinstance(v, tuple):
            name = buf[v[0]:v[1]].decode("utf-8", "replace")
        elif num == _TENSOR_DIMS and isinstance(v, int):
            dims.append(v)
        elif num == _TENSOR_DIMS and isinstance(v, tuple):  # packed repeated int64
            i = v[0]
            while i < v[1]:
                d, i = _varint(buf, i)
                dims.append(d)
    return name, dims


def _node(buf: Any, span: tuple[int, int]) -> tuple[str, list[str], list[str]]:
    op, inputs, outputs = "", [], []
    for num, v in _proto_fields(buf, *span):
        if isinstance(v, tuple) and num in (_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE):
            text = buf[v[0]:v[1]].decode("utf-8", "replace")
            if num == _NODE_OP_TYPE:
                op = text
            else:
                (inputs if num == _NODE_INPUT else outputs).append(text)
    return op, inputs, outputs


class _Budgeted:
    """The file's bytes, with the number of protobuf fields the walk may still visit."""

    def __init__(self, buf: Any):
        self.buf, self.fields_left = buf, MAX_PROTO_FIELDS

    def __getitem__(self, index):
        return self.buf[index]

    def __len__(self) -> int:
        return len(self.buf)


def _proto_fields(buf: Any, start: int, end: int) -> Iterator[tuple[int, int | tuple[int, int] | None]]:
    """(field number, value) of one protobuf message in buf[start:end]: a varint as an int, a length-delimited
    field as its (start, end) span (not copied: weights are skipped, not read), fixed-size fields as None."""
    i = start
    while i < end:
        buf.fields_left -= 1
        if buf.fields_left < 0:
            raise ValueError(f"more than {MAX_PROTO_FIELDS} protobuf fields")
        key, i = _varint(buf, i)
        if key >> 3 == 0:
            raise ValueError(f"protobuf field number 0 at byte {i}")
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = (i, i + size), i + size
        elif wire in (1, 5):
            value, i = None, i + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"protobuf wire type {wire} at byte {i}")
        if i > end:
            raise ValueError("protobuf field runs past its message")
        yield key >> 3, value


def _varint(buf: Any, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if shift > 63:                               # a varint has at most 10 bytes
            raise ValueError(f"protobuf varint too long at byte {i}")
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7
