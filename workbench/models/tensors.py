"""Name, shape and dtype of one tensor in an ONNX graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

Dim = int | str | None


@dataclass(frozen=True)
class TensorInfo:
    """What a graph value looks like: ``shape`` holds ints (fixed), strings (symbolic) or ``None``
    (unknown) per axis, or is ``None`` when even the rank is unknown."""

    name: str
    shape: tuple[Dim, ...] | None
    dtype: np.dtype

    @property
    def batch_dynamic(self) -> bool:
        """True when axis 0 is not a fixed int (symbolic, unknown, or unknown rank)."""
        if self.shape is None:
            return True
        return len(self.shape) > 0 and not isinstance(self.shape[0], int)

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def describe(self) -> str:
        """``"x float32 [N,3,32,32]"``: how error messages show what the model takes."""
        return f"{self.name} {dtype_name(self.dtype)} {format_shape(self.shape)}"


def format_shape(shape: tuple[Dim, ...] | None, *, batch: str = "N") -> str:
    """``[N,3,32,32]``: a dynamic batch axis shows as ``batch``, other unknown axes as ``?``."""
    if shape is None:
        return "[unknown rank]"
    dims = []
    for i, d in enumerate(shape):
        if isinstance(d, int):
            dims.append(str(d))
        elif i == 0:
            dims.append(batch)
        else:
            dims.append(d if isinstance(d, str) and d else "?")
    return "[" + ",".join(dims) + "]"


def dtype_name(dtype: np.dtype) -> str:
    return "non-tensor" if dtype == np.dtype(object) else str(dtype)


def onnx_dtype(elem_type: int) -> np.dtype:
    """numpy dtype for an ONNX element type; ``object`` for strings and undefined types."""
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        return np.dtype(object)


def from_value_info(vi: onnx.ValueInfoProto) -> TensorInfo:
    """TensorInfo of a graph input/output/value_info entry (non-tensor types get dtype ``object``)."""
    if vi.type.WhichOneof("value") != "tensor_type":
        return TensorInfo(vi.name, None, np.dtype(object))
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return TensorInfo(vi.name, None, onnx_dtype(tt.elem_type))
    dims: list[Dim] = []
    for d in tt.shape.dim:
        kind = d.WhichOneof("value")
        dims.append(d.dim_value if kind == "dim_value" else d.dim_param if kind == "dim_param" else None)
    return TensorInfo(vi.name, tuple(dims), onnx_dtype(tt.elem_type))


def from_initializer(t: onnx.TensorProto) -> TensorInfo:
    return TensorInfo(t.name, tuple(int(d) for d in t.dims), onnx_dtype(t.data_type))
