"""Converters for shape ops: reshape, concat, pad, reductions, split, slice, transpose, gather, cast.

Ops whose meaning depends on the element order (RESHAPE, GATHER, STRIDED_SLICE with shrink axes,
FULLY_CONNECTED) read their input in the TFLite layout; the rest keep an NCHW input NCHW and move
their axis arguments with it (TFLite axis ``a`` is ONNX axis ``TO_NHWC[a]``).

Batch: a reshape ``[1, …] → [1, …]`` of a batched tensor becomes ``[-1, …]`` (``-1`` then
resolves to the batch); any op that touches axis 0 of a batched tensor otherwise records why the
graph keeps batch 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from onnx import helper

from workbench.models.tflite.builder import Builder
from workbench.models.tflite.layout import TO_NCHW, TO_NHWC, Layout, axis_in, perm_rows
from workbench.models.tflite.ops_math import operand_layout
from workbench.models.tflite.reader import Operator

__all__ = ["CONVERTERS"]

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


def _reshape(b: Builder, op: Operator) -> None:
    """RESHAPE / SQUEEZE / EXPAND_DIMS: a Reshape to the output tensor's (static) shape."""
    x, out = op.inputs[0], op.outputs[0]
    target = list(b.shape(out))
    if b.batched(x):
        if b.shape(x)[:1] == (1,) and target[:1] == [1]:
            target[0] = -1
        else:
            b.break_batch(f"reshapes {list(b.shape(x))} to {target}, moving the batch axis")
    b.emit("Reshape", [b.get(x, Layout.PLAIN), b.ints(b.name_of(out) + "/shape", target)], out, Layout.PLAIN)


def _concat(b: Builder, op: Operator) -> None:
    ins = [i for i in op.inputs if i >= 0]
    out = op.outputs[0]
    rank = len(b.shape(out))
    layout = operand_layout(b, ins) if rank == 4 else Layout.PLAIN
    axis = op.options.get("axis", 0)
    axis = axis + rank if axis < 0 else axis
    batched = [b.batched(i) for i in ins]
    if any(batched) and (axis == 0 or not all(batched)):
        b.break_batch("concatenates along the batch axis or with a constant of batch 1")
    b.emit("Concat", [b.get(i, layout) for i in ins], out, layout, act=op.options.get("fused_activation_function", 0),
           axis=axis_in(axis, rank, layout))


def _pad(mode: str) -> Callable[[Builder, Operator], None]:
    """PAD / PADV2 / MIRROR_PAD: paddings ``[rank, 2]`` → ONNX ``pads = begins + ends``, rows in the
    input's layout."""
    def convert(b: Builder, op: Operator) -> None:
        x, out = op.inputs[0], op.outputs[0]
        layout = b.layout(x)
        rows = np.asarray(b.need_const(op.inputs[1], "paddings"), np.int64).reshape(-1, 2)
        if b.batched(x) and rows[0].any():
            b.break_batch("pads the batch axis")
        rows = perm_rows(rows, layout) if len(rows) == 4 else rows
        inputs = [b.get(x), b.ints(b.name_of(out) + "/pads", np.concatenate([rows[:, 0], rows[:, 1]]))]
        onnx_mode = mode
        if op.opcode == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            inputs.append(b.get(op.inputs[2]))
        if op.opcode == "MIRROR_PAD":
            if op.options.get("mode", 0) != 0:
                raise b.unsupported("MIRROR_PAD mode SYMMETRIC has no ONNX equivalent; only REFLECT is supported")
            onnx_mode = "reflect"
        b.emit("Pad", inputs, out, layout, mode=onnx_mode)

    return convert


