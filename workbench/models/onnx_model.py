"""Load an ONNX model into a validated, opset ≥ 13, shape-inferred :class:`LoadedModel`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, numpy_helper

from workbench.errors import WorkbenchError
from workbench.models import large, validate
from workbench.models.files import model_file
from workbench.models.naming import ensure_unique_node_names
from workbench.models.opset import clean_message, opset_of, upgrade_opset
from workbench.models.tensors import TensorInfo, from_initializer, from_value_info

__all__ = ["MIN_OPSET", "LoadedModel", "TensorInfo", "load_model", "load_onnx", "upgrade_opset"]

#: Models below this ai.onnx opset are upgraded on load (per-channel Q/DQ ``axis`` needs 13).
MIN_OPSET = 13

_TORCH_SUFFIXES = (".pt2", ".pt", ".pth", ".ep")


@dataclass
class LoadedModel:
    """A checked ONNX model and the facts peers need about it."""

    proto: onnx.ModelProto
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    source: str
    format: str = "onnx"
    original_opset: int = 0  # 0: take the proto's opset
    notes: list[str] = field(default_factory=list)
    #: For converted models (TFLite, PyTorch): runs the *original* model in its own runtime on
    #: one feed (ONNX input names → arrays) and returns its outputs keyed by ONNX output name.
    source_runtime: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = field(
        default=None, repr=False, compare=False)
    #: Output SQNR (dB) of onnxruntime vs the source runtime, measured at import (None: not yet).
    parity_sqnr_db: dict[str, float] | None = None
    #: PyTorch models: the original module (an ``nn.Module``; a .pt2's ``ExportedProgram.module()``), for QAT.
    module: Any = field(default=None, repr=False, compare=False)
    #: PyTorch models: the example inputs it was traced with, as ``(args, kwargs)``.
    example_inputs: Any = field(default=None, repr=False, compare=False)
    #: PyTorch models: ONNX initializer name → the module's parameter/buffer qualified name it holds.
    parameter_map: dict[str, str] = field(default_factory=dict)
    #: Mapped initializers that are not the parameter as is: ``"transpose"`` (2-D, MatMul layout) or
    #: ``"fold_bn:<bn module>"`` (Conv weight/bias with that BatchNorm folded in).
    parameter_transform: dict[str, str] = field(default_factory=dict)
    _inits: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)
    _inits_of: onnx.ModelProto | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.original_opset:
            self.original_opset = opset_of(self.proto)

    def opset(self) -> int:
        """The current ai.onnx opset of ``proto``."""
        return opset_of(self.proto)

    def initializers(self) -> dict[str, np.ndarray]:
        """Initializer name → array (cached until ``proto`` is replaced). Reads external data if needed."""
        if self._inits is None or self._inits_of is not self.proto:
            base = os.path.dirname(self.source) if os.path.isfile(self.source) else ""
            self._inits = {t.name: numpy_helper.to_array(t, base) for t in self.proto.graph.initializer}
            self._inits_of = self.proto
        return self._inits

    def tensor_types(self) -> dict[str, TensorInfo]:
        """TensorInfo of every named value in the main graph: inputs, outputs, value_info, initializers."""
        g = self.proto.graph
        types = {vi.name: from_value_info(vi) for vi in g.value_info}
        types.update((vi.name, from_value_info(vi)) for vi in g.output)
        types.update((vi.name, from_value_info(vi)) for vi in g.input)
        types.update((t.name, from_initializer(t)) for t in g.initializer)
        return types


def load_model(source: str | os.PathLike | bytes | onnx.ModelProto | object, *,
               example_inputs: Any = None) -> LoadedModel:
    """Load a model: an ONNX file, bytes or ModelProto, a .tflite file, or PyTorch (an ``nn.Module``, an
    ``ExportedProgram``, a torch.export ``.pt2``). ``example_inputs`` is what a PyTorch model is traced with
    (see :func:`workbench.models.pytorch.load_torch`); other formats ignore it."""
    if isinstance(source, onnx.ModelProto | bytes | bytearray | memoryview):
        return load_onnx(source)
    if isinstance(source, str | os.PathLike):
        suffix = Path(source).suffix.lower()
        if suffix == ".tflite":  # NHWC in/out as in TFLite, NCHW Convs inside; source_runtime: the interpreter
            from workbench.models.tflite import load_tflite

            return load_tflite(source)
        if suffix in _TORCH_SUFFIXES:  # .pt2/.ep: torch.export programs (example_inputs override theirs)
            from workbench.models.pytorch import load_torch

            return load_torch(source, example_inputs)
        return load_onnx(source)
    if any(c.__module__.startswith("torch") for c in type(source).__mro__):  # nn.Module, ExportedProgram
        from workbench.models.pytorch import load_torch

        return load_torch(source, example_inputs)
    raise WorkbenchError(f"cannot load a model from a {type(source).__name__}; pass a path to an .onnx file, "
                         "its bytes, or an onnx.ModelProto")


def load_onnx(source: str | os.PathLike | bytes | onnx.ModelProto) -> LoadedModel:
    """Parse, check, shape-infer and (below opset 13) upgrade an ONNX model; make node names unique.

    WorkbenchError naming the source and the problem for anything that is not a model onnxruntime runs.
    """
    proto, label = _read(source)
    try:
        return _prepare(proto, label)
    except WorkbenchError as e:
        raise WorkbenchError(f"{label}: {e}") from None


def _read(source: str | os.PathLike | bytes | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(source, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        external = large.external_tensors(proto)
        if external:
            name, loc = external[0]
            raise WorkbenchError(f"the ModelProto keeps initializer {name!r} in external file {loc!r}; "
                                 "load it with onnx.load(path) (which reads external data) or pass the path")
        return _require_model(proto, "<ModelProto>"), "<ModelProto>"
    if isinstance(source, bytes | bytearray | memoryview):
        return _parse(bytes(source), "<bytes>"), "<bytes>"
    if not isinstance(source, str | os.PathLike):
        raise WorkbenchError(f"cannot load ONNX from a {type(source).__name__}; "
                             "pass a path, bytes or an onnx.ModelProto")
    path = model_file(source, "an .onnx")
    with open(path, "rb") as f:
        proto = _parse(f.read(), path)
    _load_external(proto, path)
    return proto, path


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    if not data:
        raise WorkbenchError(f"{label} is empty; re-export or re-download the model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError:
        raise WorkbenchError(f"{label} is not an ONNX model or is truncated (protobuf parse failed); "
                             "re-export or re-download the model") from None
    return _require_model(proto, label)


def _require_model(proto: onnx.ModelProto, label: str) -> onnx.ModelProto:
    if not proto.HasField("graph") or proto.ir_version <= 0 or not proto.opset_import:
        raise WorkbenchError(f"{label} is not an ONNX model (no graph, IR version or opset import); "
                             "re-export or re-download the model")
    return proto


def _load_external(proto: onnx.ModelProto, path: str) -> None:
    base = os.path.dirname(os.path.abspath(path))
    for name, loc in large.external_tensors(proto):
        if not loc or not os.path.isfile(os.path.join(base, loc)):
            raise WorkbenchError(f"{path}: initializer {name!r} keeps its data in {loc!r}, which is missing "
                                 f"from {base}; copy the external data file next to the model")
    try:
        external_data_helper.load_external_data_for_model(proto, base)
    except Exception as e:
        raise WorkbenchError(f"{path}: cannot read external data: {clean_message(e)}") from None


def _prepare(proto: onnx.ModelProto, label: str) -> LoadedModel:
    notes: list[str] = []
    original = opset_of(proto)
    if original < MIN_OPSET:
        old_error = validate.check(proto)
        try:
            proto = upgrade_opset(proto, MIN_OPSET)
        except WorkbenchError as e:
            suffix = f" (onnx.checker: {old_error})" if old_error else ""
            raise WorkbenchError(f"{e}{suffix}") from None
        notes.append(f"upgraded opset {original} → {MIN_OPSET}")
        if old_error and validate.check(proto) is None:
            notes.append(f"valid only after the opset upgrade (at opset {original}: {old_error})")
    with large.model_file(proto) if large.is_large(proto) else contextlib.nullcontext() as path:
        check_error = validate.check(proto, path)
        proto, infer_error = validate.infer_shapes(proto, path)
        notes.extend(ensure_unique_node_names(proto.graph))
        init_names = {t.name for t in proto.graph.initializer}
        inputs = [from_value_info(vi) for vi in proto.graph.input if vi.name not in init_names]
        if not inputs:
            raise WorkbenchError("the model has no inputs (every graph input is an initializer, or there "
                                 "are none); workbench feeds data to graph inputs, so export it with one")
        ort_error = validate.ort_load_error(proto, path)
    if ort_error:
        also = f"onnx.checker: {check_error}" if check_error else f"shape inference: {infer_error}"
        extra = f" ({also})" if check_error or infer_error else ""
        raise WorkbenchError(f"onnxruntime cannot load the model: {ort_error}{extra}; fix or re-export it")
    if check_error:
        notes.append(f"onnx.checker: {check_error}")
    if infer_error:
        notes.append(f"shape inference (strict): {infer_error}")
    outputs = [from_value_info(vi) for vi in proto.graph.output]
    return LoadedModel(proto=proto, inputs=inputs, outputs=outputs, source=label, original_opset=original,
                       notes=notes)
