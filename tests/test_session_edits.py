"""Session verbs behind the workbench: multi-field edits, clip ranges, predicted-error
readouts (checked against measured fake quantization), undo/redo, ledger, autosave."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.models import load_model
from workbench.numerics import compute_qparams, fake_quantize, mse
from workbench.recipe import ClipRange, Mse, PerTensor, Precision, Symmetry
from workbench.runtime import Runner
from workbench.session import Session

DEMO = Path(__file__).parent.parent / "assets" / "demo"
CONV = "/blocks/blocks.1/blocks.1.0/Conv"  # a depthwise conv of the demo


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "demo.onnx"
    shutil.copy(DEMO / "mnist_dsconv.onnx", path)
    return path


@pytest.fixture
def session(model, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    s = Session(model, progress=False)
    s.calibrate(DEMO / "calib.npz", limit=64)
    return s


def test_set_several_fields_and_layers_in_one_undoable_step(session):
    convs = session.layer_names("Conv")
    assert CONV in convs and len(convs) >= 4
    session.set(convs[:2], precision="int16", symmetry="symmetric", weight_granularity="per_tensor", range="mse")
    for name in convs[:2]:
        spec = session.recipe.layers[name]
        assert spec.precision == Precision.INT16
        assert spec.activations.symmetry == Symmetry.SYMMETRIC and spec.activations.signed
        assert spec.activations.range == Mse() and spec.weights.granularity == PerTensor()
    assert convs[2] not in session.recipe.layers
    plan = session.plan
    out = session.graph.layers[convs[0]].output
    assert plan.tensors[out].qparams.bits == 16
    session.undo()
    assert session.recipe.layers == {}
    session.redo()
    assert set(session.recipe.layers) == set(convs[:2])
    session.reset(convs[0])
    assert set(session.recipe.layers) == {convs[1]}
    with pytest.raises(WorkbenchError, match="no quantizable layer named 'nope'"):
        session.set(["nope"], precision="int8")
    with pytest.raises(WorkbenchError, match="range rule 'max'"):
        session.set(CONV, range="max")


def test_undo_redo_walks_history_and_new_change_clears_redo(session):
    start = session.recipe
    session.set(CONV, precision="int16")
    session.set(CONV, precision="float16")
    session.undo()
    assert session.recipe.layers[CONV].precision == Precision.INT16
    session.undo()
    assert session.recipe == start and not session.can_undo
    with pytest.raises(WorkbenchError, match="nothing to undo"):
        session.undo()
    session.redo()
    session.set(CONV, precision="int8")
    assert not session.can_redo


def test_set_range_becomes_the_planned_grid(session):
    t = session.graph.layers[CONV].output
    session.set_range(t, -1.0, 3.0)
    assert session.recipe.tensors[t].range == ClipRange(-1.0, 3.0)
    lo, hi = session.plan.tensors[t].qparams.clip_range()
    assert lo <= -0.99 and 2.99 <= hi <= 3.02
    session.set_range(t, rule="percentile")
    assert session.plan.tensors[t].lo == pytest.approx(session.rule_ranges(t)["percentile"][0])
    session.set_range(t)
    assert t not in session.recipe.tensors
    with pytest.raises(WorkbenchError, match="give both lo and hi"):
        session.set_range(t, lo=0.0)


@pytest.mark.parametrize("shrink", [1.0, 0.3])
def test_readout_predicts_measured_fake_quant_error(session, shrink):
    """The readout comes from the histogram alone; measure the real thing on the same data."""
    t = session.graph.layers[CONV].output
    lo, hi = session.plan.tensors[t].lo * shrink, session.plan.tensors[t].hi * shrink
    r = session.readout(t, lo, hi)
    data = np.load(DEMO / "calib.npz")
    x = Runner(session.prepared, outputs=[t]).run({"image": data["image"][:64]})[t]
    spec = session.tensor_spec(t)
    qp = compute_qparams(lo, hi, bits=8, signed=spec.signed, symmetric=spec.symmetry == Symmetry.SYMMETRIC)
    measured = mse(x, fake_quantize(x, qp))
    assert r["mse"] == pytest.approx(measured, rel=0.05)
    clipped = float(np.mean((x < r["grid_lo"] - r["scale"] / 2) | (x > r["grid_hi"] + r["scale"] / 2)))
    assert r["clipped_percent"] == pytest.approx(100 * clipped, abs=0.05)
    if shrink == 1.0:
        assert 0.2 < r["rmse_over_scale"] < 0.4 and r["clip_mse"] < 0.05 * r["mse"]
    else:
        assert r["clip_mse"] > r["round_mse"]


def test_ledger_lists_diffs_and_restores(session):
    session.compare(DEMO / "eval.npz", limit=64)
    session.set(CONV, precision="int16")
    session.compare(DEMO / "eval.npz", limit=64)
    table = session.ledger_table()
    assert list(table.id) == [1, 2] and table.changes.tolist() == [0, 1]
    assert table.sqnr_db[1] > table.sqnr_db[0]  # int16 on a layer can only help here
    d = session.diff(1, 2)
    assert d.to_dict("records") == [{"path": f"layers.{CONV}", "before": None, "after": {"precision": "int16"}}]
    session.restore(1)
    assert session.recipe.layers == {}
    session.undo()
    assert CONV in session.recipe.layers


def test_autosave_survives_a_restart_and_is_offered_back(model, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    s = Session(model, progress=False)
    s.calibrate(DEMO / "calib.npz", limit=32)
    s.set(CONV, precision="int16")
    s.compare(DEMO / "eval.npz", limit=32)
    path = s.autosave_path
    assert path.is_file() and json.loads(path.read_text())["recipe"]["layers"][CONV] == {"precision": "int16"}
    del s  # the kernel "crashes": nothing else is written

    again = Session(model, progress=False)
    assert again.autosaved is not None and any("restore_autosave" in n for n in again.notes)
    assert again.recipe.layers == {}  # offered, not applied behind the user's back
    again.restore_autosave()
    assert again.recipe.layers[CONV].precision == Precision.INT16
    assert [e.id for e in again.ledger] == [1] and again.ledger[0].summary["sqnr_db"] > 20

    other = Session(model, progress=False)  # a third session that ignores the offer and edits
    other.set(CONV, precision="float16")
    assert path.with_name(path.name.removesuffix(".json") + ".previous.json").is_file()


def test_damaged_autosave_is_moved_aside_not_lost(model, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    path = Session(model, progress=False).autosave_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"model_sha256": "')
    s = Session(model, progress=False)
    assert any("damaged" in n for n in s.notes)
    assert [p.name for p in path.parent.iterdir() if ".damaged-" in p.name]


def test_autosave_of_another_model_is_not_offered(model, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    s = Session(model, progress=False)
    s.set(CONV, precision="int16")
    assert Session(model, progress=False).autosaved is not None  # same bytes: offered
    proto = load_model(model).proto  # a different model file under the same name: not offered
    proto.doc_string = "changed"
    model.write_bytes(proto.SerializeToString())
    assert Session(model, progress=False).autosaved is None


def test_a_drag_of_one_clip_range_is_one_undo_step(session):
    t = session.graph.layers[CONV].output
    start = session.recipe
    for hi in (3.0, 2.5, 2.0):
        session.set_range(t, -1.0, hi)
    assert session.recipe.tensors[t].range == ClipRange(-1.0, 2.0)
    path = session.autosave_path
    assert json.loads(path.read_text())["recipe"]["tensors"][t]["range"]["hi"] == 3.0  # drag: saved later
    session.flush()
    assert json.loads(path.read_text())["recipe"]["tensors"][t]["range"]["hi"] == 2.0
    session.undo()
    assert session.recipe == start


def test_weight_readout_shows_what_per_channel_buys(session):
    r = session.weight_readout(CONV)
    n = len(r["channel_min"])
    assert n == len(r["channel_sqnr_per_channel_db"]) == len(r["channel_sqnr_per_tensor_db"]) > 1
    assert r["per_channel_sqnr_db"] > r["per_tensor_sqnr_db"] + 3  # the demo's planted problem
    assert np.all(r["channel_sqnr_per_channel_db"] >= r["channel_sqnr_per_tensor_db"] - 0.5)


def test_sensitivity_ranks_the_planted_problem_layer_first(session):
    session.set(session.layer_names("Conv"), weight_granularity="per_tensor")
    sens = session.sensitivity(limit=32)
    assert set(sens.index) == set(session.graph.layers)
    worst = sens.idxmin()
    assert session.graph.layers[worst].op_type == "Conv"
    # the worst layer alone costs more than any non-conv layer
    assert sens[worst] < min(v for k, v in sens.items() if session.graph.layers[k].op_type != "Conv") - 3
    table = session.layers()
    assert table.set_index("layer").loc[worst, "sensitivity_db"] == sens[worst]
    assert (table.set_index("layer").loc[session.layer_names("Conv"), "weights"] == "per_tensor").all()


def test_a_pending_drag_autosave_is_written_at_exit(session):
    import subprocess
    import sys

    t = session.graph.layers[CONV].output
    code = f"""
from workbench.session import Session
s = Session({str(session.model.source)!r}, progress=False)
s.set_range({t!r}, -1.0, 3.0)
s.set_range({t!r}, -1.0, 2.0)  # merged into the drag: its autosave is deferred
print(s.autosave_path)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    assert json.loads(path.read_text())["recipe"]["tensors"][t]["range"]["hi"] == 2.0
