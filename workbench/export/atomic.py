"""Atomic writes: a temp file in the destination folder, then ``os.replace``. A crash or an
error never leaves a half-written file under the user's name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

from workbench.errors import WorkbenchError


def writable_path(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path whose folder exists, or a clear error."""
    p = Path(path)
    if p.is_dir():
        raise WorkbenchError(f"{what} {str(p)!r} is a folder; give a file name")
    if not p.parent.exists():
        raise WorkbenchError(f"{what} {str(p)!r}: folder {str(p.parent)!r} does not exist; create it first")
    return p


def write_bytes(path: str | os.PathLike, data: bytes, what: str = "output") -> Path:
    p = writable_path(path, what)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_text(path: str | os.PathLike, text: str, what: str = "output") -> Path:
    return write_bytes(path, text.encode("utf-8"), what)


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Save an ONNX model atomically (one file; protobuf's 2 GB limit applies)."""
    if model.ByteSize() > 2**31 - 1:
        raise WorkbenchError("the quantized model is over 2 GB; external-data export is not supported yet")
    return write_bytes(path, model.SerializeToString(), "model output")
