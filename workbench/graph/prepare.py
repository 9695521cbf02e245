"""Float-to-float rewrites done once before quantization, so that the float reference and
the quantized model share one graph: Constant nodes become initializers, BatchNormalization
folds into the Conv/ConvTranspose/Gemm before it.

BN folding (inference-mode BN after a linear op with weight W, bias b):
    y = γ (W x + b − μ) / sqrt(σ² + ε) + β
      = (W·k) x + (b − μ)·k + β,      k = γ / sqrt(σ² + ε)   (per output channel)
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.models import upgrade_opset

QDQ_OPSET = 21

_FOLDABLE = {"Conv": 0, "ConvTranspose": 1}  # op -> output-channel axis of its weight


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Turn top-level ``Constant`` nodes with a tensor value into initializers (in place)."""
    graph = model.graph
    keep, moved = [], 0
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            moved += 1
        else:
            keep.append(node)
    if moved:
        del graph.node[:]
        graph.node.extend(keep)
    return moved


def fold_batchnorm(model: onnx.ModelProto) -> list[str]:
    """Fold every BatchNormalization that is the only consumer of a Conv/ConvTranspose
    output with an initializer weight into that op (in place). Returns the folded BN names."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    graph_outputs = {o.name for o in graph.output}
    folded: list[str] = []
    drop: set[int] = set()
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        prev = producers.get(bn.input[0])
        if prev is None or prev.op_type not in _FOLDABLE or consumers.get(bn.input[0]) != 1 \
                or bn.input[0] in graph_outputs:
            continue
        if prev.input[1] not in inits or any(x not in inits for x in bn.input[1:5]):
            continue
        if len(prev.input) > 2 and prev.input[2] and prev.input[2] not in inits:
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[x]).astype(np.float64) for x in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        k = gamma / np.sqrt(var + eps)
        w_init = inits[prev.input[1]]
        w = numpy_helper.to_array(w_init).astype(np.float64)
        axis = _FOLDABLE[prev.op_type]
        if prev.op_type == "ConvTranspose":
            group = next((a.i for a in prev.attribute if a.name == "group"), 1)
            if group != 1:
                continue
        shape = [1] * w.ndim
        shape[axis] = -1
        has_bias = len(prev.input) > 2 and bool(prev.input[2])
        b = numpy_helper.to_array(inits[prev.input[2]]).astype(np.float64) if has_bias else np.zeros_like(k)
        dtype = numpy_helper.to_array(w_init).dtype
        # Keep the user's initializer names where nothing else reads them.
        w_name = prev.input[1] if consumers.get(prev.input[1]) == 1 else f"{prev.name}.weight_bnfolded"
        b_name = prev.input[2] if has_bias and consumers.get(prev.input[2]) == 1 else f"{prev.name}.bias_bnfolded"
        _set_initializer(graph, inits, numpy_helper.from_array((w * k.reshape(shape)).astype(dtype), w_name))
        _set_initializer(graph, inits, numpy_helper.from_array(((b - mean) * k + beta).astype(dtype), b_name))
        inputs = [prev.input[0], w_name, b_name]
        del prev.input[:]
        prev.input.extend(inputs)
        prev.output[0] = bn.output[0]
        drop.add(id(bn))
        folded.append(bn.name)
    if drop:
        nodes = [n for n in graph.node if id(n) not in drop]
        del graph.node[:]
        graph.node.extend(nodes)
        _drop_unused_initializers(model)
    return folded


def _set_initializer(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto], tensor: onnx.TensorProto) -> None:
    if tensor.name in inits:
        inits[tensor.name].CopyFrom(tensor)
    else:
        graph.initializer.append(tensor)
        inits[tensor.name] = graph.initializer[-1]


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def prepare(model: onnx.ModelProto, opset: int = QDQ_OPSET) -> tuple[onnx.ModelProto, list[str]]:
    """A prepared copy of ``model`` (Constants as initializers, BN folded, default-domain opset
    lifted to ``opset`` so QuantizeLinear takes int16/int4, shapes inferred) and notes on
    what was rewritten."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    notes = []
    if n := constants_to_initializers(out):
        notes.append(f"{n} Constant node(s) turned into initializers")
    if folded := fold_batchnorm(out):
        notes.append(f"folded {len(folded)} BatchNormalization node(s) into the preceding Conv")
    current = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current < opset:
        out = upgrade_opset(out, opset)
        notes.append(f"opset {current} upgraded to {opset}")
    del out.graph.value_info[:]
    out = onnx.shape_inference.infer_shapes(out)
    return out, notes
