"""Model paths from users: one check, one wording, whatever the format."""

from __future__ import annotations

import os

from workbench.errors import WorkbenchError


def model_file(source: str | os.PathLike, kind: str) -> str:
    """``source`` as a path string; a missing path or a folder is a one-line WorkbenchError.
    ``kind`` names the expected file with its article, e.g. ``"an .onnx"``."""
    path = os.fspath(source)
    if not os.path.exists(path):
        raise WorkbenchError(f"model file not found: {path}")
    if not os.path.isfile(path):
        raise WorkbenchError(f"{path} is not a file; pass the path of {kind} model file")
    return path
