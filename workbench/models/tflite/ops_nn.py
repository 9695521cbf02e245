"""Converters for the NHWC compute ops: convolutions, pooling, fully connected, resize, depth↔space.

They read rank-4 inputs in NCHW and write NCHW, so a chain of them needs no transposes. Weights
become ONNX initializers in ONNX's own layout: CONV_2D ``OHWI → OIHW``, DEPTHWISE_CONV_2D
``1HW(C·M) → (C·M)1HW`` with ``group = C``, transpose convolutions ``OHWI → IOHW``.

TFLite SAME padding, per spatial axis (input ``n``, kernel ``k``, stride ``s``, dilation ``d``)::

    out = ceil(n / s),  total = max((out − 1)·s + (k − 1)·d + 1 − n, 0)
    pad_begin = total // 2,  pad_end = total − pad_begin
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import numpy as np

from workbench.models.tflite.builder import Builder
from workbench.models.tflite.layout import Layout
from workbench.models.tflite.reader import Operator

__all__ = ["CONVERTERS"]

_SAME, _VALID = 0, 1


def _same_pads(padding: int, size: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
               dilations: tuple[int, ...]) -> list[int]:
    """ONNX ``pads`` (begins then ends) for TFLite ``padding`` on the spatial axes."""
    if padding == _VALID:
        return [0] * (2 * len(size))
    begins, ends = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return begins + ends


def _spatial(b: Builder, idx: int) -> tuple[int, int]:
    shape = b.shape(idx)
    if len(shape) != 4:
        raise b.unsupported(f"expects a rank-4 NHWC input, got shape {list(shape)}")
    return shape[1], shape[2]


def _conv(b: Builder, op: Operator) -> None:
    w = b.need_const(op.inputs[1], "filter")  # [O, kh, kw, I]
    c_in = b.shape(op.inputs[0])[3]
    if c_in % w.shape[3]:
        raise b.unsupported(f"input channels {c_in} are not a multiple of the filter's {w.shape[3]}")
    _emit_conv(b, op, w, w.transpose(0, 3, 1, 2), group=c_in // w.shape[3])


def _depthwise(b: Builder, op: Operator) -> None:
    w = b.need_const(op.inputs[1], "filter")  # [1, kh, kw, C·M]; output channel c·M + m reads input channel c
    c_in = b.shape(op.inputs[0])[3]
    if w.shape[0] != 1 or w.shape[3] % c_in:
        raise b.unsupported(f"filter shape {list(w.shape)} does not fit {c_in} input channels")
    _emit_conv(b, op, w, w.transpose(3, 0, 1, 2), group=c_in)


def _emit_conv(b: Builder, op: Operator, w: np.ndarray, oihw: np.ndarray, *, group: int) -> None:
    """An ONNX Conv (NCHW) for a TFLite conv whose filter ``w`` is [·, kh, kw, ·], as ``oihw``."""
    x, o = op.inputs[0], op.options
    strides = (o.get("stride_h", 1), o.get("stride_w", 1))
    dil = (o.get("dilation_hfactor", 1), o.get("dilation_wfactor", 1))
    kernel = (w.shape[1], w.shape[2])
    inputs = [b.get(x, Layout.NCHW), b.init(op.inputs[1], oihw)]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(b.get(op.inputs[2]))
    b.emit("Conv", inputs, op.outputs[0], Layout.NCHW, act=o.get("fused_activation_function", 0),
           kernel_shape=list(kernel), strides=list(strides), dilations=list(dil), group=group,
           pads=_same_pads(o.get("padding", 0), _spatial(b, x), kernel, strides, dil))


def _deconv(b: Builder, op: Operator, x: int, w_idx: int, bias: int, padding: int, strides: tuple[int, int],
            act: int) -> None:
    """ConvTranspose writing exactly the output tensor's size. TFLite places the input as a forward
    convolution from the output would (``total`` as for SAME above, with ``n`` = output size), so
    ``pad_begin = total // 2``; whatever the kernel's reach leaves short at the end is output_padding."""
    w = b.need_const(w_idx, "filter")  # [O, kh, kw, I]
    out_hw = _spatial(b, op.outputs[0])
    in_hw = _spatial(b, x)
    kernel = (w.shape[1], w.shape[2])
    begins, ends, extra = [], [], []
    for n_out, n_in, k, s in zip(out_hw, in_hw, kernel, strides, strict=True):
        steps = math.ceil(n_out / s) if padding == _SAME else (n_out - k + s) // s
        begin = max((steps - 1) * s + k - n_out, 0) // 2
        end = (n_in - 1) * s + k - begin - n_out
        begins.append(begin)
        ends.append(max(end, 0))
        extra.append(max(-end, 0))
    inputs = [b.get(x, Layout.NCHW), b.init(w_idx, w.transpose(3, 0, 1, 2))]
    if bias >= 0:
        inputs.append(b.get(bias))
    attrs = {"output_padding": extra} if any(extra) else {}
    b.emit("ConvTranspose", inputs, op.outputs[0], Layout.NCHW, act=act, kernel_shape=list(kernel),
           strides=list(strides), pads=begins + ends, **attrs)


