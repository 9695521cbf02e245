"""Float-to-float rewrites done once before quantization, so that the float reference and
the quantized model share one graph: Constant nodes become initializers; BatchNormalization
and constant per-channel Mul/Add/Sub/Div fold into the Conv/ConvTranspose before them; the
exporters' decomposed hard-swish becomes one HardSwish node; a bias initializer that several
layers read (converters deduplicate equal biases, e.g. zeros) is copied so each layer owns its
bias — quantized, a bias has the scale ``s_input · s_weight`` of its own layer, and onnxruntime
fuses ``DQ → Conv → Q`` into ``QLinearConv`` only where the bias scale is that product.

BN folding (inference-mode BN after a linear op with weight W, bias b):
    y = γ (W x + b − μ) / sqrt(σ² + ε) + β
      = (W·k) x + (b − μ)·k + β,      k = γ / sqrt(σ² + ε)   (per output channel)
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.models import upgrade_opset
from workbench.models.naming import unique_name

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


def _channel_vector(value: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``value`` as one number per output channel when it broadcasts against [N, C, ...] only
    along C (or is a scalar); None otherwise."""
    if value.size == 1:
        return np.full(channels, float(value.ravel()[0]))
    if value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if shape[1] != channels or any(d != 1 for i, d in enumerate(shape) if i != 1):
        return None
    return value.reshape(channels).astype(np.float64)


def _affine_of(node: onnx.NodeProto, x: str, inits: dict[str, onnx.TensorProto], channels: int,
               rank: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) per channel when ``node`` computes ``scale·x + shift`` of its input ``x``."""
    op = node.op_type
    if op == "BatchNormalization":
        if len(node.output) != 1 or node.input[0] != x or any(i not in inits for i in node.input[1:5]):
            return None
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in node.input[1:5])
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        k = gamma / np.sqrt(var + eps)
        return k, beta - mean * k
    if op not in ("Mul", "Add", "Sub", "Div") or len(node.input) != 2:
        return None
    others = [i for i in node.input if i != x]
    if len(others) != 1 or others[0] not in inits or (op in ("Sub", "Div") and node.input[0] != x):
        return None
    c = _channel_vector(numpy_helper.to_array(inits[others[0]]), channels, rank)
    if c is None or (op == "Div" and np.any(c == 0)):
        return None
    one, zero = np.ones(channels), np.zeros(channels)
    return {"Mul": (c, zero), "Add": (one, c), "Sub": (one, -c), "Div": (1.0 / c, zero)}[op]


def fold_affine_into_conv(model: onnx.ModelProto) -> list[str]:
    """Fold per-channel affine ops (BatchNormalization, Mul/Add/Sub/Div by a constant) that are
    the only consumer of a Conv/ConvTranspose output into its weight and bias, repeatedly
    (in place). Returns the names of the folded nodes. As onnxruntime's ConvBNFusion,
    ConvMulFusion and ConvAddFusion: y = s·(W x + b) + t = (s·W) x + (s·b + t)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    folded: list[str] = []
    changed = True
    while changed:
        changed = False
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        for conv in graph.node:
            if conv.op_type not in _FOLDABLE or len(conv.input) < 2 or conv.input[1] not in inits:
                continue
            out = conv.output[0]
            nxt = consumers.get(out, [])
            if len(nxt) != 1 or out in graph_outputs:
                continue
            has_bias = len(conv.input) > 2 and bool(conv.input[2])
            if has_bias and conv.input[2] not in inits:
                continue
            if conv.op_type == "ConvTranspose" and next((a.i for a in conv.attribute if a.name == "group"), 1) != 1:
                continue
            w_init = inits[conv.input[1]]
            w = numpy_helper.to_array(w_init).astype(np.float64)
            axis = _FOLDABLE[conv.op_type]
            affine = _affine_of(nxt[0], out, inits, w.shape[axis], w.ndim)
            if affine is None:
                continue
            scale, shift = affine
            b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros_like(scale)
            shape = [1] * w.ndim
            shape[axis] = -1
            dtype = numpy_helper.to_array(w_init).dtype
            uses = {i: len(consumers.get(i, [])) for i in conv.input[1:]}
            # Keep the user's initializer names where nothing else reads them.
            w_name = conv.input[1] if uses[conv.input[1]] == 1 else f"{conv.name}.weight_folded"
            b_name = conv.input[2] if has_bias and uses[conv.input[2]] == 1 else f"{conv.name}.bias_folded"
            _set_initializer(graph, inits, numpy_helper.from_array((w * scale.reshape(shape)).astype(dtype), w_name))
            _set_initializer(graph, inits, numpy_helper.from_array((b * scale + shift).astype(dtype), b_name))
            del conv.input[1:]
            conv.input.extend([w_name, b_name])
            conv.output[0] = nxt[0].output[0]
            graph.node.remove(nxt[0])
            folded.append(nxt[0].name)
            changed = True
            break
    if folded:
        _drop_unused_initializers(model)
    return folded


