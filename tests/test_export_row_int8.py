"""export.row_int8: per-row int8 products computed exactly as the arithmetic says, each row independent of the
others at every row count, and the refusals."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.row_int8 import MAX_EXACT_K, ZERO_POINT, quantize_rows, quantize_weight


def linear_model(weight: np.ndarray, bias: np.ndarray, extra_user: bool = False) -> onnx.ModelProto:
    """y = x @ W + b on x (B, T, K); with `extra_user` W also feeds a Gather (a tied table)."""
    k, n = weight.shape
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", n])]
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")]
    if extra_user:
        nodes.append(helper.make_node("Gather", ["W", "idx"], ["row"]))
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "idx"))
        outputs.append(helper.make_tensor_value_info("row", TensorProto.FLOAT, [1, n]))
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", k])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The scheme's arithmetic in numpy: row scales, rounding half to even, int32 sums, then the scales."""
    w8, w_scale = quantize_weight(weight)
    scale = np.abs(x).max(axis=-1, keepdims=True).astype(np.float32) * np.float32(1 / 127)   # (B, T, 1)
    q = np.clip(np.round(x / np.where(scale > 0, scale, 1)), -127, 127).astype(np.int64)
    acc = (q @ w8.astype(np.int64)).astype(np.float32)                                     # exact below 2^24
    return acc * (scale * w_scale) + bias


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((64, 40)) * 0.1).astype(np.float32), rng.standard_normal(40).astype(np.float32)


def test_the_graph_computes_the_per_row_arithmetic(weights):
    weight, bias = weights
    x = (np.random.default_rng(1).standard_normal((3, 5, 64)) * [[[1.0]], [[30.0]], [[0.01]]]).astype(np.float32)
    got = session(quantize_rows(linear_model(weight, bias))).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, reference(x, weight, bias), rtol=1e-5, atol=1e-5)
    assert np.abs(got - (x @ weight + bias)).max() < 0.02 * np.abs(x @ weight).max()


def test_every_row_gets_the_same_bits_at_every_row_count(weights):
    weight, bias = weights
    run = session(quantize_rows(linear_model(weight, bias)))
    x = (np.random.default_rng(2).standard_normal((33, 1, 64)) * np.geomspace(0.01, 100, 33)[:, None, None]
         ).astype(np.float32)
    alone = [run.run(None, {"x": x[i:i + 1]})[0][0] for i in range(len(x))]
    for rows in (2, 3, 4, 7, 8, 16, 17, 33):
        together = run.run(None, {"x": x[:rows]})[0]
        for i in range(rows):
            assert np.array_equal(together[i], alone[i]), (rows, i)


def test_a_zero_row_gives_the_bias(weights):
    weight, bias = weights
    x = np.zeros((2, 1, 64), np.float32)
    x[1] = 1.0
    got = session(quantize_rows(linear_model(weight, bias))).run(None, {"x": x})[0]
    assert np.array_equal(got[0, 0], bias) and np.isfinite(got).all()


def test_weights_are_int8_per_column_and_a_shared_table_stays():
    weight = np.array([[1.0, -0.5, 0.0], [-2.0, 0.25, 0.0]], np.float32)
    w8, scale = quantize_weight(weight)
    assert w8.dtype == np.int8 and np.abs(w8).max() == 127 and np.array_equal(w8[:, 2], [0, 0])
    np.testing.assert_allclose(scale, [2 / 127, 0.5 / 127, 0])
    model = quantize_rows(linear_model(np.ones((8, 3), np.float32), np.zeros(3, np.float32), extra_user=True))
    assert "W" in {i.name for i in model.graph.initializer}                           # the Gather still reads it
    assert {n.op_type for n in model.graph.node} >= {"QuantizeLinear", "MatMulIntegerToFloat", "Gather"}
    zero_point = next(i for i in model.graph.initializer if i.name == "row_int8/zero_point")
    assert numpy_helper.to_array(zero_point) == ZERO_POINT


def test_refusals():
    with pytest.raises(ValueError, match="no MatMul"):
        quantize_rows(helper.make_model(helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]), opset_imports=[helper.make_opsetid("", 17)]))
    k = MAX_EXACT_K + 1
    with pytest.raises(ValueError, match="would not stay exact"):
        quantize_rows(linear_model(np.ones((k, 2), np.float32), np.zeros(2, np.float32)))
