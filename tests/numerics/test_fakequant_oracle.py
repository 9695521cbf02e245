"""quantize/dequantize against onnxruntime's QuantizeLinear/DequantizeLinear (opset 21), bit for
bit, and against torch's fake quantization where the conventions coincide."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from workbench.errors import WorkbenchError
from workbench.numerics import QParams, compute_qparams, dequantize, fake_quantize, quantize

TYPES = [(8, True), (8, False), (16, True), (16, False), (4, True), (4, False)]
_OUT_OK = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16}  # numpy-visible


def _model(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def _params(qp: QParams):
    shape = list(qp.scale.shape)
    return [helper.make_tensor("s", TensorProto.FLOAT, shape, qp.scale.ravel().tolist()),
            helper.make_tensor("z", qp.onnx_dtype, shape, qp.zero_point.ravel().tolist())]


def ort_qdq(x: np.ndarray, qp: QParams):
    """(q or None, dequantized) from onnxruntime."""
    kw = {} if qp.axis is None else {"axis": qp.axis}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **kw),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **kw)]
    shape = list(x.shape)
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)]
    if qp.onnx_dtype in _OUT_OK:
        outs.append(helper.make_tensor_value_info("q", qp.onnx_dtype, shape))
    sess = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], outs, _params(qp))
    res = sess.run(None, {"x": x})
    return (res[1] if len(res) > 1 else None), res[0]


def ort_dq(q: np.ndarray, qp: QParams) -> np.ndarray:
    kw = {} if qp.axis is None else {"axis": qp.axis}
    shape = list(q.shape)
    sess = _model([helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **kw)],
                  [helper.make_tensor_value_info("q", qp.onnx_dtype, shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], _params(qp))
    return sess.run(None, {"q": q})[0]


def check_exact(x: np.ndarray, qp: QParams) -> None:
    q_ref, y_ref = ort_qdq(x, qp)
    q = quantize(x, qp)
    assert q.dtype == qp.np_dtype
    assert q.min() >= qp.qmin and q.max() <= qp.qmax
    if q_ref is not None:
        np.testing.assert_array_equal(q, q_ref)
    y = fake_quantize(x, qp)
    assert y.dtype == np.float32
    # bit-exact, including the sign of zero
    np.testing.assert_array_equal(y.view(np.int32), y_ref.view(np.int32))


def _random_qp(rng, bits, signed, channels=None, axis=None):
    qp0 = QParams(np.float32(1), np.int64(0 if signed else 1), bits, signed)
    shape = () if channels is None else (channels,)
    scale = (10.0 ** rng.uniform(-4, 2, size=shape)).astype(np.float32)
    zp = rng.integers(qp0.qmin, qp0.qmax + 1, size=shape)
    return QParams(scale, zp, bits, signed, axis)


EDGE = np.array([0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 128.5, -127.5, -128.5, -129.5,
                 1e-45, -1e-45, 1e-38, 3.0e38, -3.0e38, np.finfo(np.float32).max, np.finfo(np.float32).min,
                 np.inf, -np.inf, np.nan, 65535.5, 32767.5, -32768.5, 7.5, -8.5, 15.5], np.float32)


@pytest.mark.parametrize(("bits", "signed"), TYPES)
def test_random_per_tensor(bits, signed):
    rng = np.random.default_rng(bits * 2 + signed)
    for _ in range(8):
        qp = _random_qp(rng, bits, signed)
        x = (rng.normal(size=20000) * qp.scale * (qp.qmax - qp.qmin) / 3).astype(np.float32)
        check_exact(x, qp)


@pytest.mark.parametrize(("bits", "signed"), TYPES)
@pytest.mark.parametrize("scale", [1.0, 0.25, 0.1, 1 / 3, 1e-30, 1e30, 7.0])
def test_edge_cases(bits, signed, scale):
    qp = QParams(np.float32(scale), np.int64(0 if signed else 1 << (bits - 1)), bits, signed)
    with np.errstate(over="ignore"):
        x = np.r_[EDGE, EDGE * np.float32(scale), (np.arange(-70, 70) + np.float32(0.5)) * np.float32(scale)]
    check_exact(x.astype(np.float32), qp)


def test_ties_near_reciprocal_disagreement():
    """Where x·(1/s) and x/s round differently, onnxruntime divides."""
    s = np.float32(0.0371)
    rng = np.random.default_rng(3)
    x = (rng.normal(size=1 << 20) * 3).astype(np.float32)
    mul = np.rint(x * (np.float32(1) / s))
    div = np.rint(x / s)
    assert np.any((mul != div) & (np.abs(div) < 127))  # the case exists in this sample
    check_exact(x, QParams(s, np.int64(0), 8, True))


@pytest.mark.parametrize(("bits", "signed"), TYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_per_channel(bits, signed, axis):
    rng = np.random.default_rng(7)
    shape = (5, 6, 3)
    qp = _random_qp(rng, bits, signed, channels=shape[axis], axis=axis)
    b = [1, 1, 1]
    b[axis] = -1
    x = (rng.normal(size=shape) * (qp.scale.reshape(b) * (qp.qmax - qp.qmin) / 3)).astype(np.float32)
    x.flat[:4] = [np.nan, np.inf, -0.0, 1e38]
    check_exact(x, qp)


@pytest.mark.parametrize(("bits", "signed"), [t for t in TYPES if t[0] > 4])
def test_dequantize_matches(bits, signed):
    rng = np.random.default_rng(11)
    qp = _random_qp(rng, bits, signed)
    q = rng.integers(qp.qmin, qp.qmax + 1, size=5000).astype(qp.np_dtype)
    np.testing.assert_array_equal(dequantize(q, qp), ort_dq(q, qp))
    qpc = _random_qp(rng, bits, signed, channels=4, axis=1)
    q = rng.integers(qp.qmin, qp.qmax + 1, size=(3, 4, 5)).astype(qp.np_dtype)
    np.testing.assert_array_equal(dequantize(q, qpc), ort_dq(q, qpc))


def test_nan_maps_to_qmin_like_onnxruntime():
    qp = QParams(np.float32(0.5), np.int64(3), 8, False)
    assert quantize(np.float32(np.nan), qp) == 0
    assert quantize(np.float32(np.nan), QParams(np.float32(0.5), np.int64(0), 8, True)) == -128


def test_per_channel_shape_mismatch():
    qp = compute_qparams(np.zeros(3) - 1, np.ones(3), bits=8, signed=True, symmetric=True, axis=0)
    with pytest.raises(WorkbenchError):
        quantize(np.zeros((4, 2), np.float32), qp)
    with pytest.raises(WorkbenchError):
        quantize(np.zeros((3, 2), np.float32), qp, rounding="up")


# -- torch ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("qmin", "qmax", "signed", "bits"), [(-128, 127, True, 8), (0, 255, False, 8),
                                                             (-8, 7, True, 4), (0, 15, False, 4)])
def test_torch_per_tensor(qmin, qmax, signed, bits):
    rng = np.random.default_rng(5)
    x = (rng.normal(size=50000) * 40).astype(np.float32)
    x[:6] = [0.5, 1.5, -2.5, 3.5, -0.5, 0.0]
    for scale in (0.125, 0.5, 2.0, 0.0371, 0.3):
        for zp in (0, (qmin + qmax + 1) // 2, qmin + 1):
            qp = QParams(np.float32(scale), np.int64(zp), bits, signed)
            ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), scale, zp, qmin, qmax).numpy()
            ours = fake_quantize(x, qp)
            if np.frexp(scale)[0] == 0.5:  # x·(1/s) == x/s exactly: identical
                np.testing.assert_array_equal(ours, ref)
            else:  # torch multiplies by the reciprocal: rare last-bit tie differences, one step at most
                diff = ours != ref
                assert diff.mean() < 1e-3
                np.testing.assert_allclose(np.abs(ours - ref)[diff], scale, rtol=1e-5)


def test_torch_per_channel():
    rng = np.random.default_rng(6)
    x = (rng.normal(size=(4, 7, 9)) * 20).astype(np.float32)
    scale = np.float32([0.25, 0.5, 1.0, 0.125, 2.0, 0.0625, 4.0])
    zp = rng.integers(-20, 20, size=7)
    qp = QParams(scale, zp, 8, True, axis=1)
    ref = torch.fake_quantize_per_channel_affine(torch.from_numpy(x), torch.from_numpy(scale),
                                                 torch.from_numpy(zp.astype(np.int32)), 1, -128, 127).numpy()
    np.testing.assert_array_equal(fake_quantize(x, qp), ref)


# -- stochastic rounding ----------------------------------------------------------------------
def test_stochastic_rounding_is_unbiased_and_seeded():
    qp = QParams(np.float32(1.0), np.int64(0), 8, True)
    x = np.full(200000, 2.3, np.float32)
    q = quantize(x, qp, rounding="stochastic", rng=np.random.default_rng(0))
    assert set(np.unique(q).tolist()) == {2, 3}
    assert abs(q.mean() - 2.3) < 0.005
    np.testing.assert_array_equal(q, quantize(x, qp, rounding="stochastic", rng=np.random.default_rng(0)))
    xs = np.float32([-3.75, 5.0, 200.0, -200.0, np.nan])
    rng = np.random.default_rng(1)
    qs = np.stack([quantize(xs, qp, rounding="stochastic", rng=rng) for _ in range(4000)])
    assert abs(qs[:, 0].mean() + 3.75) < 0.03
    np.testing.assert_array_equal(qs[:, 1:], np.broadcast_to([5, 127, -128, -128], (4000, 4)))
