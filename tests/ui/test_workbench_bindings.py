"""The workbench's bindings without a browser (ipywidgets' dummy comm): moving a control
changes ``session.recipe``; a recipe change made from Python updates the controls and plots."""

import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("jupyter_bokeh")

from workbench.recipe import ClipRange, PerTensor, Precision, Symmetry, rule_name
from workbench.session import Session
from workbench.ui import Workbench

DEMO = Path(__file__).parent.parent.parent / "assets" / "demo"
DW = "/blocks/blocks.1/blocks.1.0/Conv"  # a depthwise conv


@pytest.fixture
def wb(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    model = tmp_path / "demo.onnx"
    shutil.copy(DEMO / "mnist_dsconv.onnx", model)
    s = Session(model, progress=False)
    s.calibrate(DEMO / "calib.npz", limit=64)
    bench = Workbench(s, eval_data=DEMO / "eval.npz", eval_limit=128)
    bench.focus(DW)
    yield bench
    bench.close()


def js_change(widget, model, attr, value):
    """What BokehJS sends when the user drags a glyph in the browser."""
    widget._sync_model(widget, {"event": "jsevent", "kind": "ModelChanged", "model": {"id": model.id},
                                "attr": attr, "new": value}, [])


def test_controls_change_the_recipe(wb):
    s = wb.session
    wb.controls.precision.value = "int16"
    assert s.recipe.layers[DW].precision == Precision.INT16
    wb.controls.symmetry.value = "symmetric"
    assert s.recipe.layers[DW].activations.symmetry == Symmetry.SYMMETRIC
    wb.controls.granularity.value = "per_tensor"
    assert s.recipe.layers[DW].weights.granularity == PerTensor()
    wb.controls.scope.value = "all of this op type"
    wb.controls.precision.value = "float16"
    assert {n for n, spec in s.recipe.layers.items() if spec.precision == Precision.FLOAT16} == set(
        s.layer_names("Conv"))
    wb.controls.undo.click()
    assert s.recipe.layers[DW].precision == Precision.INT16
    assert wb.controls.precision.value == "int16"  # the control follows the undo


def test_typing_sliding_and_dragging_set_the_clip_range_and_readout(wb):
    s, h = wb.session, wb.histogram
    t = h.tensor
    before = h.readout.value
    h.hi_box.value = 0.5 * h.hi_box.value
    assert isinstance(s.recipe.tensors[t].range, ClipRange)
    assert h.readout.value != before and "clipped" in h.readout.value
    assert h.hi_line.location == pytest.approx(s.recipe.tensors[t].range.hi)
    h.slider.value = (h.slider.value[0], h.slider.value[1] * 0.5)
    assert s.recipe.tensors[t].range.hi == pytest.approx(h.slider.value[1])
    js_change(h.plot, h.lo_line, "location", -0.25)  # a drag in the browser
    assert s.recipe.tensors[t].range.lo == pytest.approx(-0.25)
    assert h.lo_box.value == pytest.approx(-0.25)
    assert h.clipped_lo.right <= -0.2  # shaded clipped mass follows the grid's edge
    h.rule.value = "percentile"
    assert s.recipe.tensors[t].range.__class__.__name__ == "Percentile"
    h.rule.value = "recipe default"
    assert t not in s.recipe.tensors


def test_python_changes_update_controls_table_and_plots(wb):
    s, h = wb.session, wb.histogram
    s.set(DW, precision="int4")
    assert wb.controls.precision.value == "int4"
    row = wb.table.source.data["layer"].index(DW)
    assert wb.table.source.data["precision"][row] == s.plan.layer_precision[DW]
    s.set_range(h.tensor, 0.0, 1.25)
    assert h.hi_line.location == pytest.approx(1.25) and h.hi_box.value == pytest.approx(1.25)
    assert h.rule.value == "clip"


def test_selecting_a_row_focuses_the_layer_everywhere(wb):
    names = wb.table.source.data["layer"]
    other = next(n for n in names if n != DW and wb.session.graph.layers[n].weight)
    wb.table.source.selected.indices = [names.index(other)]
    assert wb.focused == other
    assert wb.histogram.tensor in (wb.session.graph.layers[other].output, *wb.session.graph.layers[other].inputs)
    assert wb.session.graph.layers[other].weight in wb.weights.title.value
    js_change(wb.table.plot, wb.table.source.selected, "indices", [names.index(DW)])
    assert wb.focused == DW


def test_sensitivity_button_fills_the_column(wb):
    wb.table.sensitivity.click()
    sens = wb.table.source.data["sensitivity_db"]
    assert all(isinstance(v, float) for v in sens) and min(sens) < max(sens)


def test_search_defaults_keeps_the_best_candidate_and_the_layer_settings(wb):
    s = wb.session
    s.set(DW, precision="int16")  # a hand-tuned layer
    before = s.recipe
    wb.apply_panel.search.click()
    shown = wb.apply_panel.result.value
    rows = re.findall(r"<tr>(.*?)</tr>", shown)[1:]
    kept = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows if ">kept<" in r]
    assert len(rows) == 8 and len(kept) == 1  # 5 rules, then 3 switches
    scores = [float(re.findall(r"<td[^>]*>(.*?)</td>", r)[-1]) for r in rows]
    assert float(kept[0][-1]) == max(scores)
    assert kept[0][1] == rule_name(s.recipe.activations.range)
    assert kept[0][2] == str(s.recipe.bias_correction)
    assert s.recipe.layers[DW].precision == Precision.INT16 and "chosen by output SQNR" in shown
    wb.controls.undo.click()
    assert s.recipe == before


def test_filters_keep_matching_layers(wb):
    wb.table.op.value = "Conv"
    assert set(wb.table.source.data["op_type"]) == {"Conv"}
    wb.table.name.value = "blocks.1"
    assert all("blocks.1" in n for n in wb.table.source.data["layer"])
    assert wb.table.count.value.startswith(f"{len(wb.table.source.data['layer'])} of")


def test_apply_ledger_export(wb, tmp_path):
    wb.apply_panel.apply()
    wb.controls.precision.value = "int16"
    wb.apply_panel.apply()
    assert [e.id for e in wb.session.ledger] == [1, 2]
    assert "(before)" in wb.apply_panel.result.value and "(now)" in wb.apply_panel.result.value
    shown = wb.apply_panel.result.value
    assert "since #1, 90 % interval [" in shown and "over these 128 samples" in shown
    assert "ledger" in wb.ledger.list.value and wb.ledger.a.options[-1] == ("#2", 2)
    wb.ledger.a.value, wb.ledger.b.value = 1, 2
    assert "precision" in wb.ledger.diff.value
    wb.ledger.back.click()
    assert DW not in wb.session.recipe.layers
    wb.export_panel.path.value = str(tmp_path / "out.qdq.onnx")
    written = wb.export_panel.export()
    assert Path(written["model"]).is_file() and Path(written["report"]).is_file()
    assert "out.qdq.onnx" in wb.export_panel.result.value


def test_autosave_banner_offers_restore(wb):
    s = wb.session
    s.set(DW, precision="int16")
    again = Session(s.model.source, progress=False)
    again.calibration = s.calibration
    bench = Workbench(again)
    try:
        assert "autosaved recipe" in bench.header.value and bench.restore in bench.children
        bench.restore.click()
        assert again.recipe.layers[DW].precision == Precision.INT16
        assert "autosaved recipe" not in bench.header.value
    finally:
        bench.close()
