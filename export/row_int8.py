"""int8 with per-row activation scales: every weight MatMul of a graph as an exact integer product.

    x (rows..., K) float32 --amax per row / 127--> scale (rows..., 1)
    QuantizeLinear(x, scale, 128)              -> u8 (rows..., K)   one block per row (opset 21 blocked quantization)
    MatMulIntegerToFloat(u8, W8, scale, w_scale, 128) -> y (rows..., N)

Weights are int8 per output column (symmetric, [-127, 127]); activations are int8 per row (symmetric, stored as
uint8 with zero point 128, the operand onnxruntime's VNNI kernels take). The products accumulate in int32, which is
exact whatever order or tiling a kernel uses, and every other step (the row's scale, its rounding, the final
multiply) is element-wise or confined to the row. So a row's numbers cannot depend on the other rows of
the call: batch invariance by construction, at any row count. onnxruntime's integer GEMM reuses each weight across
rows, so 32 rows cost 4.7x one row on the output layer where 8-bit MatMulNBits costs 17x
(benchmarks/results/kernels.md).

The accumulators stay exact in float32: |sum| <= K * 127 * 127 < 2^24 for K <= 1040. An all-zero row gets scale 0;
its products are then 0 * (finite int) = 0, the right answer, so no epsilon is needed. On x86 CPUs without VNNI,
onnxruntime's u8 x s8 kernel adds pairs of products in int16 and can saturate; rows stay independent there, but
accuracy may drop.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 21                      # QuantizeLinear with block_size: one scale per row without reshaping
ZERO_POINT = 128                # uint8 zero point: x / scale in [-127, 127] becomes [1, 255]
MAX_EXACT_K = (1 << 24) // (127 * 127)


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) float -> (K, N) int8 and (N,) float32 scales, symmetric per output column."""
    scale = (np.abs(weight).max(axis=0) / 127).astype(np.float32)
    safe = np.where(scale > 0, scale, 1).astype(np.float32)
    return np.clip(np.round(weight / safe), -127, 127).astype(np.int8), scale


def _weight_matmuls(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto]) -> list[onnx.NodeProto]:
    return [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2]


def _row_shapes(model: onnx.ModelProto, names: set[str]) -> dict[str, tuple]:
    """activation -> its leading (row) dimensions, symbolic, where shape inference (contrib ops included) knows
    them. Activations with equal row dimensions share one tensor of zero points."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    try:
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:                                # unknown shapes only cost a zero-point tensor each
        return {}
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input):
        dims = info.type.tensor_type.shape.dim
        if info.name in names and len(dims) > 1 and all(d.dim_param or d.dim_value for d in dims[:-1]):
            shapes[info.name] = tuple(d.dim_param or d.dim_value for d in dims[:-1])
    return shapes


def quantize_rows(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` (opset 21) whose weight MatMuls are per-row int8 products (module docstring)."""
    from onnx import version_converter
    inits = {i.name: i for i in model.graph.initializer}
    row_shapes = _row_shapes(model, {n.input[0] for n in _weight_matmuls(model.graph, inits)})
    model = version_converter.convert_version(model, OPSET)
    model.ir_version = max(model.ir_version, 10)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    matmuls = _weight_matmuls(graph, inits)
    if not matmuls:
        raise ValueError("no MatMul with a constant 2-D weight to quantize")
    new_inits = [numpy_helper.from_array(np.array(1 / 127, np.float32), "row_int8/inv127"),
                 numpy_helper.from_array(np.array([-1], np.int64), "row_int8/last_axis"),
                 numpy_helper.from_array(np.array(ZERO_POINT, np.uint8), "row_int8/zero_point")]
    quantized: dict[str, tuple[str, str]] = {}       # activation -> (its uint8 copy, its row scales)
    zero_points: dict[tuple | str, str] = {}         # row shape (or activation) -> (rows..., 1) uint8 zero points
    dropped, nodes = set(), []
    targets = {id(mm) for mm in matmuls}
    for node in graph.node:
        if id(node) not in targets:
            nodes.append(node)
            continue
        x, w = node.input
        weight = numpy_helper.to_array(inits[w]).astype(np.float32)                   # (K, N)
        k = weight.shape[0]
        if k > MAX_EXACT_K:
            raise ValueError(f"{node.name}: K = {k} > {MAX_EXACT_K}, int32 sums would not stay exact in float32")
        if x not in quantized:
            scale, rows = f"{x}/row_scale", row_shapes.get(x, x)
            nodes += [helper.make_node("Abs", [x], [f"{x}/abs"]),
                      helper.make_node("ReduceMax", [f"{x}/abs", "row_int8/last_axis"], [f"{x}/row_max"], keepdims=1),
                      helper.make_node("Mul", [f"{x}/row_max", "row_int8/inv127"], [scale])]  # (rows..., 1)
            if rows not in zero_points:
                zero_points[rows] = f"{x}/row_zero_point"
                nodes += [helper.make_node("Shape", [scale], [f"{x}/row_shape"]),
                          helper.make_node("ConstantOfShape", [f"{x}/row_shape"], [zero_points[rows]],
                                           value=numpy_helper.from_array(np.array([ZERO_POINT], np.uint8)))]
            nodes.append(helper.make_node("QuantizeLinear", [x, scale, zero_points[rows]], [f"{x}/u8"], axis=-1,
                                          block_size=k))
            quantized[x] = (f"{x}/u8", scale)
        u8, scale = quantized[x]
        w8, w_scale = quantize_weight(weight)
        new_inits += [numpy_helper.from_array(w8, f"{w}/int8"), numpy_helper.from_array(w_scale, f"{w}/col_scale")]
        dropped.add(w)
        # the bias Add stays a node of its own: MatMulIntegerToFloat would scale a bias input by the row scale
        nodes.append(helper.make_node("MatMulIntegerToFloat", [u8, f"{w}/int8", scale, f"{w}/col_scale",
                                                               "row_int8/zero_point"], [node.output[0]],
                                      name=node.name, domain="com.microsoft"))
    del graph.node[:]
    graph.node.extend(nodes)
    still_used = {name for node in nodes for name in node.input}       # a weight shared with another node stays
    kept = [i for i in graph.initializer if i.name not in dropped or i.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(model)
    return model