def _reduce(onnx_op: str) -> Callable[[Builder, Operator], None]:
    """MEAN, SUM, REDUCE_*: axes move with the layout; without keep_dims an NCHW input is reduced
    in place only when the kept axes stay in TFLite order (e.g. a mean over H, W leaves ``[N, C]``)."""
    def convert(b: Builder, op: Operator) -> None:
        x, out = op.inputs[0], op.outputs[0]
        rank = len(b.shape(x))
        axes = sorted({int(a) % rank for a in np.asarray(b.need_const(op.inputs[1], "axes")).reshape(-1)})
        keep = bool(op.options.get("keep_dims", False))
        if b.batched(x) and 0 in axes:
            b.break_batch("reduces over the batch axis")
        layout = b.layout(x)
        if layout is Layout.NCHW and not keep:
            kept = [a for a in TO_NCHW if a not in axes]  # TFLite axes in NCHW storage order
            if kept != sorted(kept):
                layout = Layout.PLAIN
        onnx_axes = [axis_in(a, rank, layout) for a in axes]
        b.emit(onnx_op, [b.get(x, layout), b.ints(b.name_of(out) + "/axes", onnx_axes)], out,
               layout if keep else Layout.PLAIN, keepdims=int(keep))

    return convert


def _split_outputs(b: Builder, op: Operator, x: int, axis: int, sizes: list[int]) -> None:
    rank = len(b.shape(x))
    axis = axis + rank if axis < 0 else axis
    if b.batched(x) and axis == 0:
        b.break_batch("splits the batch axis")
    layout = b.layout(x)
    outs = [b.define(i, layout) for i in op.outputs]
    b.node("Split", [b.get(x), b.ints(b.name_of(op.outputs[0]) + "/split", sizes)], outs,
           b.node_name(op.outputs[0]), axis=axis_in(axis, rank, layout))


def _split(b: Builder, op: Operator) -> None:
    axis = int(np.asarray(b.need_const(op.inputs[0], "axis")).reshape(-1)[0])
    x = op.inputs[1]
    _split_outputs(b, op, x, axis, [b.shape(o)[axis] for o in op.outputs])


def _split_v(b: Builder, op: Operator) -> None:
    x = op.inputs[0]
    axis = int(np.asarray(b.need_const(op.inputs[2], "axis")).reshape(-1)[0])
    _split_outputs(b, op, x, axis, [b.shape(o)[axis] for o in op.outputs])


def _slice_node(b: Builder, op: Operator, x: int, layout: Layout, starts: list[int], ends: list[int],
                steps: list[int], out: str) -> None:
    """Slice over every axis except a batched axis 0 taken whole."""
    rank = len(b.shape(x))
    axes = list(range(rank))
    if b.batched(x):
        whole = starts[0] == 0 and ends[0] >= b.shape(x)[0] and steps[0] == 1
        if whole:
            axes, starts, ends, steps = axes[1:], starts[1:], ends[1:], steps[1:]
        else:
            b.break_batch("slices the batch axis")
    base = b.name_of(op.outputs[0])
    b.node("Slice", [b.get(x, layout), b.ints(base + "/starts", starts), b.ints(base + "/ends", ends),
                     b.ints(base + "/axes", [axis_in(a, rank, layout) for a in axes]),
                     b.ints(base + "/steps", steps)], [out], b.node_name(op.outputs[0]))


def _slice(b: Builder, op: Operator) -> None:
    x, out = op.inputs[0], op.outputs[0]
    shape = b.shape(x)
    begin = [int(v) for v in np.asarray(b.need_const(op.inputs[1], "begin")).reshape(-1)]
    size = [int(v) for v in np.asarray(b.need_const(op.inputs[2], "size")).reshape(-1)]
    ends = [d if s < 0 else bg + s for bg, s, d in zip(begin, size, shape, strict=True)]
    layout = b.layout(x)
    _slice_node(b, op, x, layout, begin, ends, [1] * len(shape), b.define(out, layout))


