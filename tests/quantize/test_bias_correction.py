"""Bias correction: b − δ with δ_o = Σ_k (W_q − W)[o, k] · E[x_k] from calibrated input means."""

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.builders import conv_net, conv_net_data
from workbench.calibration import Calibration
from workbench.numerics import dequantize, quantize
from workbench.quantize import verify_qdq
from workbench.recipe import LayerSpec, Precision, Recipe, TensorSpec
from workbench.runtime import Runner
from workbench.session import Session


@pytest.fixture(scope="module")
def session():
    s = Session(conv_net(), progress=False)
    s.calibrate(conv_net_data(64), batch_size=16)
    return s


def _wq(session, layer):
    plan = session.plan
    name = session.graph.layers[layer].weight
    w = session.weights[name]
    return w, dequantize(quantize(w, plan.tensors[name].qparams), plan.tensors[name].qparams)


def test_channel_means_collected_and_round_trip(session):
    data = conv_net_data(64)
    cal = session.calibration
    x_mean = cal.channel_mean("x", 1)
    np.testing.assert_allclose(x_mean, data.mean(axis=(0, 2, 3)), rtol=1e-6, atol=1e-7)
    flat = Runner(session.prepared, outputs=["flat"]).run({"x": data})["flat"]  # the Gemm's input [N, 16]
    np.testing.assert_allclose(cal.channel_mean("flat", 1), flat.mean(0), rtol=1e-5, atol=1e-6)
    back = Calibration.from_dict(cal.to_dict())
    np.testing.assert_array_equal(back.channel_mean("r2", 1), cal.channel_mean("r2", 1))
    assert back.means["r2"].count == cal.means["r2"].count == 64 * 16 * 16
    assert cal.channel_mean("r2", -1) is None  # wrong axis: not collected


def test_plan_bias_equals_formula(session):
    session.recipe = replace(session.recipe, bias_correction=True)
    try:
        plan = session.plan
        cal, lg = session.calibration, session.graph
        assert any(n.startswith("bias correction: the biases of 4 layer(s)") for n in plan.notes)
        # depthwise 3x3 conv (group 8, pads 1 on 16x16): each output channel sees only its own input
        # channel, and an edge tap reads zero padding on 1 of 16 output rows/columns
        w, wq = _wq(session, "dwconv")
        mu = cal.channel_mean(lg.layers["dwconv"].inputs[0], 1)
        edge = np.array([15 / 16, 1, 15 / 16])
        cover = np.outer(edge, edge)
        delta = np.array([((wq[o, 0] - w[o, 0]).astype(np.float64) * cover).sum() * mu[o] for o in range(8)])
        b = session.weights[lg.layers["dwconv"].bias]
        np.testing.assert_allclose(plan.values[lg.layers["dwconv"].bias], b - delta, rtol=1e-6, atol=1e-7)
        # 1x1 conv: full sum over input channels
        w, wq = _wq(session, "pwconv")
        mu = cal.channel_mean("r2", 1)
        delta = np.einsum("ocij,c->o", (wq - w).astype(np.float64), mu)
        np.testing.assert_allclose(plan.values["pw.b"], session.weights["pw.b"] - delta, rtol=1e-6, atol=1e-7)
        # Gemm with transB=1: W is [N, K]
        w, wq = _wq(session, "fc")
        delta = (wq - w).astype(np.float64) @ cal.channel_mean("flat", 1)
        np.testing.assert_allclose(plan.values["fc.b"], session.weights["fc.b"] - delta, rtol=1e-6, atol=1e-7)
        # the corrected biases are what the file holds (int32 at s_in·s_w)
        model = session.quantize()
        _, qdq = session._build()
        assert verify_qdq(model, plan, qdq.effective) == []
        q = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        np.testing.assert_allclose(q["pw.b_quantized"] * plan.bias_scales["pw.b"], plan.values["pw.b"],
                                   atol=float(plan.bias_scales["pw.b"].max()))
    finally:
        session.recipe = replace(session.recipe, bias_correction=False)


def _mean_error(session, layer: str, tensor: str, correct: bool) -> np.ndarray:
    """Per-channel mean error at ``tensor`` when only ``layer``'s weights are int8."""
    others = {n: LayerSpec(precision=Precision.FLOAT32) for n in session.graph.layers if n != layer}
    session.recipe = Recipe(activations=TensorSpec(Precision.FLOAT32), layers=others, bias_correction=correct)
    data = conv_net_data(64)
    ref = Runner(session.prepared, outputs=[tensor]).run({"x": data})[tensor]
    got = Runner(session.quantize(), outputs=[tensor]).run({"x": data})[tensor]
    axes = (0, 2, 3) if ref.ndim == 4 else (0,)
    return (got.astype(np.float64) - ref).mean(axis=axes)


