"""Read a ``.tflite`` flatbuffer into plain dataclasses (no flatbuffer objects escape this module).

Only the first subgraph is read (the model's main function). Constant buffers become numpy
arrays in the tensor's own dtype; sparse constants are densified (see :mod:`.sparse`), so the
DENSIFY op is a no-op for the converters.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.models.files import model_file
from workbench.models.tflite.sparse import DimLevel, densify

__all__ = ["Operator", "Quantization", "Tensor", "TfliteModel", "read_tflite"]

# TFLite TensorType → numpy dtype (types without a numpy equivalent are left out).
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
           9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}
_TYPE_NAMES = {5: "STRING", 8: "COMPLEX64", 11: "COMPLEX128", 13: "RESOURCE", 14: "VARIANT", 17: "INT4",
               18: "BFLOAT16"}


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: ``real = scale · (q − zero_point)`` along ``axis``."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int


@dataclass
class Tensor:
    """One TFLite tensor. ``data`` is set for constants; ``signature`` has −1 for dynamic dims."""

    index: int
    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    dtype: np.dtype | None  # None: a type numpy cannot hold (string, resource, ...)
    type_name: str
    data: np.ndarray | None = field(default=None, repr=False)
    quantization: Quantization | None = None
    sparse: bool = False


@dataclass
class Operator:
    """One TFLite operator: ``opcode`` is the builtin name (``CONV_2D``) or ``CUSTOM``."""

    index: int
    opcode: str
    custom_code: str
    version: int
    inputs: tuple[int, ...]  # −1: an optional input that is absent
    outputs: tuple[int, ...]
    options: dict[str, Any]
    custom_options: bytes = b""

    @property
    def kind(self) -> str:
        """The op as users know it: ``CONV_2D`` or ``CUSTOM:Convolution2DTransposeBias``."""
        return f"CUSTOM:{self.custom_code}" if self.opcode == "CUSTOM" else self.opcode


@dataclass
class TfliteModel:
    """The main subgraph of a TFLite model."""

    path: str
    version: int
    description: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    subgraphs: int
    metadata: dict[str, bytes] = field(default_factory=dict, repr=False)


def read_tflite(path: str | os.PathLike) -> TfliteModel:
    """Parse ``path``; a missing, empty, non-TFLite or truncated file is a one-line WorkbenchError."""
    path = model_file(path, "a .tflite")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise WorkbenchError(f"{path} is not a TFLite model (no 'TFL3' flatbuffer identifier); "
                             "re-export or re-download the .tflite file")
    try:
        import tflite
    except ImportError:
        raise WorkbenchError("the TFLite importer needs the 'tflite' package; "
                             "pip install 'workbench[tflite]'") from None
    try:
        return _read(tflite, path, data)
    except WorkbenchError:
        raise
    except Exception as e:  # struct.error, IndexError, ValueError from reading past the buffer
        raise WorkbenchError(f"{path} is not a valid TFLite model or is truncated ({type(e).__name__}: "
                             f"{_one_line(e)}); re-export or re-download the .tflite file") from None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200] or "no detail"


def _read(tflite: Any, path: str, data: bytes) -> TfliteModel:
    m = tflite.Model.GetRootAsModel(data, 0)
    if m.SubgraphsLength() < 1:
        raise WorkbenchError(f"{path}: the TFLite model has no subgraph; re-export it")
    sg = m.Subgraphs(0)
    blobs = [_buffer_bytes(m.Buffers(i), data) for i in range(m.BuffersLength())]  # touches every table
    tensors = [_tensor(tflite, sg.Tensors(i), i, blobs) for i in range(sg.TensorsLength())]
    codes = [_opcode(tflite, m.OperatorCodes(i)) for i in range(m.OperatorCodesLength())]
    operators = [_operator(tflite, sg.Operators(i), i, codes) for i in range(sg.OperatorsLength())]
    metadata = {}
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        name = (md.Name() or b"").decode("utf-8", "replace")
        metadata[name] = blobs[md.Buffer()] if md.Buffer() < len(blobs) else b""
    return TfliteModel(path=path, version=m.Version(), description=(m.Description() or b"").decode("utf-8", "replace"),
                       tensors=tensors, operators=operators, inputs=[int(i) for i in _ints(sg.InputsAsNumpy())],
                       outputs=[int(i) for i in _ints(sg.OutputsAsNumpy())], subgraphs=m.SubgraphsLength(),
                       metadata=metadata)


def _ints(a: Any) -> np.ndarray:
    """flatbuffers returns 0 for an absent vector."""
    return np.zeros(0, np.int64) if isinstance(a, int) else np.asarray(a, np.int64)


def _buffer_bytes(buf: Any, data: bytes) -> bytes:
    """A buffer's bytes: inline, or (models over 2 GB) at ``offset`` past the flatbuffer."""
    if buf.Offset() > 1:
        start, size = buf.Offset(), buf.Size()
        if start + size > len(data):
            raise ValueError(f"buffer at offset {start} of {size} bytes lies past the end of the file")
        return data[start:start + size]
    raw = buf.DataAsNumpy()
    return b"" if isinstance(raw, int) else raw.tobytes()


