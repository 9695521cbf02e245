"""Runner: sessions over graph outputs and intermediates, optimisation levels, errors; run_batches."""

from __future__ import annotations

import numpy as np
import pytest
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.models import large
from workbench.runtime import Feeds, Runner, run_batches


def test_runs_graph_outputs_and_matches_numpy(mk):
    proto, w, b = mk.gemm_model()
    runner = Runner(mk.load(proto).proto)
    assert runner.output_names == ["y"] and runner.input_names == ["x"]
    x = mk.f32(5, 4)
    out = runner.run({"x": x})
    assert list(out) == ["y"]
    np.testing.assert_allclose(out["y"], np.maximum(x @ w.T + b, 0), rtol=1e-5, atol=1e-6)


def test_intermediates_equal_a_model_that_outputs_them(mk):
    model = mk.load(mk.conv_model())
    direct = model.proto.__class__()
    direct.CopyFrom(model.proto)
    direct.graph.output.extend([vi for vi in model.proto.graph.value_info if vi.name in ("c", "f")])
    x = mk.f32(3, 3, 8, 8)
    want = Runner(direct, outputs=["c", "f", "y"]).run({"x": x})
    runner = Runner(model.proto, outputs=["c", "y", "f"])
    assert runner.output_names == ["c", "y", "f"]
    got = runner.run({"x": x})
    assert list(got) == ["c", "y", "f"]
    for name in ("c", "f", "y"):
        np.testing.assert_array_equal(got[name], want[name])
    assert [o.name for o in model.proto.graph.output] == ["y"], "the proto must not be changed"


def test_intermediate_without_inferred_type(mk):
    proto = mk.conv_model()  # raw proto: no value_info at all, onnxruntime infers the types
    assert len(proto.graph.value_info) == 0
    x = mk.f32(2, 3, 8, 8)
    got = Runner(proto, outputs=["r"]).run({"x": x})["r"]
    want = Runner(mk.load(proto).proto, outputs=["r"]).run({"x": x})["r"]
    assert got.shape == (2, 4, 6, 6) and got.min() >= 0
    np.testing.assert_array_equal(got, want)


def test_inputs_and_initializers_can_be_read(mk):
    proto, w, _ = mk.gemm_model()
    x = mk.f32(2, 4)
    out = Runner(proto, outputs=["x", "W"], optimize=True).run({"x": x})
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["W"], w)


def test_optimize_on_and_off_agree_in_float(mk):
    proto = mk.load(mk.conv_model()).proto
    x = mk.f32(4, 3, 8, 8)
    ref = Runner(proto, outputs=["r", "y"]).run({"x": x})
    for kw in ({"optimize": True}, {"optimize": True, "exact_quant": True}, {"exact_quant": True}):
        out = Runner(proto, outputs=["r", "y"], **kw).run({"x": x})
        for k in ref:
            np.testing.assert_allclose(out[k], ref[k], rtol=1e-4, atol=1e-5)


def test_unknown_output_name_lists_valid_names(mk):
    msg = r"^no tensor named 'nope' in the model; valid names include: c, r, f, y$"
    with pytest.raises(WorkbenchError, match=msg):
        Runner(mk.conv_model(), outputs=["nope", "c"])
    with pytest.raises(WorkbenchError, match=r"'relu' is a node, not a tensor; pass its output tensor name"):
        Runner(mk.conv_model(), outputs=["relu"])


def test_empty_output_list(mk):
    with pytest.raises(WorkbenchError, match="outputs is empty"):
        Runner(mk.conv_model(), outputs=[])


@pytest.mark.parametrize(("feed", "fragment"), [
    ({}, "input 'x' is missing; the model takes: x float32 [N,4]"),
    ({"x": np.zeros((2, 4))}, "input 'x': expected dtype float32, got float64"),
    ({"x": np.zeros((2, 4), np.float32), "z": 1}, "unknown input 'z'"),
    ({"x": np.zeros((2, 5), np.float32)}, "onnxruntime could not run the model on this feed"),
    ([np.zeros((2, 4), np.float32)], "takes a dict"),
])
def test_bad_feeds(mk, feed, fragment):
    runner = Runner(mk.gemm_model()[0])
    with pytest.raises(WorkbenchError) as info:
        runner.run(feed)
    assert fragment in str(info.value)


def test_large_models_go_through_external_data(mk, monkeypatch):
    proto = mk.conv_model()
    x = mk.f32(2, 3, 8, 8)
    want = Runner(proto, outputs=["c", "y"]).run({"x": x})
    monkeypatch.setattr(large, "MAX_PROTO_BYTES", 0)  # treat every model as over 2 GB
    model = mk.load(proto)  # checker, shape inference and onnxruntime check via files
    assert model.tensor_types()["c"].shape == ("N", 4, 6, 6)
    runner = Runner(model.proto, outputs=["c", "y"])
    assert runner._tmp is not None
    got = runner.run({"x": x})
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_run_batches_yields_each_batch(mk):
    proto, w, b = mk.gemm_model()
    model = mk.load(proto)
    x = mk.f32(70, 4)
    feeds = Feeds({"x": x}, model.inputs, batch_size=32)
    outs = list(run_batches(Runner(model.proto), feeds, desc="test", progress=False))
    assert [o["y"].shape[0] for o in outs] == [32, 32, 6]
    np.testing.assert_allclose(np.concatenate([o["y"] for o in outs]), np.maximum(x @ w.T + b, 0),
                               rtol=1e-5, atol=1e-6)


def test_run_batches_closes_the_bar_on_keyboard_interrupt(mk):
    proto, _, _ = mk.gemm_model()
    runner = Runner(proto)

    def feeds():
        yield {"x": mk.f32(2, 4)}
        raise KeyboardInterrupt

    before = len(tqdm._instances)
    gen = run_batches(runner, feeds(), total=5)
    assert next(gen)["y"].shape == (2, 3)
    assert len(tqdm._instances) == before + 1
    with pytest.raises(KeyboardInterrupt):
        next(gen)
    assert len(tqdm._instances) == before
