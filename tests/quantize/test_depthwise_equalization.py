"""Activations read only by depthwise convolutions are equalized: the producing Conv's channels are
divided by s_c and the depthwise filters multiplied by it. Checked against the formula on the
float tensors, in the written file (same integer weights, one activation scale), by the output
SQNR it buys on channels of very different widths, and in onnxruntime's default session, where
every convolution must still run as an integer kernel."""

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.quantize.equalize import MIN_SCALE
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


def _fused_ops(model: onnx.ModelProto) -> list[str]:
    """Op types of ``model`` after onnxruntime's default (all) graph optimisations."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(Path(d) / "opt.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


def _channel_scales(s: Session, x: np.ndarray) -> np.ndarray:
    """s_c from the float tensor itself: channel range clipped to the tensor's range, over it."""
    t = _dw_input(s)
    plan = s.plan.tensors[t]
    full = Runner(s.prepared, outputs=[t]).run({"x": x})[t]
    lo = np.clip(full.min(axis=(0, 2, 3)), plan.lo, plan.hi)
    hi = np.clip(full.max(axis=(0, 2, 3)), plan.lo, plan.hi)
    up = hi / plan.hi if plan.hi > 0 else 0 * hi
    down = lo / plan.lo if plan.lo < 0 else 0 * lo
    return np.maximum(np.maximum(up, down), MIN_SCALE)


@pytest.mark.parametrize("act", ["Clip", "Relu", None])
def test_scaled_weights_keep_their_integers_and_the_float_function(act):
    s = Session(dw_net(act), progress=False)
    x = data()
    s.calibrate(x)
    plan = s.plan
    sc = _channel_scales(s, x)
    assert sc.max() / sc.min() > 20  # channel widths really differ
    np.testing.assert_allclose(plan.values["c1.w"], s.weights["c1.w"] / sc[:, None, None, None], rtol=1e-5)
    np.testing.assert_allclose(plan.values["c1.b"], s.weights["c1.b"] / sc, rtol=1e-5)
    np.testing.assert_allclose(plan.values["dw.w"], s.weights["dw.w"] * sc[:, None, None, None], rtol=1e-5)
    assert "pw.w" not in plan.values and "dw.b" not in plan.values
    off = replace(s.recipe, depthwise_equalization=False)
    s_off = Session(dw_net(act), progress=False, recipe=off)
    s_off.calibrate(x)
    written, unscaled = (read_qdq_params(m.quantize()) for m in (s, s_off))
    assert written[_dw_input(s)].axis is None  # one scale per activation tensor
    inits = {t.name: numpy_helper.to_array(t) for t in s.quantize().graph.initializer}
    inits_off = {t.name: numpy_helper.to_array(t) for t in s_off.quantize().graph.initializer}
    for w in ("c1.w", "dw.w"):  # per-channel symmetric: the same integers, scales moved by s_c
        np.testing.assert_array_equal(inits[f"{w}_quantized"], inits_off[f"{w}_quantized"])
    # the float function is unchanged on the calibrated range: the equalized weights run in float
    ref = Runner(s.prepared).run({"x": x})["y"]
    scaled = onnx.ModelProto()
    scaled.CopyFrom(s.prepared)
    for t in scaled.graph.initializer:
        if t.name in plan.values:
            t.CopyFrom(numpy_helper.from_array(plan.values[t.name], t.name))
    np.testing.assert_allclose(Runner(scaled).run({"x": x})["y"], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert written[_dw_input(s)].scale == unscaled[_dw_input(s)].scale  # the tensor's own range rule


def test_equalization_beats_one_scale_and_runs_as_integer_kernels():
    s = Session(dw_net(), progress=False)
    x = data()
    s.calibrate(x)
    equalized = s.compare(x).outputs.iloc[0]
    ops = _fused_ops(s.quantize())
    # conv1 (+Clip) and the depthwise conv run as integer kernels (the last conv writes the float output)
    assert ops.count("QLinearConv") == 2, ops
    s.recipe = replace(s.recipe, depthwise_equalization=False)
    assert not s.plan.values
    assert sorted(_fused_ops(s.quantize())) == sorted(ops)
    one_scale = s.compare(x).outputs.iloc[0]
    assert equalized["sqnr_db"] > one_scale["sqnr_db"] + 3.0, (equalized["sqnr_db"], one_scale["sqnr_db"])
    # onnxruntime's default session (Q/DQ fusion on) runs the file as the reference does
    assert abs(equalized["deployed_sqnr_db"] - equalized["sqnr_db"]) < 0.5


def test_clip_with_a_bound_away_from_zero_and_overrides_are_left_alone():
    m = dw_net("Clip")
    lo = next(t for t in m.graph.initializer if t.name == "lo")
    lo.CopyFrom(numpy_helper.from_array(np.array(0.05, np.float32), "lo"))  # clip(x/s, .05, 6) ≠ clip(x, .05, 6)/s
    s = Session(m, progress=False)
    s.calibrate(data(16))
    assert not s.plan.values
    s = Session(dw_net(), progress=False)
    s.calibrate(data(16))
    s.set_range(_dw_input(s), 0.0, 6.0)
    assert not s.plan.values


def test_recipe_records_the_choice():
    r = Recipe()
    assert r.depthwise_equalization
    off = Recipe.from_json(replace(r, depthwise_equalization=False).to_json())
    assert not off.depthwise_equalization
    assert Recipe.from_dict({"target": "ort-cpu"}).depthwise_equalization
    assert not Recipe.from_dict({"depthwise_per_channel": False}).depthwise_equalization  # the earlier key
