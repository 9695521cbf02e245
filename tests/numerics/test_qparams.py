import numpy as np
import onnx
import pytest

from workbench.errors import WorkbenchError
from workbench.numerics import QParams, compute_qparams, fake_quantize


@pytest.mark.parametrize(("bits", "signed", "qmin", "qmax", "dtype", "onnx_type"), [
    (8, True, -128, 127, np.int8, onnx.TensorProto.INT8),
    (8, False, 0, 255, np.uint8, onnx.TensorProto.UINT8),
    (16, True, -32768, 32767, np.int16, onnx.TensorProto.INT16),
    (16, False, 0, 65535, np.uint16, onnx.TensorProto.UINT16),
    (4, True, -8, 7, np.int8, onnx.TensorProto.INT4),
    (4, False, 0, 15, np.uint8, onnx.TensorProto.UINT4),
])
def test_types(bits, signed, qmin, qmax, dtype, onnx_type):
    qp = QParams(np.float32(0.5), np.int64(0 if signed else 3), bits, signed)
    assert (qp.qmin, qp.qmax) == (qmin, qmax)
    assert qp.np_dtype == np.dtype(dtype)
    assert qp.onnx_dtype == onnx_type
    lo, hi = qp.clip_range()
    z = 0 if signed else 3
    assert lo == (qmin - z) * 0.5 and hi == (qmax - z) * 0.5


def test_asymmetric_convention():
    qp = compute_qparams(-1.0, 3.0, bits=8, signed=False, symmetric=False)
    assert qp.scale == np.float32(4.0 / 255)
    assert qp.zero_point == np.rint(0 - (-1.0) / np.float64(np.float32(4.0 / 255)))
    assert qp.zero_point.dtype == np.int64 and qp.scale.dtype == np.float32
    # the range is widened to contain 0: all-positive data gets zero point qmin
    qp = compute_qparams(2.0, 6.0, bits=8, signed=True, symmetric=False)
    assert qp.zero_point == -128 and qp.scale == np.float32(6.0 / 255)
    qp = compute_qparams(-6.0, -2.0, bits=8, signed=False, symmetric=False)
    assert qp.zero_point == 255
    # zero is exactly representable
    qp = compute_qparams(-0.37, 1.91, bits=8, signed=False, symmetric=False)
    assert fake_quantize(np.float32(0.0), qp) == 0


def test_symmetric_is_narrow_range():
    qp = compute_qparams(-0.5, 2.54, bits=8, signed=True, symmetric=True)
    assert qp.scale == np.float32(2.54 / 127) and qp.zero_point == 0
    qp = compute_qparams(-3.0, 1.0, bits=8, signed=False, symmetric=True)
    assert qp.scale == np.float32(3.0 / 127) and qp.zero_point == 128
    qp = compute_qparams(-1.0, 1.0, bits=4, signed=True, symmetric=True)
    assert qp.scale == np.float32(1.0 / 7)
    qp = compute_qparams(-1.0, 1.0, bits=16, signed=True, symmetric=True)
    assert qp.scale == np.float32(1.0 / 32767)
    # ±amax land exactly on ±127
    x = np.array([-2.54, 2.54], np.float32)
    qp = compute_qparams(-2.54, 2.54, bits=8, signed=True, symmetric=True)
    np.testing.assert_allclose(fake_quantize(x, qp), x, rtol=1e-6)


@pytest.mark.parametrize("symmetric", [True, False])
def test_power_of_two_rounds_up_and_never_clips_more(symmetric):
    rng = np.random.default_rng(0)
    for _ in range(200):
        lo, hi = sorted(rng.normal(size=2) * 10 ** rng.uniform(-3, 3))
        plain = compute_qparams(lo, hi, bits=8, signed=symmetric, symmetric=symmetric)
        p2 = compute_qparams(lo, hi, bits=8, signed=symmetric, symmetric=symmetric, power_of_two=True)
        mant, _ = np.frexp(p2.scale)
        assert mant == 0.5
        assert plain.scale <= p2.scale < 2 * plain.scale
        plo, phi = p2.clip_range()
        qlo, qhi = plain.clip_range()
        if symmetric:
            assert plo <= qlo and phi >= qhi
        # the requested range (widened to contain 0) stays on the grid
        assert plo <= min(lo, 0) + 1e-6 * abs(lo) and phi >= max(hi, 0) - 1e-6 * abs(hi)
    assert compute_qparams(-1, 1, bits=8, signed=True, symmetric=True, power_of_two=True).scale == 1 / 64
    assert compute_qparams(-127, 127, bits=8, signed=True, symmetric=True, power_of_two=True).scale == 1.0


@pytest.mark.parametrize(("symmetric", "signed", "zp"),
                         [(True, True, 0), (True, False, 128), (False, True, 0), (False, False, 128)])
def test_zero_width_range(symmetric, signed, zp):
    qp = compute_qparams(0.0, 0.0, bits=8, signed=signed, symmetric=symmetric)
    assert qp.scale == 1.0 and qp.zero_point == zp
    qp = compute_qparams(-1e-44, 1e-44, bits=8, signed=signed, symmetric=symmetric)  # would be subnormal
    assert qp.scale == 1.0
    assert fake_quantize(np.zeros(3, np.float32), qp).tolist() == [0, 0, 0]


def test_per_channel():
    lo = np.array([-1.0, -2.0, 0.0])
    hi = np.array([1.0, 0.5, 0.0])
    qp = compute_qparams(lo, hi, bits=8, signed=True, symmetric=True, axis=0)
    assert qp.scale.shape == qp.zero_point.shape == (3,)
    np.testing.assert_array_equal(qp.scale, np.float32([1 / 127, 2 / 127, 1.0]))
    qp = compute_qparams(lo, hi, bits=8, signed=False, symmetric=False, axis=1)
    # zero point from the stored float32 scale: 1 / float32(2/255) = 127.4999… → 127
    assert qp.axis == 1 and qp.zero_point.tolist() == [127, 204, 128]
    with pytest.raises(WorkbenchError):
        compute_qparams(lo, hi, bits=8, signed=True, symmetric=True)  # arrays need an axis


@pytest.mark.parametrize("kw", [dict(bits=7), dict(bits=32), dict(lo=1.0, hi=0.0), dict(lo=np.nan),
                                dict(hi=np.inf)])
def test_bad_input(kw):
    args = dict(lo=-1.0, hi=1.0, bits=8, signed=True, symmetric=True) | kw
    with pytest.raises(WorkbenchError):
        compute_qparams(args.pop("lo"), args.pop("hi"), **args)


def test_qparams_validation_equality_hash():
    with pytest.raises(WorkbenchError):
        QParams(np.float32(0.0), np.int64(0), 8, True)
    with pytest.raises(WorkbenchError):
        QParams(np.float32(1.0), np.int64(200), 8, True)
    with pytest.raises(WorkbenchError):
        QParams(np.float32([1.0, 2.0]), np.int64([0, 0]), 8, True)  # per-channel without axis
    kw = dict(bits=8, signed=True, symmetric=True, axis=0)
    a = compute_qparams(np.array([-1.0, -2.0]), np.array([1.0, 2.0]), **kw)
    b = compute_qparams(np.array([-1.0, -2.0]), np.array([1.0, 2.0]), **kw)
    assert a == b and hash(a) == hash(b)
    assert a != compute_qparams(np.array([-1.0, -3.0]), np.array([1.0, 2.0]), **kw)
    with pytest.raises(ValueError):
        a.scale[0] = 3.0  # read-only
