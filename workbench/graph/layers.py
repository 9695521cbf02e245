"""The quantizable layers of a (prepared) float graph and how their tensors group.

A *layer* is a node that computes in integers once quantized, with its activation inputs,
its weight and bias initializers and its output. Placement follows onnxruntime and TensorRT:

- a Relu/Clip that is the only consumer of a Conv/Gemm/MatMul output, or of a residual Add
  (or Mul) of two activations, is fused into that layer (no QDQ between them): the layer's
  output is the activation's output. onnxruntime's integer kernels clamp to the output grid,
  which is the Relu/Clip when the grid starts at its bound; a QDQ pair between them would
  quantize the pre-activation range (negatives included) once more and leave a requantizing
  DQ → Q pair in the deployed graph. So is a Sigmoid/HardSigmoid/Tanh after a weighted layer
  (TensorRT and NNCF fuse them too): the logits are not quantized, only the fixed-range output.
  Quantized, a segmentation head's logits cost MediaPipe's selfie segmenter 1.5 dB. onnxruntime
  then runs that layer in float: free for a ConvTranspose (float on CPU anyway), a squeeze-
  excitation gate's 1×1 conv or a classifier head, the only such layers in the zoo;
- shape-only ops (Reshape, Transpose, MaxPool, ...) are *pass-through*: their output shares
  the quantization parameters of their input (one group), so they can run in int8;
- Concat inputs and output share one scale where the target asks for it;
- Softmax and LayerNormalization are not layers: their inputs stay float (a layer writing one
  leaves it unquantized) and their outputs are quantized where a layer reads them. A Softmax
  input is often scores plus a −1e4 mask (TensorRT keeps it float too); a LayerNorm input is the
  residual sum with a transformer's outlier channels, which on one scale take the other
  channels' resolution (MiniLM 3.4 → 6.4 dB exact; onnxruntime runs LayerNorm in float anyway);
- float tensors computed only from integer inputs and constants (attention-mask biases)
  are not activations;
- Add/Mul are layers only with two activation operands (a residual Add, x·sigmoid(x));
  with a constant operand they stay float and take their input from its grid, as an
  integer pipeline folds them into the neighbouring requantization. A chain of Mul/Add/Sub/Div
  by scalar constants, ``y = a·h + b`` (PP-LCNet's learnable affine after each activation), is
  recorded as an :class:`AffineLink`: the plan can give ``y`` the image of ``h``'s grid
  (scale ``a·s_h``) so the export reads ``h``'s integers directly and drops the chain.

Groups are the unit of quantization parameters: every tensor in a group gets the same
scale and zero-point, computed from the union of the members' calibrated ranges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
COMPUTE = {
    "Add", "Mul", "Concat", "AveragePool", "GlobalAveragePool", "Resize", "Sigmoid",
    "LeakyRelu", "HardSigmoid", "HardSwish", "Tanh", "InstanceNormalization",
    "Relu", "Clip", "PRelu",
}
PASS_THROUGH = {
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "MaxPool", "GlobalMaxPool",
    "Identity", "Slice", "Split", "DepthToSpace", "SpaceToDepth", "Expand", "Tile",
}
FUSABLE_ACTIVATIONS = {"Relu", "Clip"}
FLOAT_INPUT = {"LayerNormalization", "Softmax"}  # not layers: their inputs stay float
GATES = {"Sigmoid", "HardSigmoid", "Tanh"}  # fixed-range ops fused into a preceding weighted layer
ELEMENTWISE = {"Add", "Mul"}  # layers only when both operands are activations
FUSE_INTO = WEIGHTED | ELEMENTWISE  # ops a following Relu/Clip fuses into
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                onnx.TensorProto.DOUBLE}


@dataclass(frozen=True)
class Layer:
    """One quantizable node; ``output`` is after any fused activation."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    weight: str | None
    weight_axis: int | None
    bias: str | None
    output: str
    fused: tuple[str, ...] = ()

    @property
    def activations(self) -> tuple[str, ...]:
        return (*self.inputs, self.output)


