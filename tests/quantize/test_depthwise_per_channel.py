"""Activations read only by depthwise convolutions take one scale per channel (ort-cpu): checked
against per-channel min/max of the float tensors, in the written file, in onnxruntime's default
(fused) session, and by the output SQNR it buys on channels of very different widths."""

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.quantize.verify import read_qdq_params
from workbench.recipe import Recipe
from workbench.runtime import Runner
from workbench.session import Session


def dw_net(act: str | None = "Clip") -> onnx.ModelProto:
    """x[N,3,12,12] → Conv(3→8, channel gains 0.02…3) → act → depthwise Conv → Relu → 1x1 Conv → y."""
    rng = np.random.default_rng(0)
    gains = np.geomspace(0.02, 3.0, 8)[:, None, None, None]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("c1.w", rng.normal(0, 0.5, (8, 3, 3, 3)) * gains), ("c1.b", rng.normal(0, 0.02, 8) + 0.05),
        ("dw.w", rng.normal(0, 0.5, (8, 1, 3, 3))), ("dw.b", rng.normal(0, 0.1, 8)),
        ("pw.w", rng.normal(0, 0.3, (4, 8, 1, 1))), ("pw.b", rng.normal(0, 0.1, 4)),
        ("lo", np.array(0.0)), ("hi", np.array(6.0))]]
    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1])]
    if act == "Clip":
        nodes.append(helper.make_node("Clip", ["c1", "lo", "hi"], ["a1"], name="relu6"))
    elif act == "Relu":
        nodes.append(helper.make_node("Relu", ["c1"], ["a1"], name="relu"))
    src = "a1" if act else "c1"
    nodes += [helper.make_node("Conv", [src, "dw.w", "dw.b"], ["dw"], name="dwconv", pads=[1, 1, 1, 1], group=8),
              helper.make_node("Relu", ["dw"], ["r2"], name="relu2"),
              helper.make_node("Conv", ["r2", "pw.w", "pw.b"], ["y"], name="pwconv")]
    graph = helper.make_graph(nodes, "dw_net",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 12, 12])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def data(n: int = 48) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 1, (n, 3, 12, 12)).astype(np.float32)


def _dw_input(s: Session) -> str:
    return s.graph.layers["dwconv"].inputs[0]


def test_planned_parameters_are_the_channel_ranges_clipped_to_the_tensor_range():
    s = Session(dw_net(), progress=False)
    x = data()
    s.calibrate(x)
    t = _dw_input(s)
    plan = s.plan.tensors[t]
    assert plan.qparams.axis == 1 and np.asarray(plan.qparams.scale).shape == (8,)
    full = Runner(s.prepared, outputs=[t]).run({"x": x})[t]
    lo = np.clip(full.min(axis=(0, 2, 3)), plan.lo, plan.hi)
    hi = np.clip(full.max(axis=(0, 2, 3)), plan.lo, plan.hi)
    expect = (np.maximum(hi, 0) - np.minimum(lo, 0)) / 255  # uint8 asymmetric, zero inside the range
    np.testing.assert_allclose(plan.qparams.scale, expect, rtol=1e-6)
    assert float(np.max(plan.qparams.scale)) / float(np.min(plan.qparams.scale)) > 20  # widths really differ
    written = read_qdq_params(s.quantize())[t]
    assert written.axis == 1
    np.testing.assert_array_equal(written.scale, np.asarray(plan.qparams.scale, np.float32))


def test_per_channel_beats_one_scale_and_deploys_as_simulated():
    s = Session(dw_net(), progress=False)
    x = data()
    s.calibrate(x)
    per_channel = s.compare(x).outputs.iloc[0]
    s.recipe = replace(s.recipe, depthwise_per_channel=False)
    assert s.plan.tensors[_dw_input(s)].qparams.axis is None
    per_tensor = s.compare(x).outputs.iloc[0]
    assert per_channel["sqnr_db"] > per_tensor["sqnr_db"] + 3.0, (per_channel["sqnr_db"], per_tensor["sqnr_db"])
    # onnxruntime's default session (Q/DQ fusion on) runs the file as the reference does
    assert abs(per_channel["deployed_sqnr_db"] - per_channel["sqnr_db"]) < 0.5


@pytest.mark.parametrize("act", [None, "Relu"])
def test_after_a_bare_conv_one_scale_is_kept_so_onnxruntime_can_fuse(act):
    s = Session(dw_net(act), progress=False)
    x = data(16)
    s.calibrate(x)
    axis = s.plan.tensors[_dw_input(s)].qparams.axis
    assert axis == (None if act is None else 1)
    row = s.compare(x).outputs.iloc[0]  # runs the deployed (fused) session too: no QLinearConv failure
    assert np.isfinite(row["deployed_sqnr_db"])


def test_tensor_override_and_other_targets_keep_one_scale():
    s = Session(dw_net(), progress=False)
    s.calibrate(data(16))
    t = _dw_input(s)
    s.set_range(t, 0.0, 6.0)
    assert s.plan.tensors[t].qparams.axis is None
    trt = Session(dw_net(), target="tensorrt", progress=False)
    trt.calibrate(data(16))
    assert trt.plan.tensors[_dw_input(trt)].qparams.axis is None


def test_recipe_records_the_choice():
    r = Recipe()
    assert r.depthwise_per_channel
    off = Recipe.from_json(replace(r, depthwise_per_channel=False).to_json())
    assert not off.depthwise_per_channel
    assert Recipe.from_dict({"target": "ort-cpu"}).depthwise_per_channel
