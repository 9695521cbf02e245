"""onnxruntime TensorQuantOverrides in and out; onnxruntime's own quantizer is the oracle."""

import json

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from tests.builders import conv_net, conv_net_data
from workbench.errors import WorkbenchError
from workbench.quantize import read_qdq_params
from workbench.session import Session


@pytest.fixture(scope="module")
def session():
    s = Session(conv_net(), progress=False)
    s.calibrate(conv_net_data(32))
    return s


def test_round_trip_reproduces_the_grid(session, tmp_path):
    exported = session.export_overrides(tmp_path / "tqo.json")
    assert json.loads((tmp_path / "tqo.json").read_text()) == exported
    assert exported["r1"][0]["quant_type"] == "QUInt8" and exported["c1.w"][0]["axis"] == 0
    fresh = Session(conv_net(), progress=False)
    fresh.calibrate(conv_net_data(8, seed=4))  # different data: the overrides must win
    fresh.import_overrides(exported)  # per-channel weight entries too: one clip range per channel
    assert fresh.recipe.tensors["c1.w"].range.per_channel
    for name, (entry,) in exported.items():
        qp = fresh.plan.tensors[name].qparams
        np.testing.assert_allclose(qp.scale, entry["scale"], rtol=1e-6)
        np.testing.assert_array_equal(qp.zero_point, entry["zero_point"])
        assert qp.axis == entry.get("axis")


def test_onnxruntime_reproduces_our_activation_grid(session, tmp_path):
    """Oracle: onnxruntime's quantize_static given our exported activation overrides writes our scales."""
    path = tmp_path / "f.onnx"
    onnx.save(session.prepared, path)
    acts = {k: [{"quant_type": QuantType.QUInt8, "scale": np.array(v[0]["scale"], np.float32),
                 "zero_point": np.array(v[0]["zero_point"], np.uint8)}]
            for k, v in session.export_overrides().items() if "axis" not in v[0]}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": conv_net_data(4)}])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(path), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, extra_options={"TensorQuantOverrides": acts})
    theirs = read_qdq_params(onnx.load(tmp_path / "q.onnx"))
    ours = read_qdq_params(session.quantize())
    common = set(acts) & set(theirs)
    assert len(common) >= 5
    for name in common:
        mine = ours.get(name) or ours[f"{name}_dequantized"]  # y = a·h + b reads h's integers
        np.testing.assert_allclose(theirs[name].scale, mine.scale, rtol=1e-6)
        np.testing.assert_array_equal(theirs[name].zero_point, mine.zero_point)


@pytest.mark.parametrize("bad, match", [
    ({"ghost": [{"quant_type": "QInt8"}]}, "'ghost' does not exist"),
    ({"bn1": [{"quant_type": "QInt8"}]}, "'bn1' is not quantized"),
    ({"r1": [{"quant_type": "QInt7"}]}, "QInt7"),
    ({"r1": [{"rmin": 0.0}]}, "both rmin and rmax"),
    ({"r1": [{"scales": 1.0}]}, "unknown key"),
    ({"r1": [{"scale": [0.1, 0.2], "zero_point": [0, 0], "axis": 1}]}, "activations take one lo and one hi"),
    ({"c1.w": [{"scale": [0.1, 0.2], "zero_point": [0, 0], "axis": 0}]}, "2 values for an array with 8 channels"),
    ({"c1.w": [{"scale": [0.1, 0.2], "zero_point": [0, 0]}]}, "and the 'axis'"),
])
def test_bad_overrides_are_errors(session, bad, match):
    before = session.recipe
    with pytest.raises(WorkbenchError, match=match):
        session.import_overrides(bad)
    assert session.recipe is before
