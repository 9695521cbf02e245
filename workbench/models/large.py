"""Models over protobuf's 2 GB limit: detect them and write them to disk with external data."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import onnx

#: Serialised size at or above which a model must be saved with external data.
MAX_PROTO_BYTES = 2**31 - 1
WEIGHTS_FILE = "weights.bin"


def is_large(proto: onnx.ModelProto) -> bool:
    """True when ``proto`` cannot be serialised to one protobuf message."""
    return proto.ByteSize() >= MAX_PROTO_BYTES


def save_with_external_data(proto: onnx.ModelProto, directory: str | os.PathLike) -> str:
    """Write a copy of ``proto`` as ``model.onnx`` plus one weights file in ``directory``; return the
    model path. ``proto`` itself is not changed."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    path = os.path.join(os.fspath(directory), "model.onnx")
    onnx.save_model(copy, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=WEIGHTS_FILE, size_threshold=1024)
    return path


@contextlib.contextmanager
def model_file(proto: onnx.ModelProto) -> Iterator[str]:
    """Path of ``proto`` saved (with external data) in a temporary directory, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="workbench-model-", ignore_cleanup_errors=True) as tmp:
        yield save_with_external_data(proto, tmp)


def external_tensors(proto: onnx.ModelProto) -> list[tuple[str, str]]:
    """``(tensor name, location)`` of every initializer whose data lives in an external file."""
    found = []
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            found.append((t.name, loc))
    return found