@pytest.mark.parametrize(("layer", "tensor", "factor"), [("pwconv", "pw", 1000), ("fc", "logits", 1000),
                                                         ("dwconv", "dw", 10)])
def test_corrected_bias_removes_mean_output_error(session, layer, tensor, factor):
    """Exact (up to float32) for 1x1 convs and Gemm; a padded 3x3 conv keeps what comes from its
    input's mean differing between border and interior positions."""
    before = session.recipe
    try:
        off = _mean_error(session, layer, tensor, False)
        on = _mean_error(session, layer, tensor, True)
    finally:
        session.recipe = before
    assert np.abs(off).max() > 1e-3  # int8 weights do shift the mean
    assert np.abs(on).max() < np.abs(off).max() / factor


def _matmul_and_biasless_conv() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (6, 3, 3, 3)).astype(np.float32), "cw"),
             numpy_helper.from_array(rng.normal(0, 0.3, (6, 5)).astype(np.float32), "mw"),
             numpy_helper.from_array(rng.normal(0, 0.1, 5).astype(np.float32), "mb")]
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], name="conv"),  # no bias: one is added
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "mw"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "mb"], ["y"], name="bias_add")]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_added_conv_bias_and_matmul_add_bias():
    s = Session(_matmul_and_biasless_conv(), progress=False)
    data = np.random.default_rng(4).uniform(0, 2, (32, 3, 8, 8)).astype(np.float32)  # mean ≠ 0
    s.calibrate(data, batch_size=16)
    s.recipe = replace(s.recipe, bias_correction=True)
    plan = s.plan
    assert plan.added_biases == {"conv": "conv.bias"}
    assert "conv.bias" in plan.bias_scales  # quantized to int32 like any bias
    w, wq = _wq(s, "mm")
    delta = s.calibration.channel_mean("f", -1) @ (wq - w).astype(np.float64)
    np.testing.assert_allclose(plan.values["mb"], s.weights["mb"] - delta, rtol=1e-6, atol=1e-7)
    model = s.quantize()
    onnx.checker.check_model(model, full_check=True)
    conv = next(n for n in model.graph.node if n.name == "conv")
    assert len(conv.input) == 3
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(inits["mb"], plan.values["mb"])  # the Add constant, still float
    _, qdq = s._build()
    assert verify_qdq(model, plan, qdq.effective) == []
    Runner(model).run({"x": data[:2]})  # runs


def test_recipe_json_round_trip():
    r = Recipe(bias_correction=True)
    back = Recipe.from_json(r.to_json())
    assert back == r and back.bias_correction is True
    assert Recipe.from_dict({}).bias_correction == Recipe().bias_correction
    assert Recipe.from_dict({"bias_correction": False}) == replace(Recipe(), bias_correction=False)


def test_search_tries_bias_correction_equalization_and_affine_chains_both_ways():
    s = Session(conv_net(), progress=False)
    s.calibrate(conv_net_data(64), batch_size=16)
    table = s.search_ranges()
    rules, default = table.iloc[:5], Recipe()
    assert len(table) == 8 and set(rules["bias_correction"]) == {default.bias_correction}
    assert set(rules["depthwise_equalization"]) == {default.depthwise_equalization}
    # the sixth candidate is the best rule with bias correction switched
    assert table.iloc[5]["rule"] == rules.loc[rules["sqnr_db"].idxmax(), "rule"]
    assert bool(table.iloc[5]["bias_correction"]) != default.bias_correction
    # the seventh: the better of those two with equalization switched
    assert bool(table.iloc[6]["depthwise_equalization"]) != default.depthwise_equalization
    assert table.iloc[6]["bias_correction"] == table.iloc[:6].loc[table.iloc[:6]["sqnr_db"].idxmax(), "bias_correction"]
    # the eighth: the best so far with the scalar affine chains (conv_net's 0.5·mp) left in float
    assert bool(table.iloc[7]["fold_affine_chains"]) != default.fold_affine_chains
    assert table.iloc[7]["depthwise_equalization"] == table.iloc[:7].loc[table.iloc[:7]["sqnr_db"].idxmax(),
                                                                          "depthwise_equalization"]
    best = table.loc[table["sqnr_db"].idxmax()]
    assert s.recipe.bias_correction == best["bias_correction"]
    assert s.recipe.depthwise_equalization == best["depthwise_equalization"]
    assert s.recipe.fold_affine_chains == best["fold_affine_chains"]
    assert s.recipe.to_dict()["activations"]["range"]["rule"] == best["rule"]
    assert any("bias correction" in n and "depthwise equalization" in n for n in s.notes)
    s2 = Session(conv_net(), progress=False)
    s2.calibrate(conv_net_data(64), batch_size=16)
    assert len(s2.search_ranges(switches=())) == 5 and s2.recipe.bias_correction == default.bias_correction