def fuse_hardswish(model: onnx.ModelProto) -> int:
    """Replace the exporter's decomposed hard-swish ``x · clip(x + 3, 0, 6) / 6`` with one
    HardSwish node (in place), so it quantizes as one op. Returns how many were fused."""
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer if np.prod(t.dims) == 1}
    producers = {o: n for n in graph.node for o in n.output}

    def const(name: str, value: float) -> bool:
        return name in consts and float(consts[name].ravel()[0]) == value

    fused = 0
    for div in list(graph.node):
        if div.op_type not in ("Div", "Mul") or len(div.input) != 2:
            continue
        scale_ok = const(div.input[1], 6.0) if div.op_type == "Div" else \
            any(name in consts and abs(float(consts[name].ravel()[0]) - 1 / 6) < 1e-7 for name in div.input)
        mul = producers.get(div.input[0]) if div.op_type == "Div" else \
            next((producers.get(i) for i in div.input if i not in consts), None)
        if not scale_ok or mul is None or mul.op_type != "Mul":
            continue
        clip = next((producers.get(i) for i in mul.input if producers.get(i) is not None
                     and producers[i].op_type == "Clip"), None)
        if clip is None or len(clip.input) < 3 or not (const(clip.input[1], 0.0) and const(clip.input[2], 6.0)):
            continue
        add = producers.get(clip.input[0])
        if add is None or add.op_type != "Add":
            continue
        x = next((i for i in add.input if i not in consts), None)
        if x is None or not any(const(i, 3.0) for i in add.input) or set(mul.input) != {x, clip.output[0]}:
            continue
        pos = list(graph.node).index(div)
        graph.node.insert(pos, onnx.helper.make_node("HardSwish", [x], [div.output[0]], name=f"{div.name}/HardSwish"))
        for n in (div, mul, clip, add):
            graph.node.remove(n)
        fused += 1
    if fused:
        _drop_unused_initializers(model)
    return fused


_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}  # op -> index of its bias input


def own_biases(model: onnx.ModelProto) -> int:
    """Give every Conv/ConvTranspose/Gemm a bias initializer of its own (in place): a bias read
    by several nodes is copied for each reader but the first (for every reader if other nodes
    read it too). Returns the number of copies."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers = Counter(i for n in graph.node for i in n.input)
    slots = [(n, k) for n in graph.node
             if (k := _BIAS_INPUT.get(n.op_type)) is not None and len(n.input) > k and n.input[k] in inits]
    as_bias = Counter(n.input[k] for n, k in slots)
    used = set(inits) | {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    kept: set[str] = set()
    copies = 0
    for node, k in slots:
        name = node.input[k]
        if readers[name] < 2:
            continue
        if as_bias[name] == readers[name] and name not in kept:
            kept.add(name)
            continue
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[name])
        copy.name = unique_name(f"{node.name or name}.bias", used)
        graph.initializer.append(copy)
        node.input[k] = copy.name
        copies += 1
    return copies


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
    current = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current < opset:
        out = upgrade_opset(out, opset)
        notes.append(f"opset {current} upgraded to {opset}")
    if folded := fold_affine_into_conv(out):
        notes.append(f"folded {len(folded)} BatchNormalization/constant Mul-Add node(s) into the preceding Conv")
    if fused := fuse_hardswish(out):
        notes.append(f"fused {fused} decomposed hard-swish pattern(s) x·clip(x+3,0,6)/6 into HardSwish")
    if copies := own_biases(out):
        notes.append(f"{copies} bias initializer(s) read by several layers copied, one per layer")
    del out.graph.value_info[:]
    out = onnx.shape_inference.infer_shapes(out)
    return out, notes
