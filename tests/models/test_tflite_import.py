"""TFLite importer: parity with the TFLite interpreter (outputs and every intermediate, by name),
layout (one transpose per boundary, plain OIHW Convs), dynamic batch, quantization through Session,
and one-line errors. Small models are written with tests/models/tflite_builder.py; the MediaPipe
models come from the zoo."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.models.tflite_builder import TfliteGraph
from workbench import datasets, zoo
from workbench.errors import WorkbenchError
from workbench.models import load_model
from workbench.models.parity import measure_parity
from workbench.models.tflite import SUPPORTED_OPS, tflite_to_onnx
from workbench.models.tflite.parity import intermediate_parity
from workbench.models.tflite.sparse import DimLevel, densify
from workbench.session import Session

MEDIAPIPE = ["face_detection_short_range", "hand_landmark_full", "palm_detection_lite", "pose_detection",
             "selfie_segmentation"]
# Transposes in the imported graph: one after the image input, one before each NHWC-order
# Reshape head (detectors) or NHWC output (selfie mask); none between Convs.
TRANSPOSES = {"face_detection_short_range": 5, "hand_landmark_full": 1, "palm_detection_lite": 5,
              "pose_detection": 7, "selfie_segmentation": 2}


def _rng(seed: int = 0):
    r = np.random.default_rng(seed)
    return lambda *shape: (r.standard_normal(shape) * 0.3).astype(np.float32)


def _ops_model(path: Path) -> Path:
    """Most supported ops in one graph (fp16 and int8 weights through DEQUANTIZE, depth multiplier 2,
    builtin TRANSPOSE_CONV, split/slice/transpose/reshape/softmax/gather/FC keep_num_dims, ...)."""
    f = _rng()
    g = TfliteGraph()
    x = g.add("image", [1, 8, 8, 4])
    w16, w = g.const("conv/w16", f(8, 3, 3, 4).astype(np.float16)), g.add("conv/w", [8, 3, 3, 4])
    g.op("DEQUANTIZE", [w16], [w])
    c1 = g.add("conv", [1, 8, 8, 8])
    g.op("CONV_2D", [x, w, g.const("conv/b", f(8))], [c1], "Conv2DOptions", padding=0, stride_w=1, stride_h=1,
         fused_activation_function=3)
    q = np.clip(np.round(f(1, 3, 3, 16) / 0.02), -127, 127).astype(np.int8)
    wq, wd = g.add("dw/wq", q.shape, np.int8, q, quant=(0.02, 0)), g.add("dw/w", [1, 3, 3, 16])
    g.op("DEQUANTIZE", [wq], [wd])
    d1 = g.add("dw", [1, 4, 4, 16])
    g.op("DEPTHWISE_CONV_2D", [c1, wd, g.const("dw/b", f(16))], [d1], "DepthwiseConv2DOptions", padding=0,
         stride_w=2, stride_h=2, depth_multiplier=2)
    a16, a = g.const("prelu/a16", np.abs(f(1, 1, 16)).astype(np.float16)), g.add("prelu/alpha", [1, 1, 16])
    g.op("DEQUANTIZE", [a16], [a])
    p1, h1 = g.add("prelu", [1, 4, 4, 16]), g.add("hswish", [1, 4, 4, 16])
    g.op("PRELU", [d1, a], [p1])
    g.op("HARD_SWISH", [p1], [h1])
    t1 = g.add("deconv", [1, 8, 8, 6])
    shape = g.const("deconv/shape", np.array([1, 8, 8, 6], np.int32))
    g.op("TRANSPOSE_CONV", [shape, g.const("deconv/w", f(6, 3, 3, 16)), h1, g.const("deconv/b", f(6))], [t1],
         "TransposeConvOptions", padding=0, stride_w=2, stride_h=2)
    s1, s2, s3 = g.add("sub", [1, 8, 8, 6]), g.add("div", [1, 8, 8, 6]), g.add("tanh", [1, 8, 8, 6])
    g.op("SUB", [t1, g.const("sub/c", f(6))], [s1], "SubOptions")
    g.op("DIV", [s1, g.const("div/c", np.array([1.5], np.float32))], [s2], "DivOptions")
    g.op("TANH", [s2], [s3])
    p2 = g.add("avgpool", [1, 4, 4, 6])
    g.op("AVERAGE_POOL_2D", [s3], [p2], "Pool2DOptions", padding=1, stride_w=2, stride_h=2, filter_width=2,
         filter_height=2)
    r1, r2 = g.add("resize", [1, 8, 8, 6]), g.add("resize_bl", [1, 8, 8, 6])
    g.op("RESIZE_NEAREST_NEIGHBOR", [p2, g.const("resize/size", np.array([8, 8], np.int32))], [r1],
         "ResizeNearestNeighborOptions", half_pixel_centers=True)
    g.op("RESIZE_BILINEAR", [p2, g.const("resize_bl/size", np.array([8, 8], np.int32))], [r2],
         "ResizeBilinearOptions", align_corners=True)
    pad, mp = g.add("pad", [1, 10, 8, 6]), g.add("maxpool", [1, 5, 4, 6])
    g.op("PAD", [r2, g.const("pad/p", np.array([[0, 0], [1, 1], [0, 0], [0, 0]], np.int32))], [pad])
    g.op("MAX_POOL_2D", [pad], [mp], "Pool2DOptions", padding=0, stride_w=2, stride_h=2, filter_width=3,
         filter_height=3)
    cat = g.add("concat", [1, 8, 8, 12])
    g.op("CONCATENATION", [r1, t1], [cat], "ConcatenationOptions", axis=3)
    sp_a, sp_b = g.add("split_a", [1, 8, 8, 6]), g.add("split_b", [1, 8, 8, 6])
    g.op("SPLIT", [g.const("split/axis", np.array(3, np.int32)), cat], [sp_a, sp_b], "SplitOptions", num_splits=2)
    m1, lg = g.add("mul", [1, 8, 8, 6]), g.add("logistic", [1, 8, 8, 6])
    g.op("MUL", [sp_a, sp_b], [m1], "MulOptions")
    g.op("LOGISTIC", [m1], [lg])
    ss, sl = g.add("strided", [1, 4, 8, 6]), g.add("slice", [1, 2, 8, 6])
    g.op("STRIDED_SLICE", [lg, g.const("ss/b", np.array([0, 0, 0, 0], np.int32)),
                           g.const("ss/e", np.array([1, 8, 8, 6], np.int32)),
                           g.const("ss/s", np.array([1, 2, 1, 1], np.int32))], [ss], "StridedSliceOptions")
    g.op("SLICE", [ss, g.const("sl/b", np.array([0, 1, 0, 0], np.int32)),
                   g.const("sl/s", np.array([-1, 2, -1, -1], np.int32))], [sl])
    tr, rs, sm = g.add("transpose", [1, 6, 2, 8]), g.add("reshape", [1, 6, 16]), g.add("softmax", [1, 6, 16])
    g.op("TRANSPOSE", [sl, g.const("tr/p", np.array([0, 3, 1, 2], np.int32))], [tr])
    g.op("RESHAPE", [tr, g.const("rs/s", np.array([1, 6, 16], np.int32))], [rs])
    g.op("SOFTMAX", [rs], [sm], "SoftmaxOptions", beta=2.0)
    ga, fc, mean = g.add("gather", [1, 3, 16]), g.add("fc", [1, 3, 10]), g.add("mean", [1, 10])
    g.op("GATHER", [sm, g.const("ga/i", np.array([0, 2, 5], np.int32))], [ga], "GatherOptions", axis=1)
    g.op("FULLY_CONNECTED", [ga, g.const("fc/w", f(10, 16)), g.const("fc/b", f(10))], [fc], "FullyConnectedOptions",
         keep_num_dims=True, fused_activation_function=2)
    g.op("MEAN", [fc, g.const("mean/axes", np.array([1], np.int32))], [mean], "ReducerOptions", keep_dims=False)
    mean2, add = g.add("mean_hw", [1, 1, 1, 6]), g.add("add", [1, 5, 4, 6])
    g.op("MEAN", [mp, g.const("mean_hw/axes", np.array([1, 2], np.int32))], [mean2], "ReducerOptions", keep_dims=True)
    g.op("ADD", [mp, mean2], [add], "AddOptions", fused_activation_function=1)
    return g.save(path, [x], [mean, add, c1])


def _resize_model(path: Path) -> Path:
    """Resizes by non-integer factors and other coordinate modes, SPLIT_V, a shrinking STRIDED_SLICE,
    and a RESHAPE that folds the batch axis away (so the graph must keep batch 1)."""
    g = TfliteGraph()
    x = g.add("x", [1, 6, 6, 3])
    rb, rn = g.add("bilinear_9", [1, 9, 9, 3]), g.add("nearest_18", [1, 18, 18, 3])
    rna = g.add("nearest_ac", [1, 5, 5, 3])
    g.op("RESIZE_BILINEAR", [x, g.const("rb/size", np.array([9, 9], np.int32))], [rb], "ResizeBilinearOptions",
         half_pixel_centers=True)
    g.op("RESIZE_NEAREST_NEIGHBOR", [rb, g.const("rn/size", np.array([18, 18], np.int32))], [rn],
         "ResizeNearestNeighborOptions")
    g.op("RESIZE_NEAREST_NEIGHBOR", [x, g.const("rna/size", np.array([5, 5], np.int32))], [rna],
         "ResizeNearestNeighborOptions", align_corners=True)
    ss = g.add("channel_1", [1, 18, 18])
    g.op("STRIDED_SLICE", [rn, g.const("ss/b", np.array([0, 0, 0, 1], np.int32)),
                           g.const("ss/e", np.array([0, 0, 0, 2], np.int32)),
                           g.const("ss/s", np.array([1, 1, 1, 1], np.int32))], [ss], "StridedSliceOptions",
         begin_mask=7, end_mask=7, shrink_axis_mask=8)
    va, vb = g.add("split_v_a", [1, 5, 5, 1]), g.add("split_v_b", [1, 5, 5, 2])
    g.op("SPLIT_V", [rna, g.const("sv/sizes", np.array([1, -1], np.int32)), g.const("sv/axis", np.array(3, np.int32))],
         [va, vb], "SplitVOptions", num_splits=2)
    flat = g.add("rows", [18, 18])
    g.op("RESHAPE", [ss, g.const("flat/s", np.array([18, 18], np.int32))], [flat])
    return g.save(path, [x], [flat, vb, va])


def _elementwise_model(path: Path) -> Path:
    """Unary/binary math, reductions, pads, squeeze/expand and depth↔space on an NCHW value (after a
    Conv), every result a model output."""
    r = np.random.default_rng(0)
    g = TfliteGraph()
    x, c = g.add("x", [1, 4, 4, 3]), g.add("c", [1, 4, 4, 3])
    g.op("CONV_2D", [x, g.const("c/w", (np.eye(3, dtype=np.float32) * 2).reshape(3, 1, 1, 3)),
                     g.const("c/b", np.zeros(3, np.float32))], [c], "Conv2DOptions", padding=1, stride_w=1, stride_h=1)
    outs: list[int] = []

    def op(kind, ins, shape=(1, 4, 4, 3), options=None, **fields) -> int:
        y = g.add(f"{kind.lower()}_{len(outs)}", shape)
        g.op(kind, ins, [y], options, **fields)
        outs.append(y)
        return y

    a = op("ABS", [c])
    b = op("ADD", [a, g.const("half", np.array([0.5], np.float32))], options="AddOptions")
    for kind in ("SQRT", "RSQRT", "LOG"):
        op(kind, [b])
    for kind in ("EXP", "FLOOR", "CEIL", "SQUARE", "ELU", "RELU_N1_TO_1", "RELU_0_TO_1", "RELU6"):
        op(kind, [c])
    n = op("NEG", [c])
    op("LEAKY_RELU", [c], options="LeakyReluOptions", alpha=0.1)
    op("GELU", [c], options="GeluOptions", approximate=True)
    op("MAXIMUM", [c, g.const("mx", r.standard_normal(3).astype(np.float32))])
    op("MINIMUM", [c, n])
    op("POW", [b, g.const("pw", np.array([1.5], np.float32))])
    op("SQUARED_DIFFERENCE", [c, g.const("sd", r.standard_normal((1, 4, 1, 3)).astype(np.float32))])
    op("LOG_SOFTMAX", [c], options="LogSoftmaxOptions")
    op("MIRROR_PAD", [c, g.const("mp", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))], (1, 6, 6, 3),
       "MirrorPadOptions", mode=0)
    op("PADV2", [c, g.const("pv", np.array([[0, 0], [0, 1], [2, 0], [0, 1]], np.int32)),
                 g.const("pv/v", np.array(0.5, np.float32))], (1, 5, 6, 4))
    su = op("SUM", [c, g.const("su/ax", np.array([1, 2], np.int32))], (1, 1, 1, 3), "ReducerOptions", keep_dims=True)
    rmax = op("REDUCE_MAX", [c, g.const("rmax/ax", np.array([3], np.int32))], (1, 4, 4), "ReducerOptions")
    op("REDUCE_MIN", [c, g.const("rmin/ax", np.array([2], np.int32))], (1, 4, 3), "ReducerOptions")
    op("SQUEEZE", [su], (1, 3), "SqueezeOptions", squeeze_dims=[1, 2])
    op("EXPAND_DIMS", [rmax, g.const("ed/ax", np.array(3, np.int32))], (1, 4, 4, 1))
    s2d = op("SPACE_TO_DEPTH", [c], (1, 2, 2, 12), "SpaceToDepthOptions", block_size=2)
    op("DEPTH_TO_SPACE", [s2d], options="DepthToSpaceOptions", block_size=2)
    return g.save(path, [x], outs)


def _one_op_model(path: Path, kind: str, custom: str = "") -> Path:
    g = TfliteGraph()
    x, y = g.add("x", [1, 4, 4, 3]), g.add("odd_output", [1, 4, 4, 3])
    g.op(kind, [x], [y], custom=custom, custom_options=b"\0" * 4 if custom else b"")
    return g.save(path, [x], [y])


def _check_parity(path: Path, feed: dict[str, np.ndarray], out_floor: float, mid_floor: float,
                  most_floor: float | None = None) -> dict[str, float]:
    """Outputs ≥ ``out_floor`` dB; every intermediate ≥ ``mid_floor``, 95 % of them ≥ ``most_floor``."""
    model = load_model(path)
    assert model.format == "tflite" and model.source == str(path)
    outputs = measure_parity(model, [feed])
    assert min(outputs.values()) >= out_floor, outputs
    mids = intermediate_parity(path, model, {k: v[:1] for k, v in feed.items()})
    conv = tflite_to_onnx(path)
    written = {o for op in conv.model.operators if op.opcode not in ("DEQUANTIZE", "DENSIFY") for o in op.outputs}
    assert set(mids) == {conv.names[i] for i in written}, "every converted op output is compared by name"
    assert min(mids.values()) >= mid_floor, sorted(mids.items(), key=lambda kv: kv[1])[:3]
    if most_floor is not None:
        assert np.percentile(list(mids.values()), 5) >= most_floor, sorted(mids.values())[:5]
    return mids


# ------------------------------------------------------------------------------------ built models
def test_ops_model_matches_interpreter_with_dynamic_batch(tmp_path):
    path = _ops_model(tmp_path / "ops.tflite")
    feed = {"image": np.random.default_rng(1).standard_normal((3, 8, 8, 4)).astype(np.float32)}
    _check_parity(path, feed, 100.0, 100.0)  # float32 both sides: ~135 dB measured
    model = load_model(path)
    assert [i.shape for i in model.inputs] == [("N", 8, 8, 4)] and model.notes == []
    assert [o.name for o in model.outputs] == ["mean", "add", "conv"]
    assert [o.shape for o in model.outputs] == [("N", 10), ("N", 5, 4, 6), ("N", 8, 8, 8)]
    nodes = {n.name: n for n in model.proto.graph.node}
    inits = model.initializers()
    conv, dw = nodes["conv"], nodes["dw"]
    assert conv.op_type == dw.op_type == "Conv"
    assert inits[conv.input[1]].shape == (8, 4, 3, 3) and inits[dw.input[1]].shape == (16, 1, 3, 3)
    assert next(a.i for a in dw.attribute if a.name == "group") == 8
    assert inits[dw.input[1]].dtype == np.float32  # the int8 weights were dequantized at import
    transposes = sorted(n.name for n in model.proto.graph.node if n.op_type == "Transpose")
    assert transposes == ["add/to_nhwc", "conv/to_nhwc", "image/to_nchw", "transpose"]


def test_elementwise_and_reduction_ops_match_interpreter(tmp_path):
    path = _elementwise_model(tmp_path / "elementwise.tflite")
    feed = {"x": np.random.default_rng(3).standard_normal((3, 4, 4, 3)).astype(np.float32)}
    mids = _check_parity(path, feed, 100.0, 100.0)  # measured ≥ 140 dB (most exactly equal)
    assert len(mids) == 31


def test_batch_stays_one_when_an_op_folds_the_batch_axis(tmp_path):
    path = _resize_model(tmp_path / "resize.tflite")
    model = load_model(path)
    assert model.inputs[0].shape == (1, 6, 6, 3)
    assert any("batch fixed at 1" in n and "'rows'" in n for n in model.notes), model.notes
    feed = {"x": np.random.default_rng(2).uniform(-1, 1, (1, 6, 6, 3)).astype(np.float32)}
    _check_parity(path, feed, 100.0, 100.0)


def test_unsupported_op_names_op_tensor_and_supported_list(tmp_path):
    path = _one_op_model(tmp_path / "l2.tflite", "L2_NORMALIZATION")
    with pytest.raises(WorkbenchError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert "L2_NORMALIZATION" in msg and "'odd_output'" in msg and "supported ops:" in msg
    assert all(op in msg for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "PRELU", "DENSIFY"))
    assert len(SUPPORTED_OPS) >= 40


def test_unknown_custom_op_is_named(tmp_path):
    path = _one_op_model(tmp_path / "custom.tflite", "CUSTOM", custom="MaxPoolingWithArgmax2D")
    with pytest.raises(WorkbenchError, match=r"output 'odd_output'\): custom op 'MaxPoolingWithArgmax2D' is "
                                             r"not supported.*Convolution2DTransposeBias"):
        load_model(path)


def test_quantized_model_is_a_clear_error(tmp_path):
    g = TfliteGraph()
    x, q, y = g.add("x", [1, 4]), g.add("x_int8", [1, 4], np.int8, quant=(0.05, 3)), g.add("y", [1, 4])
    g.op("QUANTIZE", [x], [q])
    g.op("DEQUANTIZE", [q], [y])
    path = g.save(tmp_path / "int8.tflite", [x], [y])
    with pytest.raises(WorkbenchError, match=r"'x_int8' is int8-quantized.*quantized TFLite models are not "
                                             r"supported yet; import the float \.tflite"):
        load_model(path)


def test_bad_files_are_one_line_errors(tmp_path):
    good = _one_op_model(tmp_path / "relu.tflite", "RELU").read_bytes()
    cases = {"missing.tflite": None, "text.tflite": b"not a model at all\n", "empty.tflite": b"",
             "head.tflite": good[:40], "half.tflite": good[: len(good) // 2], "tail.tflite": good[:-8]}
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(WorkbenchError) as info:
            load_model(path)
        msg = str(info.value)
        assert "\n" not in msg and str(path) in msg, msg
        assert ("not found" if data is None else "re-download") in msg, msg


def test_densify_csr_and_blocks():
    csr = densify(np.array([1, 2, 3, 4], np.float32), (3, 4), (0, 1), (),
                  [DimLevel(True, 3), DimLevel(False, segments=np.array([0, 2, 2, 4]), indices=np.array([0, 3, 1, 2]))])
    np.testing.assert_array_equal(csr, [[1, 0, 0, 2], [0, 0, 0, 0], [0, 3, 4, 0]])
    dense = np.array([[1, 0, 2, 3], [0, 4, 0, 0], [0, 0, 5, 0], [0, 0, 0, 6]], np.float32)  # 2x2 blocks
    blocks = densify(np.array([1, 0, 0, 4, 2, 3, 0, 0, 5, 0, 0, 6], np.float32), (4, 4), (0, 1, 2, 3), (0, 1),
                     [DimLevel(True, 2), DimLevel(False, segments=np.array([0, 2, 3]), indices=np.array([0, 1, 1])),
                      DimLevel(True, 2), DimLevel(True, 2)])
    np.testing.assert_array_equal(blocks, dense)


def test_import_workbench_loads_neither_tflite_nor_litert():
    code = ("import sys, workbench, workbench.models, workbench.session, workbench.datasets; "
            "print([m for m in ('tflite', 'ai_edge_litert', 'workbench.models.tflite') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_image_inputs_need_a_scale_without_metadata(tmp_path):
    path = _one_op_model(tmp_path / "relu.tflite", "RELU")
    with pytest.raises(WorkbenchError, match="value_range"):
        datasets.tflite_image_inputs(path, 2)


# -------------------------------------------------------------------------------------- zoo models
@pytest.fixture(scope="module")
def zoo_root():
    try:
        for name in (*MEDIAPIPE, "grace_hopper", "camera", "china", "flower", "page"):
            zoo.path(name)
    except WorkbenchError as e:
        pytest.skip(str(e))
    return zoo.default_root()


@pytest.mark.zoo
@pytest.mark.parametrize("name", MEDIAPIPE)
def test_mediapipe_model_matches_interpreter(name, zoo_root):
    path = zoo.path(name)
    feed = datasets.tflite_image_inputs(path, 4, seed=3)
    # fp16 weights are exact in float32, so both runtimes compute the same float graph: measured
    # 69-128 dB at the outputs and 90-140 dB inside; the lowest are sigmoids saturated near 0 (hand
    # presence on photos without hands), where the two runtimes' exp approximations differ relatively.
    mids = _check_parity(path, feed, 60.0, 60.0, 90.0)
    assert len(mids) >= 60
    model = load_model(path)
    assert model.inputs[0].batch_dynamic and not model.notes
    ops = [n.op_type for n in model.proto.graph.node]
    assert ops.count("Transpose") == TRANSPOSES[name]
    inits = model.initializers()
    for node in model.proto.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            assert inits[node.input[1]].ndim == 4 and inits[node.input[1]].dtype == np.float32


@pytest.mark.zoo
def test_image_inputs_follow_model_metadata(zoo_root):
    face = datasets.tflite_image_inputs(zoo.path("face_detection_short_range"), 3)["input"]
    selfie = datasets.tflite_image_inputs(zoo.path("selfie_segmentation"), 3, seed=1)["input_1"]
    palm = datasets.tflite_image_inputs(zoo.path("palm_detection_lite"), 3)["input_1"]
    assert face.shape == (3, 128, 128, 3) and face.min() < -0.5 and face.max() <= 1.0  # mean=std=127.5
    assert selfie.shape == (3, 256, 256, 3) and selfie.min() >= 0.0 and selfie.max() > 0.8  # std=255
    assert palm.min() >= 0.0 and palm.max() <= 1.0  # no metadata: MediaPipe's [0, 1]
    again = datasets.tflite_image_inputs(zoo.path("face_detection_short_range"), 3)["input"]
    np.testing.assert_array_equal(face, again)
    wide = datasets.tflite_image_inputs(zoo.path("palm_detection_lite"), 3, value_range=(-1, 1))["input_1"]
    np.testing.assert_allclose(wide, palm * 2 - 1, atol=1e-5)


@pytest.mark.zoo
def test_mediapipe_custom_transpose_conv_is_a_conv_transpose(zoo_root):
    conv = tflite_to_onnx(zoo.path("selfie_segmentation"))
    custom = next(op for op in conv.model.operators if op.kind == "CUSTOM:Convolution2DTransposeBias")
    assert struct.unpack("<iii", custom.custom_options) == (1, 2, 2)  # SAME, stride 2x2
    node = next(n for n in conv.proto.graph.node if n.op_type == "ConvTranspose")
    assert node.output[0] == conv.names[custom.outputs[0]] == "segment"


@pytest.mark.zoo
def test_imported_model_quantizes_through_session(zoo_root):
    path = zoo.path("face_detection_short_range")
    s = Session(path, progress=False)
    s.calibrate(datasets.tflite_image_inputs(path, 16, seed=0), batch_size=8)
    assert s.model.format == "tflite"
    assert {"conv2d", "depthwise_conv2d"} <= set(s.layer_names())  # TFLite names
    assert any("activation_1" in layer.fused for layer in s.graph.layers.values())  # Relu fused into its Add
    cmp = s.compare(datasets.tflite_image_inputs(path, 8, seed=100), batch_size=8)
    sqnr = cmp.outputs["sqnr_db"].to_dict()
    # Default W8A8 (per-channel weights, per-tensor activations), measured 16.4-17.2 dB (regressors)
    # and 14.2-15.2 dB (classificators) over calibration seeds.
    assert sqnr["regressors"] > 12.0 and sqnr["classificators"] > 9.0, sqnr
    assert len(cmp.layers) > 30 and cmp.layers["sqnr_db"].notna().all()


@pytest.mark.zoo
def test_cli_quantizes_exports_and_reports_import_parity(zoo_root, tmp_path, capsys):
    """`workbench quantize/inspect` take a .tflite: the exported QDQ file runs in onnxruntime and
    gives the outputs the comparison measured; inspect reports parity with the interpreter."""
    import json

    import onnxruntime as ort

    from workbench import cli
    from workbench.numerics import sqnr_db

    path = zoo.path("face_detection_short_range")
    data = datasets.tflite_image_inputs(path, 12, seed=3)
    np.savez(tmp_path / "x.npz", **data)
    out = tmp_path / "face.qdq.onnx"
    args = ["--data", str(tmp_path / "x.npz"), "--json", "--quiet", "--no-search", "--batch-size", "6"]
    assert cli.main(["quantize", str(path), "--out", str(out), *args]) == 0
    result = json.loads(capsys.readouterr().out)
    assert out.is_file() and result["outputs"]["regressors"]["sqnr_db"] > 10
    qdq = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, data)
    interpreter = Session(path, progress=False, autosave=False).model.source_runtime(data)
    names = [o.name for o in ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_outputs()]
    exported = dict(zip(names, qdq, strict=True))
    assert sqnr_db(interpreter["regressors"], exported["regressors"]) > 10  # W8A8 file vs the TFLite float model
    assert cli.main(["inspect", str(path), *args]) == 0
    inspected = json.loads(capsys.readouterr().out)
    assert inspected["import"]["format"] == "tflite"
    assert min(inspected["import"]["parity_sqnr_db"].values()) > 60
