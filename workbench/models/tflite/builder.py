"""The ONNX graph under construction: values per TFLite tensor, their layouts, constants and names.

Every TFLite tensor index maps to one ONNX value carrying the TFLite tensor's name (made unique
if the file repeats names). Layout changes are made lazily and cached: a value is transposed at
most once per layout, so a chain of NCHW ops needs no transposes in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from workbench.errors import WorkbenchError
from workbench.models.naming import unique_name
from workbench.models.tflite.layout import TO_NCHW, TO_NHWC, Layout, broadcast_const
from workbench.models.tflite.reader import Operator, Tensor, TfliteModel

__all__ = ["ACTIVATIONS", "Builder", "Value"]

#: TFLite ActivationFunctionType → name (fused into CONV_2D, ADD, ...).
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


@dataclass
class Value:
    """The ONNX value holding a TFLite tensor: ``batched`` when axis 0 is the model's batch."""

    name: str
    layout: Layout
    batched: bool


@dataclass
class Builder:
    """Collects nodes and initializers while the converters walk the TFLite operators in order."""

    model: TfliteModel
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    values: dict[int, Value] = field(default_factory=dict)
    consts: dict[int, np.ndarray] = field(default_factory=dict)  # folded constants (DEQUANTIZE, DENSIFY)
    batch_breaks: list[str] = field(default_factory=list)
    op: Operator | None = None  # the operator being converted
    _names: dict[int, str] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)
    _node_names: set[str] = field(default_factory=set)
    _alt: dict[tuple[int, Layout], str] = field(default_factory=dict)
    _scalars: dict[float, str] = field(default_factory=dict)
    _claimed: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        for t in self.model.tensors:
            self._names[t.index] = self.fresh(t.name or f"tensor_{t.index}")
        self._outputs = set(self.model.outputs)

    # ------------------------------------------------------------------------------------- names
    def fresh(self, base: str) -> str:
        """A value name not used yet: ``base``, else ``base_1``, ``base_2``…"""
        return unique_name(base, self._used)

    def name_of(self, idx: int) -> str:
        """The ONNX value name of TFLite tensor ``idx`` (its TFLite name, unique)."""
        return self._names[idx]

    def claim(self, idx: int, suffix: str = "") -> str:
        """A value/initializer name for tensor ``idx``: its TFLite name the first time, then fresh."""
        if not suffix and idx not in self._claimed:
            self._claimed.add(idx)
            return self.name_of(idx)
        return self.fresh(self.name_of(idx) + suffix)

    def node_name(self, idx: int, suffix: str = "") -> str:
        """A unique node name from the output tensor's name: its first ``;``-separated part
        (TFLite joins the names of fused TF ops with ``;``), plus ``suffix``."""
        return unique_name(self.name_of(idx).split(";")[0] + suffix, self._node_names)

    # ---------------------------------------------------------------------------------- tensors
    def tensor(self, idx: int) -> Tensor:
        return self.model.tensors[idx]

    def shape(self, idx: int) -> tuple[int, ...]:
        return self.model.tensors[idx].shape

    def const(self, idx: int) -> np.ndarray | None:
        """The constant value of tensor ``idx`` (folded constants first), or None."""
        if idx in self.consts:
            return self.consts[idx]
        return self.model.tensors[idx].data

    def need_const(self, idx: int, what: str) -> np.ndarray:
        value = self.const(idx)
        if value is None:
            raise self.unsupported(f"its {what} (tensor {self.name_of(idx)!r}) is computed at run time; "
                                   "the importer needs it constant")
        return value

    def layout(self, idx: int) -> Layout:
        v = self.values.get(idx)
        return v.layout if v is not None else Layout.PLAIN

    def batched(self, idx: int) -> bool:
        v = self.values.get(idx)
        return v is not None and v.batched

    def unsupported(self, why: str) -> WorkbenchError:
        op = self.op
        assert op is not None
        out = self.name_of(op.outputs[0]) if op.outputs else "?"
        return WorkbenchError(f"operator {op.index} ({op.kind}, output {out!r}): {why}")

    def break_batch(self, why: str) -> None:
        """Record that the graph needs batch 1 (axis 0 is not a pure batch axis here)."""
        op = self.op
        where = f"{op.kind} {self.name_of(op.outputs[0])!r}" if op is not None and op.outputs else "the model"
        self.batch_breaks.append(f"{where}: {why}")

    # ------------------------------------------------------------------------------- ONNX values
    def init(self, base: str | int, array: np.ndarray) -> str:
        """Add an initializer named after tensor ``base`` (an index: its TFLite name) or a fresh
        name derived from ``base`` (a string)."""
        name = self.claim(base) if isinstance(base, int) else self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, base: str, values: Any) -> str:
        return self.init(base, np.asarray(values, np.int64).reshape(-1))

    def get(self, idx: int, layout: Layout | None = None) -> str:
        """The ONNX name of tensor ``idx`` in ``layout`` (default: as produced); constants become
        initializers (transposed at import for NCHW), values get one cached Transpose."""
        want = layout or self.layout(idx)
        if (idx, want) in self._alt:
            return self._alt[(idx, want)]
        if idx not in self.values:
            value = self.const(idx)
            if value is None:
                raise WorkbenchError(f"tensor {self.name_of(idx)!r} is read before any operator writes it; "
                                     "the .tflite graph is malformed — re-convert the model")
            if want is Layout.NCHW:
                name = self.init(self.name_of(idx) + "/nchw", value.transpose(TO_NCHW))
            else:
                name = self.init(idx, value)
        elif want is self.layout(idx):
            return self.values[idx].name
        else:
            src = self.values[idx].name
            to_plain = want is Layout.PLAIN
            # A graph output produced in NCHW gets its TFLite name on the transpose back.
            name = self.claim(idx) if to_plain and idx in self._outputs else \
                self.fresh(self.name_of(idx) + ("/nhwc" if to_plain else "/nchw"))
            self.node("Transpose", [src], [name], self.node_name(idx, "/to_nhwc" if to_plain else "/to_nchw"),
                      perm=list(TO_NHWC if to_plain else TO_NCHW))
        self._alt[(idx, want)] = name
        return name

    def get_bcast(self, idx: int, layout: Layout) -> str:
        """Operand ``idx`` of a broadcasting op whose rank-4 operands are in ``layout``: constants of
        lower rank are reshaped to broadcast against the NCHW form."""
        value = self.const(idx) if idx not in self.values else None
        if value is not None and layout is Layout.NCHW and value.ndim < 4:
            key = (idx, Layout.NCHW)
            if key not in self._alt:
                self._alt[key] = self.init(self.name_of(idx) + "/nchw", broadcast_const(value, layout))
            return self._alt[key]
        return self.get(idx, layout)

    def node(self, op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))

    def define(self, idx: int, layout: Layout, batched: bool | None = None) -> str:
        """Register the value an op writes for tensor ``idx``; returns the name to write. ``batched``
        defaults to: any input of the current op is batched. A graph output written in NCHW gets
        ``<name>/nchw`` here, and its TFLite name on the transpose back."""
        if batched is None:
            batched = self.op is not None and any(self.batched(i) for i in self.op.inputs if i >= 0)
        t = self.tensor(idx)
        if layout is Layout.NCHW and len(t.shape) != 4:
            layout = Layout.PLAIN
        name = self.fresh(self.name_of(idx) + "/nchw") if layout is Layout.NCHW and idx in self._outputs \
            else self.claim(idx)
        self.values[idx] = Value(name, layout, batched)
        return name

    def emit(self, op_type: str, inputs: list[str], idx: int, layout: Layout, *, act: int = 0,
             batched: bool | None = None, **attrs: Any) -> str:
        """One ONNX node writing tensor ``idx`` (then the fused activation ``act``, if any)."""
        out = self.define(idx, layout, batched)
        name = self.node_name(idx)
        if not act:
            self.node(op_type, inputs, [out], name, **attrs)
            return out
        pre = self.fresh(self.name_of(idx) + "/pre_act")
        self.node(op_type, inputs, [pre], name, **attrs)
        self.activation(act, pre, out, idx)
        return out

    def activation(self, act: int, src: str, dst: str, idx: int) -> None:
        kind = ACTIVATIONS.get(act, f"activation {act}")
        name = self.node_name(idx, "/" + kind.lower())
        if kind == "RELU":
            self.node("Relu", [src], [dst], name)
        elif kind == "TANH":
            self.node("Tanh", [src], [dst], name)
        elif kind in ("RELU6", "RELU_N1_TO_1"):
            lo, hi = (0.0, 6.0) if kind == "RELU6" else (-1.0, 1.0)
            self.node("Clip", [src, self.scalar(lo), self.scalar(hi)], [dst], name)
        else:
            raise self.unsupported(f"fused activation {kind} is not supported")

    def scalar(self, value: float) -> str:
        """A shared float32 scalar initializer (Clip bounds)."""
        if value not in self._scalars:
            self._scalars[value] = self.init(f"const/{value:g}", np.array(value, np.float32))
        return self._scalars[value]
