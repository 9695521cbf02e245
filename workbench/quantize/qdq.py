"""Write a plan into the prepared float graph as QuantizeLinear/DequantizeLinear pairs.

- activation T:  T → QuantizeLinear → DequantizeLinear → T_dq, and every consumer reads T_dq
  (graph outputs keep their name and float value);
- activation y = a·h + b of a scalar affine chain that the plan put on h's grid
  (``QuantPlan.affine_sources``): consumers read DequantizeLinear(h's integers, y's scale and
  zero-point), and the chain's Mul/Add nodes are dropped;
- weight W: stored as integers (int8/int4/int16) + DequantizeLinear (per-channel ``axis``);
- bias B: int32 with scale s_in·s_w, zero-point 0, + DequantizeLinear;
- where the plan changes an initializer's value (``QuantPlan.values``: bias correction, depthwise
  equalization) that value is written; bias correction may add a bias input to a Conv/Gemm
  without one, and replaces a MatMul's bias Add constant in float;
- float16 layer: its inputs and output round-trip through float16 (Cast → Cast) and its
  weights are stored as float16 + Cast: an fp16 "island" that runs on any onnxruntime build
  (accumulation stays float32, as on most fp16 hardware);
- float32 layer: left alone (it reads whatever its producers give it).

The simulation *is* the artifact: the file written is exactly the graph that was measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workbench.graph.layers import LayerGraph
from workbench.graph.prepare import QDQ_OPSET
from workbench.models.naming import unique_name
from workbench.numerics import QParams, quantize
from workbench.quantize.plan import QuantPlan


@dataclass(frozen=True)
class QdqModel:
    proto: onnx.ModelProto
    effective: dict[str, str]  # float tensor/initializer -> the name carrying its value in the QDQ graph
    #: DequantizeLinear nodes of activations that nothing in ``proto`` reads (the source of a
    #: dropped affine chain): left out of the file, which onnxruntime would run them in, and put
    #: back by :meth:`with_probes` for comparisons that look at every layer's output
    probes: tuple[onnx.NodeProto, ...] = ()

    def with_probes(self) -> onnx.ModelProto:
        """``proto`` plus the probes: the same numbers, every ``effective`` name computed."""
        if not self.probes:
            return self.proto
        out = onnx.ModelProto()
        out.CopyFrom(self.proto)
        out.graph.node.extend(self.probes)
        return out


def _int_tensor(name: str, q: np.ndarray, qp: QParams) -> TensorProto:
    if qp.bits == 4:
        dtype = TensorProto.INT4 if qp.signed else TensorProto.UINT4
        return helper.make_tensor(name, dtype, q.shape, q.astype(np.int64).ravel().tolist())
    return numpy_helper.from_array(q.astype(qp.np_dtype), name)


def _zero_point(name: str, qp: QParams) -> TensorProto:
    return _int_tensor(name, np.asarray(qp.zero_point), qp)


class _Writer:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.names = {n.name for n in model.graph.node} | {
            t for n in model.graph.node for t in (*n.input, *n.output)} | {
            t.name for t in model.graph.initializer} | {i.name for i in model.graph.input}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []

    def fresh(self, base: str) -> str:
        return unique_name(base, self.names)

    def const(self, tensor: TensorProto) -> str:
        tensor.name = self.fresh(tensor.name)
        self.inits.append(tensor)
        return tensor.name

    def node(self, op: str, inputs: list[str], out_base: str, **attrs) -> str:
        out = self.fresh(out_base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.fresh(f"{out_base}/{op}"), **attrs))
        return out


def build_qdq(prepared: onnx.ModelProto, lg: LayerGraph, plan: QuantPlan,
              weights: dict[str, np.ndarray]) -> QdqModel:
    """A new ModelProto: ``prepared`` with the plan's Q/DQ nodes and fp16 islands."""
    model = onnx.ModelProto()
    model.CopyFrom(prepared)
    weights = {**weights, **plan.values}
    w = _Writer(model)
    rename: dict[str, str] = {}  # tensor -> what its consumers read instead
    group_params: dict[str, tuple[str, str]] = {}
    drop_inits: set[str] = set()

    quantized: dict[str, str] = {}  # activation -> its QuantizeLinear output

    def params(t) -> tuple[str, str]:
        if t.group not in group_params:
            group_params[t.group] = (
                w.const(numpy_helper.from_array(np.asarray(t.qparams.scale, np.float32), f"{t.group}_scale")),
                w.const(_zero_point(f"{t.group}_zero_point", t.qparams)))
        return group_params[t.group]

    for t in plan.tensors.values():
        if t.kind == "activation" and t.name not in plan.affine_sources:
            scale, zp = params(t)
            quantized[t.name] = w.node("QuantizeLinear", [t.name, scale, zp], f"{t.name}_quantized")
            rename[t.name] = w.node("DequantizeLinear", [quantized[t.name], scale, zp], f"{t.name}_dequantized")
        elif t.kind == "weight":
            qp = t.qparams
            axis = {"axis": qp.axis} if qp.axis is not None else {}
            qw = w.const(_int_tensor(f"{t.name}_quantized", quantize(weights[t.name], qp), qp))
            scale = w.const(numpy_helper.from_array(np.asarray(qp.scale, np.float32), f"{t.name}_scale"))
            zp = w.const(_zero_point(f"{t.name}_zero_point", qp))
            rename[t.name] = w.node("DequantizeLinear", [qw, scale, zp], f"{t.name}_dequantized", **axis)
            drop_inits.add(t.name)
    dropped: set[str] = set()
    for y, h in plan.affine_sources.items():  # y = a·h + b: h's integers read on y's grid
        scale, zp = params(plan.tensors[y])
        rename[y] = w.node("DequantizeLinear", [quantized[h], scale, zp], f"{y}_dequantized")
        dropped.update(lg.affine[y].nodes)
    _corrected_biases(model, plan, w)
    for name, scale in plan.bias_scales.items():
        bias = weights[name].astype(np.float64)
        q = np.clip(np.rint(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
        qb = w.const(numpy_helper.from_array(q, f"{name}_quantized"))
        s = w.const(numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"))
        zp = w.const(numpy_helper.from_array(np.zeros(scale.shape, np.int32), f"{name}_zero_point"))
        rename[name] = w.node("DequantizeLinear", [qb, s, zp], f"{name}_dequantized", axis=0)
        drop_inits.add(name)

    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]

    effective = {t: rename.get(t, t) for t in lg.float_tensors} | rename
    _fp16_islands(model, lg, plan, w, {t: rename.get(t, t) for t in lg.float_tensors})
    probes: list[onnx.NodeProto] = []
    if dropped:
        kept = [n for n in model.graph.node if n.name not in dropped]
        del model.graph.node[:]
        model.graph.node.extend(kept)
        read = {i for n in (*kept, *w.nodes) for i in n.input} | {o.name for o in model.graph.output}
        probes = [n for n in w.nodes if n.op_type == "DequantizeLinear" and n.output[0] not in read]
        w.nodes = [n for n in w.nodes if n not in probes]
    _finish(model, w, drop_inits)
    return QdqModel(model, effective, tuple(probes))


def _corrected_biases(model: onnx.ModelProto, plan: QuantPlan, w: _Writer) -> None:
    """Write bias correction into the graph: new bias inputs for Conv/Gemm without one, and the
    corrected values of biases that stay float (those in ``bias_scales`` are quantized later)."""
    by_name = {n.name: n for n in model.graph.node}
    for layer_name, name in plan.added_biases.items():
        if name in w.names:
            raise ValueError(f"bias name {name!r} for layer {layer_name!r} already exists in the graph")
        w.names.add(name)
        node = by_name[layer_name]
        while len(node.input) < 2:
            node.input.append("")
        if len(node.input) == 2:
            node.input.append(name)
        else:
            node.input[2] = name
        if name not in plan.bias_scales:
            w.inits.append(numpy_helper.from_array(plan.values[name].astype(np.float32), name))
    for init in model.graph.initializer:
        if init.name in plan.values and init.name not in plan.bias_scales and init.name not in plan.tensors:
            init.CopyFrom(numpy_helper.from_array(plan.values[init.name].astype(np.float32), init.name))


def _fp16_islands(model: onnx.ModelProto, lg: LayerGraph, plan: QuantPlan, w: _Writer,
                  effective: dict[str, str]) -> None:
    by_name = {n.name: n for n in model.graph.node}
    inits = {t.name: t for t in model.graph.initializer}
    activations = set(effective.values())
    for layer_name in plan.fp16_layers:
        layer = lg.layers[layer_name]
        node = by_name[layer_name]
        for i, name in enumerate(node.input):
            if name in inits and inits[name].data_type == TensorProto.FLOAT:
                half = numpy_helper.to_array(inits[name]).astype(np.float16)
                h = w.const(numpy_helper.from_array(half, f"{name}_fp16"))
                node.input[i] = w.node("Cast", [h], f"{name}_fp16_as_float", to=TensorProto.FLOAT)
            elif name in activations:
                node.input[i] = _round_trip(w, name)
        out = layer.output
        tail = by_name[layer.fused[-1]] if layer.fused else node
        raw = w.fresh(f"{out}_fp32")
        tail.output[0] = raw
        half = w.node("Cast", [raw], f"{out}_fp16", to=TensorProto.FLOAT16)
        w.nodes.append(helper.make_node("Cast", [half], [out], name=w.fresh(f"{out}/Cast"), to=TensorProto.FLOAT))


def _round_trip(w: _Writer, name: str) -> str:
    half = w.node("Cast", [name], f"{name}_fp16", to=TensorProto.FLOAT16)
    return w.node("Cast", [half], f"{name}_fp16_as_float", to=TensorProto.FLOAT)


def _finish(model: onnx.ModelProto, w: _Writer, drop_inits: set[str]) -> None:
    graph = model.graph
    used = {i for n in (*graph.node, *w.nodes) for i in n.input}
    keep = [t for t in graph.initializer if t.name not in drop_inits or t.name in used]
    del graph.initializer[:]
    graph.initializer.extend([*keep, *w.inits])
    # Topological order: a QDQ pair goes right after the producer of its input.
    nodes = _toposort([*graph.node, *w.nodes], {i.name for i in graph.input} | {t.name for t in graph.initializer})
    del graph.node[:]
    graph.node.extend(nodes)
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version < QDQ_OPSET:
            raise ValueError(f"QDQ graphs need opset {QDQ_OPSET}; prepare() should have upgraded the model")


def _toposort(nodes: list[onnx.NodeProto], ready: set[str]) -> list[onnx.NodeProto]:
    available = set(ready) | {""}
    pending = list(nodes)
    out: list[onnx.NodeProto] = []
    waiting: dict[str, list[int]] = {}
    missing = []
    for idx, n in enumerate(pending):
        need = {i for i in n.input if i not in available}
        missing.append(need)
        for i in need:
            waiting.setdefault(i, []).append(idx)
    queue = [idx for idx, need in enumerate(missing) if not need]
    while queue:
        idx = queue.pop(0)
        n = pending[idx]
        out.append(n)
        for o in n.output:
            for j in waiting.pop(o, []):
                missing[j].discard(o)
                if not missing[j]:
                    queue.append(j)
    if len(out) != len(pending):
        stuck = [pending[i].name for i, need in enumerate(missing) if need][:3]
        raise ValueError(f"QDQ graph has a cycle or a dangling input near nodes {stuck}")
    return out