def _tensor(tflite: Any, t: Any, index: int, blobs: list[bytes]) -> Tensor:
    name = (t.Name() or b"").decode("utf-8", "replace")
    shape = tuple(int(d) for d in _ints(t.ShapeAsNumpy()))
    signature = tuple(int(d) for d in _ints(t.ShapeSignatureAsNumpy())) if t.ShapeSignatureLength() else shape
    dtype = np.dtype(_DTYPES[t.Type()]) if t.Type() in _DTYPES else None
    type_name = str(np.dtype(dtype)) if dtype is not None else _TYPE_NAMES.get(t.Type(), f"type {t.Type()}")
    out = Tensor(index=index, name=name, shape=shape, signature=signature, dtype=dtype, type_name=type_name)
    q = t.Quantization()
    if q is not None and q.ScaleLength() > 0:
        out.quantization = Quantization(scale=np.asarray(q.ScaleAsNumpy(), np.float32),
                                        zero_point=_ints(q.ZeroPointAsNumpy()), axis=q.QuantizedDimension())
    raw = blobs[t.Buffer()] if 0 < t.Buffer() < len(blobs) else b""
    if raw and dtype is not None:
        values = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
        sparsity = t.Sparsity()
        if sparsity is not None:
            out.data, out.sparse = _densify(tflite, sparsity, values, shape), True
        else:
            if values.size != int(np.prod(shape)):
                raise ValueError(f"tensor {name!r}: buffer holds {values.size} values for shape {list(shape)}")
            out.data = values.reshape(shape)
    return out


def _densify(tflite: Any, s: Any, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    def vector(kind: int, table: Any) -> np.ndarray:
        cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]
        v = cls()
        v.Init(table.Bytes, table.Pos)
        return _ints(v.ValuesAsNumpy())

    levels = []
    for i in range(s.DimMetadataLength()):
        d = s.DimMetadata(i)
        if d.Format() == 0:
            levels.append(DimLevel(dense=True, dense_size=d.DenseSize()))
        else:
            levels.append(DimLevel(dense=False, segments=vector(d.ArraySegmentsType(), d.ArraySegments()),
                                   indices=vector(d.ArrayIndicesType(), d.ArrayIndices())))
    order = tuple(int(i) for i in _ints(s.TraversalOrderAsNumpy()))
    block_map = tuple(int(i) for i in _ints(s.BlockMapAsNumpy()))
    return densify(values, shape, order, block_map, levels)


def _opcode(tflite: Any, oc: Any) -> tuple[str, str, int]:
    code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
    name = tflite.BUILTIN_OPCODE2NAME.get(code, f"BUILTIN_{code}")
    return name, (oc.CustomCode() or b"").decode("utf-8", "replace"), oc.Version()


_OPTION_CLASSES: dict[tuple[str, int], str] = {}


def _option_class(tflite: Any, enum: str, kind: int) -> str | None:
    if not _OPTION_CLASSES:
        for enum_name in ("BuiltinOptions", "BuiltinOptions2"):
            for attr, value in vars(getattr(tflite, enum_name)).items():
                if not attr.startswith("_") and isinstance(value, int):
                    _OPTION_CLASSES[(enum_name, value)] = attr
    return _OPTION_CLASSES.get((enum, kind))


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _fields(obj: Any) -> dict[str, Any]:
    """Every scalar or vector field of a flatbuffer options table, as snake_case keys."""
    out: dict[str, Any] = {}
    cls = type(obj)
    for attr in dir(cls):
        if attr.startswith("_") or attr in ("Init",) or attr.startswith("GetRootAs") \
                or attr.endswith(("Length", "IsNone", "AsNumpy", "BufferHasIdentifier")):
            continue
        if hasattr(cls, attr + "AsNumpy"):
            out[_snake(attr)] = _ints(getattr(obj, attr + "AsNumpy")())
            continue
        try:
            value = getattr(obj, attr)()
        except TypeError:  # a method that takes arguments
            continue
        if isinstance(value, int | float | bool | bytes):
            out[_snake(attr)] = value
    return out


def _operator(tflite: Any, op: Any, index: int, codes: list[tuple[str, str, int]]) -> Operator:
    name, custom, version = codes[op.OpcodeIndex()]
    options: dict[str, Any] = {}
    for enum, kind, table in (("BuiltinOptions", op.BuiltinOptionsType(), op.BuiltinOptions),
                              ("BuiltinOptions2", op.BuiltinOptions2Type(), op.BuiltinOptions2)):
        cls_name = _option_class(tflite, enum, kind) if kind else None
        if cls_name and hasattr(tflite, cls_name):
            t = table()
            obj = getattr(tflite, cls_name)()
            obj.Init(t.Bytes, t.Pos)
            options.update(_fields(obj))
    raw = op.CustomOptionsAsNumpy()
    custom_options = b"" if isinstance(raw, int) else raw.tobytes()
    return Operator(index=index, opcode=name, custom_code=custom, version=version,
                    inputs=tuple(int(i) for i in _ints(op.InputsAsNumpy())),
                    outputs=tuple(int(i) for i in _ints(op.OutputsAsNumpy())),
                    options=options, custom_options=custom_options)