@dataclass(frozen=True)
class AffineLink:
    """``output = scale · source + shift`` computed by ``nodes`` (Mul/Add/Sub/Div by scalar
    constants, each intermediate read only by the next)."""

    source: str
    scale: float
    shift: float
    nodes: tuple[str, ...]


@dataclass
class LayerGraph:
    """Layers, pass-through links and tensor groups of one prepared float graph."""

    layers: dict[str, Layer]
    passthrough: list[tuple[str, str]]  # (input tensor, output tensor) pairs
    float_tensors: set[str]
    graph_inputs: list[str]
    graph_outputs: list[str]
    initializers: set[str]
    consumers: dict[str, list[onnx.NodeProto]] = field(repr=False)
    producers: dict[str, onnx.NodeProto] = field(repr=False)
    affine: dict[str, AffineLink] = field(default_factory=dict)  # output tensor -> its scalar affine chain

    def activation_tensors(self) -> list[str]:
        """Every tensor that a layer could quantize: what calibration must observe."""
        seen: dict[str, None] = {}
        for layer in self.layers.values():
            for t in layer.activations:
                seen.setdefault(t)
        return list(seen)

    def read_as_float(self, tensor: str) -> bool:
        """Whether every reader of ``tensor`` takes it in float (LayerNormalization, Softmax): a
        layer writing it then leaves it unquantized."""
        readers = self.consumers.get(tensor, [])
        return bool(readers) and all(n.op_type in FLOAT_INPUT for n in readers)

    def layer_of_tensor(self) -> dict[str, str]:
        """Tensor -> the layer that produces it (after fusion), for naming in tables."""
        return {layer.output: layer.name for layer in self.layers.values()}

    def groups(self, tensors: Iterable[str], *, share_concat: bool) -> list[list[str]]:
        """Partition ``tensors`` (plus pass-through outputs linked to them) into groups that
        share parameters. The first member of each group is its root (earliest tensor)."""
        parent: dict[str, str] = {}

        def find(t: str) -> str:
            parent.setdefault(t, t)
            while parent[t] != t:
                parent[t] = parent[parent[t]]
                t = parent[t]
            return t

        def union(a: str, b: str) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra

        wanted = list(dict.fromkeys(tensors))
        for t in wanted:
            find(t)
        # Pass-through outputs join their input's group when the input is quantized.
        changed = True
        while changed:
            changed = False
            for src, dst in self.passthrough:
                if src in parent and find(src) != find(dst):
                    union(src, dst)
                    changed = True
        if share_concat:
            for layer in self.layers.values():
                if layer.op_type == "Concat" and all(t in parent for t in layer.activations):
                    for t in layer.inputs:
                        union(layer.output, t)
        out: dict[str, list[str]] = {}
        for t in parent:
            out.setdefault(find(t), []).append(t)
        return list(out.values())


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _weight_axis(node: onnx.NodeProto, weight_rank: int) -> int:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if _attr(node, "transB", 0) else 1
    return weight_rank - 1  # MatMul: [.., K, N] -> per output column


def _data_independent_of_floats(graph: onnx.GraphProto, inits: dict, types: dict[str, int]) -> set[str]:
    """Float tensors computed only from integer inputs and constants: attention-mask biases
    (−1e4 or −1e38 where a token is padding), position tables. They are not activations:
    quantizing them (or what they are added to) destroys the masked Softmax."""
    static = set(inits) | {i.name for i in graph.input if types.get(i.name) not in _FLOAT_TYPES}
    out: set[str] = set()
    for node in graph.node:  # topological order; an embedding lookup starts real activations
        if node.input and all(not i or i in static for i in node.input) and not (
                node.op_type.startswith("Gather") and types.get(node.output[0]) in _FLOAT_TYPES):
            static.update(o for o in node.output if o)
            out.update(o for o in node.output if o and types.get(o) in _FLOAT_TYPES)
    return out


def _scalar(name: str, inits: dict[str, onnx.TensorProto]) -> float | None:
    t = inits.get(name)
    if t is None or t.data_type not in _FLOAT_TYPES or int(np.prod(t.dims)) != 1:
        return None
    return float(numpy_helper.to_array(t).reshape(()))


