"""NHWC (TFLite) ↔ NCHW (ONNX) bookkeeping for rank-4 tensors.

A value is either ``PLAIN`` (the TFLite array as is) or ``NCHW`` (the rank-4 TFLite array
``x`` stored as ``x.transpose(TO_NCHW)``). TFLite axis ``a`` of an NCHW value is ONNX axis
``TO_NHWC[a]``; ONNX axis ``j`` holds TFLite axis ``TO_NCHW[j]``.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

__all__ = ["TO_NCHW", "TO_NHWC", "Layout", "axis_in", "broadcast_const", "perm_rows"]

TO_NCHW = (0, 3, 1, 2)  # onnx_nchw = tflite_nhwc.transpose(TO_NCHW)
TO_NHWC = (0, 2, 3, 1)  # tflite_nhwc = onnx_nchw.transpose(TO_NHWC)


class Layout(StrEnum):
    """How a value stores a TFLite tensor."""

    PLAIN = "plain"
    NCHW = "nchw"


def axis_in(axis: int, rank: int, layout: Layout) -> int:
    """The ONNX axis holding TFLite axis ``axis`` (negative allowed) of a value in ``layout``."""
    a = axis + rank if axis < 0 else axis
    return TO_NHWC[a] if layout is Layout.NCHW else a


def perm_rows(rows: np.ndarray, layout: Layout) -> np.ndarray:
    """Per-axis rows (e.g. PAD's ``[rank, 2]`` paddings) reordered to the ONNX axes of ``layout``."""
    return rows[list(TO_NCHW)] if layout is Layout.NCHW else rows


def broadcast_const(value: np.ndarray, layout: Layout) -> np.ndarray:
    """A constant that broadcasts against a rank-4 TFLite tensor, made to broadcast against its NCHW
    form: left-pad to rank 4 with 1s (numpy broadcasting), then transpose. Scalars stay scalars."""
    if layout is Layout.PLAIN or value.ndim == 0:
        return value
    return value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(TO_NCHW)