def _transpose_conv(b: Builder, op: Operator) -> None:
    o = op.options
    bias = op.inputs[3] if len(op.inputs) > 3 else -1
    _deconv(b, op, op.inputs[2], op.inputs[1], bias, o.get("padding", 0), (o.get("stride_h", 1), o.get("stride_w", 1)),
            o.get("fused_activation_function", 0))


def _transpose_conv_bias(b: Builder, op: Operator) -> None:
    """MediaPipe's ``Convolution2DTransposeBias``: inputs (x, filter, bias); custom options are the
    C struct ``TfLiteTransposeConvParams {padding (1 SAME, 2 VALID), stride_w, stride_h}``."""
    if len(op.custom_options) < 12:
        raise b.unsupported(f"custom options are {len(op.custom_options)} bytes, expected 12")
    padding, stride_w, stride_h = struct.unpack("<iii", op.custom_options[:12])
    if padding not in (1, 2):
        raise b.unsupported(f"padding code {padding} (expected 1 SAME or 2 VALID)")
    _deconv(b, op, op.inputs[0], op.inputs[1], op.inputs[2], _SAME if padding == 1 else _VALID,
            (stride_h, stride_w), 0)


def _pool(onnx_op: str) -> Callable[[Builder, Operator], None]:
    def convert(b: Builder, op: Operator) -> None:
        o = op.options
        x = op.inputs[0]
        kernel = (o.get("filter_height", 1), o.get("filter_width", 1))
        strides = (o.get("stride_h", 1), o.get("stride_w", 1))
        pads = _same_pads(o.get("padding", 0), _spatial(b, x), kernel, strides, (1, 1))
        # AveragePool's default count_include_pad=0 averages only real pixels, as TFLite does.
        b.emit(onnx_op, [b.get(x, Layout.NCHW)], op.outputs[0], Layout.NCHW,
               act=o.get("fused_activation_function", 0), kernel_shape=list(kernel), strides=list(strides),
               pads=pads)

    return convert


def _fully_connected(b: Builder, op: Operator) -> None:
    """``y = x·Wᵀ + b`` with W ``[O, K]`` as Gemm(transB=1); inputs of rank > 2 are flattened to
    ``[-1, K]`` first (TFLite's rule), and reshaped back when ``keep_num_dims``."""
    o = op.options
    if o.get("weights_format", 0) != 0:
        raise b.unsupported("shuffled weight formats are not supported")
    x, w_idx = op.inputs[0], op.inputs[1]
    w = b.need_const(w_idx, "weights")
    k = w.shape[1]
    shape = b.shape(x)
    src = b.get(x, Layout.PLAIN)
    out_idx = op.outputs[0]
    out_shape = b.shape(out_idx)
    if len(shape) != 2 or shape[-1] != k:
        if b.batched(x) and len(out_shape) == 2 and not (shape[0] == 1 and math.prod(shape[1:]) == k):
            b.break_batch("FULLY_CONNECTED folds the batch axis into its rows")
        flat = b.fresh(b.name_of(x) + "/flat")
        b.node("Reshape", [src, b.ints(flat + "/shape", [-1, k])], [flat], b.node_name(out_idx, "/flatten"))
        src = flat
    inputs = [src, b.init(w_idx, w)]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(b.get(op.inputs[2]))
    act = o.get("fused_activation_function", 0)
    if len(out_shape) == 2:
        b.emit("Gemm", inputs, out_idx, Layout.PLAIN, act=act, transB=1)
        return
    gemm = b.fresh(b.name_of(out_idx) + "/gemm")  # keep_num_dims: [rows, O] back to x's leading dims
    b.node("Gemm", inputs, [gemm], b.node_name(out_idx, "/gemm"), transB=1)
    target = [-1 if b.batched(x) else out_shape[0], *out_shape[1:]]
    b.emit("Reshape", [gemm, b.ints(b.name_of(out_idx) + "/shape", target)], out_idx, Layout.PLAIN, act=act)