def _affine_links(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto], is_act, consumers,
                  graph_outputs: set[str]) -> dict[str, AffineLink]:
    """Chains ``y = a·h + b`` of Mul/Add/Sub/Div by a scalar constant on an activation ``h``."""
    links: dict[str, AffineLink] = {}
    for node in graph.node:  # topological order: a chain's earlier links are already known
        if node.op_type not in ("Mul", "Add", "Sub", "Div") or len(node.input) != 2 or not is_act(node.output[0]):
            continue
        x, c = node.input
        first = True
        if not is_act(x) or _scalar(c, inits) is None:
            x, c, first = c, x, False
        v = _scalar(c, inits)
        if not is_act(x) or v is None:
            continue
        prev = links.get(x)
        if prev is not None and len(consumers.get(x, [])) == 1 and x not in graph_outputs:
            source, a, b, nodes = prev.source, prev.scale, prev.shift, prev.nodes
        else:
            source, a, b, nodes = x, 1.0, 0.0, ()
        op = node.op_type
        if op == "Mul":
            a, b = a * v, b * v
        elif op == "Add":
            b += v
        elif op == "Sub":
            a, b = (a, b - v) if first else (-a, v - b)
        elif first and v != 0:  # Div x / c
            a, b = a / v, b / v
        else:
            continue
        links[node.output[0]] = AffineLink(source, a, b, (*nodes, node.name))
    return links


def find_layers(model: onnx.ModelProto) -> LayerGraph:
    """Find the layers of a prepared float graph (shape inference already run)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    producers = {o: n for n in graph.node for o in n.output if o}
    derived = _data_independent_of_floats(graph, inits, types)
    float_tensors = {name for name, ty in types.items()
                     if ty in _FLOAT_TYPES and name not in inits and name not in derived}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            if i:
                consumers.setdefault(i, []).append(n)
    graph_outputs = [o.name for o in graph.output]
    fused_into: set[str] = set()
    layers: dict[str, Layer] = {}
    passthrough: list[tuple[str, str]] = []

    def is_act(t: str) -> bool:
        return bool(t) and t in float_tensors

    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.name in fused_into:
            continue
        op = node.op_type
        if op in PASS_THROUGH:
            if node.input and is_act(node.input[0]):
                passthrough += [(node.input[0], o) for o in node.output if is_act(o)]
            continue
        if op not in WEIGHTED and op not in COMPUTE:
            continue
        if not node.output or not is_act(node.output[0]):
            continue
        weight = bias = None
        axis = None
        acts = [i for i in node.input if is_act(i)]
        if op in WEIGHTED and len(node.input) > 1 and node.input[1] in inits:
            weight = node.input[1]
            axis = _weight_axis(node, len(inits[weight].dims))
            if len(node.input) > 2 and node.input[2] in inits:
                bias = node.input[2]
            acts = [node.input[0]] if is_act(node.input[0]) else []
        elif op in WEIGHTED and op != "MatMul":
            continue  # Conv/Gemm with a computed weight: leave float
        if not acts or (op in ELEMENTWISE and len(acts) < 2):
            continue  # x·c and x+c ride on their input's grid (requantization absorbs them)
        output = node.output[0]
        fused: list[str] = []
        nxt = consumers.get(output, [])
        fusable = FUSABLE_ACTIVATIONS | (GATES if op in WEIGHTED else set())
        if op in FUSE_INTO and len(nxt) == 1 and nxt[0].op_type in fusable \
                and output not in graph_outputs and is_act(nxt[0].output[0]):
            act = nxt[0]
            if all(i == output or i in inits or not i for i in act.input):
                fused.append(act.name)
                fused_into.add(act.name)
                output = act.output[0]
        layers[node.name] = Layer(node.name, op, tuple(dict.fromkeys(acts)), weight, axis, bias, output,
                                  tuple(fused))
    affine = _affine_links(graph, inits, is_act, consumers, set(graph_outputs))
    return LayerGraph(layers, passthrough, float_tensors, [i.name for i in graph.input if i.name not in inits],
                      graph_outputs, set(inits), consumers, producers, affine)
