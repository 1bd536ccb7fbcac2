"""A graph's actual inputs and outputs against the contract's GraphSpec (genrt.contract).

`session_io` describes an onnxruntime session as (name, dtype, shape) lists; `check_graph_io` compares such lists
(from a session, or from an onnx.GraphProto in export checks) with the spec and names every mismatch.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from genrt.contract import GraphSpec


def check_graph_io(spec: GraphSpec, inputs: Iterable[tuple[str, str, Sequence[Any]]],
                   outputs: Iterable[tuple[str, str, Sequence[Any]]], where: str = "") -> list[str]:
    """Compare a graph's actual (name, dtype, shape) lists with the spec. A symbolic (dynamic) dim of the spec must
    be symbolic in the graph too (any name, or None); fixed dims must match exactly. Returns every problem (empty
    list = conforms)."""
    problems: list[str] = []
    for label, expected, actual in (("input", spec.inputs, list(inputs)), ("output", spec.outputs, list(outputs))):
        actual_by_name = {name: (dtype, shape) for name, dtype, shape in actual}
        for t in expected:
            if t.name not in actual_by_name:
                problems.append(f"{where}{spec.file}: missing {label} {t.name!r}")
                continue
            dtype, shape = actual_by_name.pop(t.name)
            if dtype != t.dtype:
                problems.append(f"{where}{spec.file}: {label} {t.name!r} has dtype {dtype}, expected {t.dtype}")
            if len(shape) != len(t.shape) or any(
                    (a != e) if isinstance(e, int) else isinstance(a, int) for e, a in zip(t.shape, shape)):
                problems.append(f"{where}{spec.file}: {label} {t.name!r} has shape {list(shape)}, "
                                f"expected {list(t.shape)}")
        problems += [f"{where}{spec.file}: unexpected {label} {name!r}" for name in actual_by_name]
    return problems


_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(uint8)": "uint8",
              "tensor(bool)": "bool", "tensor(float16)": "float16", "tensor(int32)": "int32"}


def session_io(session: Any) -> tuple[list[tuple[str, str, list]], list[tuple[str, str, list]]]:
    """(name, dtype, shape) of an onnxruntime.InferenceSession's inputs and outputs."""
    def describe(args: Any) -> list[tuple[str, str, list]]:
        return [(a.name, _ORT_TYPES.get(a.type, a.type), list(a.shape)) for a in args]
    return describe(session.get_inputs()), describe(session.get_outputs())