def _resize(mode: str) -> Callable[[Builder, Operator], None]:
    """TFLite's coordinate rules as ONNX Resize modes: align_corners → ``align_corners``;
    half_pixel_centers → ``half_pixel``; neither → ``asymmetric``. Nearest picks
    ``floor(v)`` with ``v = (x + 0.5)·in/out`` under half_pixel_centers, which is ONNX's
    ``round_prefer_ceil(v − 0.5)``; ``floor(x·in/out)`` otherwise; ``round(x·(in−1)/(out−1))``
    (half up) with align_corners."""
    def convert(b: Builder, op: Operator) -> None:
        o = op.options
        size = [int(v) for v in b.need_const(op.inputs[1], "size")]
        if o.get("align_corners"):
            coord = "align_corners"
        elif o.get("half_pixel_centers"):
            coord = "half_pixel"
        else:
            coord = "asymmetric"
        rounding = "floor" if coord == "asymmetric" else "round_prefer_ceil"
        attrs = {"nearest_mode": rounding} if mode == "nearest" else {}
        x, out = op.inputs[0], op.outputs[0]
        src = b.get(x, Layout.NCHW)
        in_hw = _spatial(b, x)
        base = b.name_of(out)
        # Not the ``axes`` attribute: onnxruntime's QDQ Resize rewrite loses it. Integer factors are
        # exact as float scales; other sizes take the batch and channels from Shape(x) at run time.
        if all(o % i == 0 for o, i in zip(size, in_hw, strict=True)):
            scales = b.init(base + "/scales", np.array([1, 1, *(o // i for o, i in zip(size, in_hw, strict=True))],
                                                       np.float32))
            inputs = [src, "", scales]
        else:
            lead = b.fresh(base + "/batch_channels")
            b.node("Shape", [src], [lead], b.node_name(out, "/shape"), start=0, end=2)
            sizes = b.fresh(base + "/sizes")
            b.node("Concat", [lead, b.ints(base + "/hw", size)], [sizes], b.node_name(out, "/sizes"), axis=0)
            inputs = [src, "", "", sizes]
        b.emit("Resize", inputs, out, Layout.NCHW, mode=mode, coordinate_transformation_mode=coord, **attrs)

    return convert


def _depth_space(onnx_op: str) -> Callable[[Builder, Operator], None]:
    """TF's NHWC channel order ``(i·bs + j)·C + c`` is ONNX DepthToSpace's DCR mode (and SpaceToDepth's)."""
    def convert(b: Builder, op: Operator) -> None:
        attrs = {"mode": "DCR"} if onnx_op == "DepthToSpace" else {}
        b.emit(onnx_op, [b.get(op.inputs[0], Layout.NCHW)], op.outputs[0], Layout.NCHW,
               blocksize=op.options.get("block_size", 1), **attrs)

    return convert


CONVERTERS: dict[str, Callable[[Builder, Operator], None]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "TRANSPOSE_CONV": _transpose_conv,
    "CUSTOM:Convolution2DTransposeBias": _transpose_conv_bias,
    "AVERAGE_POOL_2D": _pool("AveragePool"),
    "MAX_POOL_2D": _pool("MaxPool"),
    "FULLY_CONNECTED": _fully_connected,
    "RESIZE_BILINEAR": _resize("linear"),
    "RESIZE_NEAREST_NEIGHBOR": _resize("nearest"),
    "DEPTH_TO_SPACE": _depth_space("DepthToSpace"),
    "SPACE_TO_DEPTH": _depth_space("SpaceToDepth"),
}