def _strided_slice(b: Builder, op: Operator) -> None:
    """begin/end masks take the whole axis; shrink_axis keeps one element and drops the axis
    (a Squeeze after the Slice); ellipsis and new-axis masks are not supported."""
    x, out = op.inputs[0], op.outputs[0]
    o = op.options
    if o.get("ellipsis_mask", 0) or o.get("new_axis_mask", 0):
        raise b.unsupported("STRIDED_SLICE with ellipsis_mask or new_axis_mask is not supported")
    shape = b.shape(x)
    rank = len(shape)

    def vec(i: int, what: str) -> list[int]:
        v = [int(a) for a in np.asarray(b.need_const(op.inputs[i], what)).reshape(-1)]
        return v + [0 if what != "strides" else 1] * (rank - len(v))

    begin, end, strides = vec(1, "begin"), vec(2, "end"), vec(3, "strides")
    if o.get("offset"):
        end = [bg + e for bg, e in zip(begin, end, strict=True)]
    shrink = o.get("shrink_axis_mask", 0)
    starts, ends = [], []
    for a in range(rank):
        s, e, st = begin[a], end[a], strides[a]
        if shrink >> a & 1:
            starts.append(s)
            ends.append(_INT64_MAX if s == -1 else s + 1)
            continue
        if o.get("begin_mask", 0) >> a & 1:
            s = 0 if st > 0 else _INT64_MAX
        if o.get("end_mask", 0) >> a & 1:
            e = _INT64_MAX if st > 0 else _INT64_MIN
        starts.append(s)
        ends.append(e)
    if not shrink:
        layout = b.layout(x)
        _slice_node(b, op, x, layout, starts, ends, strides, b.define(out, layout))
        return
    if b.batched(x) and shrink & 1:
        b.break_batch("STRIDED_SLICE drops the batch axis")
    sliced = b.fresh(b.name_of(out) + "/slice")
    _slice_node(b, op, x, Layout.PLAIN, starts, ends, strides, sliced)
    dropped = [a for a in range(rank) if shrink >> a & 1]
    b.emit("Squeeze", [sliced, b.ints(b.name_of(out) + "/axes", dropped)], out, Layout.PLAIN)


def _transpose(b: Builder, op: Operator) -> None:
    """An NCHW input folds its layout into the permutation: ``out = x_nchw.transpose(TO_NHWC[perm])``."""
    x, out = op.inputs[0], op.outputs[0]
    perm = [int(p) for p in np.asarray(b.need_const(op.inputs[1], "permutation")).reshape(-1)]
    if b.batched(x) and perm[:1] != [0]:
        b.break_batch("moves the batch axis")
    if b.layout(x) is Layout.NCHW:
        perm = [TO_NHWC[p] for p in perm]
    b.emit("Transpose", [b.get(x)], out, Layout.PLAIN, perm=perm)


def _gather(b: Builder, op: Operator) -> None:
    x, idx, out = op.inputs[0], op.inputs[1], op.outputs[0]
    if op.options.get("batch_dims", 0):
        raise b.unsupported("GATHER with batch_dims is not supported")
    rank = len(b.shape(x))
    axis = op.options.get("axis", 0)
    axis = axis + rank if axis < 0 else axis
    if b.batched(x) and axis == 0:
        b.break_batch("gathers along the batch axis")
    value = b.const(idx)
    indices = b.init(idx, value.astype(np.int64)) if value is not None else b.get(idx)
    b.emit("Gather", [b.get(x, Layout.PLAIN), indices], out, Layout.PLAIN, axis=axis)


def _cast(b: Builder, op: Operator) -> None:
    x, out = op.inputs[0], op.outputs[0]
    dtype = b.tensor(out).dtype
    if dtype is None:
        raise b.unsupported(f"cast to {b.tensor(out).type_name} is not supported")
    b.emit("Cast", [b.get(x)], out, b.layout(x), to=helper.np_dtype_to_tensor_dtype(dtype))


CONVERTERS: dict[str, Callable[[Builder, Operator], None]] = {
    "RESHAPE": _reshape,
    "SQUEEZE": _reshape,
    "EXPAND_DIMS": _reshape,
    "CONCATENATION": _concat,
    "PAD": _pad("constant"),
    "PADV2": _pad("constant"),
    "MIRROR_PAD": _pad("reflect"),
    "MEAN": _reduce("ReduceMean"),
    "SUM": _reduce("ReduceSum"),
    "REDUCE_MAX": _reduce("ReduceMax"),
    "REDUCE_MIN": _reduce("ReduceMin"),
    "REDUCE_PROD": _reduce("ReduceProd"),
    "SPLIT": _split,
    "SPLIT_V": _split_v,
    "SLICE": _slice,
    "STRIDED_SLICE": _strided_slice,
    "TRANSPOSE": _transpose,
    "GATHER": _gather,
    "CAST": _cast,
}
