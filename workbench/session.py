"""The one object with state: a model, its statistics, the recipe, the results.

Verbs: :meth:`Session.calibrate`, :meth:`Session.set` / :attr:`Session.recipe`,
:meth:`Session.quantize`, :meth:`Session.compare`, :meth:`Session.export`. State is
replaced, never mutated in place, so traitlets observers (the widgets) see every change.

    s = Session("model.onnx", target="ort-cpu")
    s.calibrate("calib.npz")
    s.set("conv5", precision="int16")
    cmp = s.compare("eval.npz", metric=accuracy)
    s.export("model.qdq.onnx", report="report.html")
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
from traitlets import HasTraits, Instance, List

from workbench.analysis.compare import Comparison, LayerRow, Metric, compare
from workbench.calibration import Calibration, WeightStats, calibrate, weight_stats
from workbench.errors import WorkbenchError
from workbench.export.atomic import save_model, writable_path, write_text
from workbench.graph.layers import find_layers
from workbench.graph.prepare import prepare
from workbench.models import LoadedModel, load_model
from workbench.numerics import ErrorAccumulator
from workbench.quantize import QdqModel, QuantPlan, build_plan, build_qdq, verify_qdq
from workbench.quantize.overrides import overrides_to_recipe, plan_to_overrides
from workbench.quantize.plan import check_names
from workbench.recipe import Auto, Entropy, LayerSpec, MinMax, Mse, Percentile, Precision, RangeRule, Recipe, rule_name
from workbench.runtime import Runner, as_feeds
from workbench.targets import get_target

SEARCH_RULES: tuple[RangeRule, ...] = (Auto(), MinMax(), Percentile(99.99), Entropy(), Mse())


class Session(HasTraits):
    """A model being quantized. ``recipe`` is a trait: assign a new Recipe to change it."""

    recipe = Instance(Recipe)
    calibration = Instance(Calibration, allow_none=True)
    comparison = Instance(Comparison, allow_none=True)
    history = List()

    def __init__(self, model: Any, *, target: str | None = None, recipe: Recipe | None = None,
                 progress: bool = True) -> None:
        super().__init__()
        self.model: LoadedModel = load_model(model)
        if recipe is not None and target is not None and recipe.target != target:
            raise WorkbenchError(f"recipe is for target {recipe.target!r} but target={target!r} was given; "
                                 "drop one of them")
        self.target = get_target(target or (recipe.target if recipe else "ort-cpu"))
        self.progress = progress
        self.prepared, notes = prepare(self.model.proto)
        self.notes: list[str] = [*self.model.notes, *notes]
        self.graph = find_layers(self.prepared)
        self.weights = {t.name: onnx.numpy_helper.to_array(t) for t in self.prepared.graph.initializer}
        self._built: tuple[Recipe, QuantPlan, QdqModel] | None = None
        self._calibration_data: Any = None
        self.recipe = recipe or self.target.default_recipe()

    @property
    def _splittable(self) -> bool:
        """Batches may be cut into smaller ones (every input has a dynamic batch axis)."""
        return all(i.batch_dynamic for i in self.model.inputs)

    # -- data ------------------------------------------------------------------------------
    def feeds(self, data: Any, *, batch_size: int = 32, limit: int | None = None):
        return as_feeds(data, self.model, batch_size=batch_size, limit=limit)

    def calibrate(self, data: Any, *, batch_size: int = 32, limit: int | None = None) -> Calibration:
        """One streaming pass over ``data``: a histogram for every quantizable activation."""
        feeds = self.feeds(data, batch_size=batch_size, limit=limit)
        self._calibration_data = data
        self.calibration = calibrate(self.prepared, self.graph.activation_tensors(), feeds,
                                     num_batches=feeds.num_batches, progress=self.progress,
                                     splittable=self._splittable)
        self._built = None
        return self.calibration

    # -- recipe ----------------------------------------------------------------------------
    def set(self, layer: str, *, precision: str | Precision | None = None) -> Recipe:
        """Set one layer's precision ('float32', 'float16', 'int16', 'int8', 'int4'; None resets)."""
        if layer not in self.graph.layers:
            raise WorkbenchError(f"no quantizable layer named {layer!r}; see session.layers()")
        old = self.recipe.layers.get(layer, LayerSpec())
        spec = replace(old, precision=precision)
        self.recipe = self.recipe.with_layer(layer, None if spec == LayerSpec() else spec)
        return self.recipe

    def load_recipe(self, path: str | os.PathLike) -> Recipe:
        p = Path(path)
        if not p.is_file():
            raise WorkbenchError(f"recipe file {str(p)!r} does not exist")
        recipe = Recipe.from_json(p.read_text())
        self.target = get_target(recipe.target)
        self.recipe = recipe
        return recipe

    def search_ranges(self, data: Any = None, *, rules: tuple[RangeRule, ...] = SEARCH_RULES,
                      batch_size: int = 16, limit: int = 16) -> pd.DataFrame:
        """Try each activation range rule as the recipe's default, keep the one whose model
        outputs have the highest SQNR on ``data`` (default: the calibration data, first
        ``limit`` samples), and return the table of candidates.

        No single rule is best on every model (percentile wins on one OCR network, the
        per-tensor MSE/auto choice on another): measuring beats guessing, and choosing one of
        a handful of rules on calibration data does not overfit."""
        if data is None:
            if self._calibration_data is None:
                raise WorkbenchError("search_ranges needs data; pass it, or call calibrate(data) first")
            data = self._calibration_data
        feeds = list(self.feeds(data, batch_size=batch_size, limit=limit))
        float_run = Runner(self.prepared)
        reference = [float_run.run(feed) for feed in feeds]
        base = self.recipe
        rows = []
        try:
            for rule in rules:
                self.recipe = replace(base, activations=replace(base.activations, range=rule))
                quant_run = Runner(self.quantize())
                errors = {name: ErrorAccumulator() for name in float_run.output_names}
                for feed, ref in zip(feeds, reference, strict=True):
                    for name, value in quant_run.run(feed).items():
                        errors[name].update(ref[name], value)
                rows.append({"rule": rule_name(rule), "range": rule,
                             "sqnr_db": float(np.mean([e.result()["sqnr_db"] for e in errors.values()]))})
        finally:
            self.recipe = base
        table = pd.DataFrame(rows)
        best = table.loc[table["sqnr_db"].idxmax(), "range"]
        self.recipe = replace(base, activations=replace(base.activations, range=best))
        self.notes = [*self.notes, f"activation range rule '{rule_name(best)}' chosen by output SQNR on "
                                   f"{min(limit, self.calibration.num_samples)} calibration samples"]
        return table.drop(columns="range")

    def import_overrides(self, source: str | os.PathLike | dict) -> Recipe:
        """Apply onnxruntime ``TensorQuantOverrides`` (a dict or a JSON file) as tensor overrides.
        Names that do not exist or are not quantized are errors, not silently ignored."""
        if not isinstance(source, dict):
            p = Path(source)
            if not p.is_file():
                raise WorkbenchError(f"TensorQuantOverrides file {str(p)!r} does not exist")
            try:
                source = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                raise WorkbenchError(f"TensorQuantOverrides file {str(p)!r} is not valid JSON: {e}") from None
        weights = {layer.weight for layer in self.graph.layers.values() if layer.weight}
        recipe = overrides_to_recipe(source, self.recipe, weights=weights)
        check_names(recipe, self.graph)
        self.recipe = recipe
        return recipe

    def export_overrides(self, path: str | os.PathLike | None = None) -> dict:
        """The current plan as onnxruntime ``TensorQuantOverrides`` (exact scales/zero-points);
        also written as JSON to ``path`` (atomically) when given."""
        overrides = plan_to_overrides(self.plan)
        if path is not None:
            write_text(path, json.dumps(overrides, indent=1), "TensorQuantOverrides output")
        return overrides

    # -- quantize --------------------------------------------------------------------------
    def _build(self) -> tuple[QuantPlan, QdqModel]:
        if self.calibration is None:
            raise WorkbenchError("no calibration statistics yet; call session.calibrate(data) first")
        if self._built is None or self._built[0] != self.recipe:
            plan = build_plan(self.graph, self.recipe, self.calibration, self.weights, self.target)
            self._built = (self.recipe, plan, build_qdq(self.prepared, self.graph, plan, self.weights))
        return self._built[1], self._built[2]

    @property
    def plan(self) -> QuantPlan:
        return self._build()[0]

    def quantize(self) -> onnx.ModelProto:
        """The QDQ model for the current recipe (cached until the recipe changes)."""
        return self._build()[1].proto

    def compare(self, data: Any, *, metric: Metric | None = None, batch_size: int = 32,
                limit: int | None = None, deployed: bool = True) -> Comparison:
        """Float vs quantized on ``data``: per model output and per layer output. The result
        becomes ``session.comparison`` and joins ``session.history``."""
        plan, qdq = self._build()
        feeds = self.feeds(data, batch_size=batch_size, limit=limit)
        rows = [LayerRow(name, layer.op_type, plan.layer_precision[name], layer.output)
                for name, layer in self.graph.layers.items()]
        self.comparison = compare(self.prepared, qdq.proto, qdq.effective, rows, feeds, metric=metric,
                                  deployed=deployed, num_batches=feeds.num_batches, progress=self.progress,
                                  splittable=self._splittable)
        self.history = [*self.history, (self.recipe, self.comparison)]
        return self.comparison

    # -- tables ----------------------------------------------------------------------------
    def layers(self) -> pd.DataFrame:
        """Every quantizable layer: op, tensors, current precision and (after compare) SQNR."""
        labels = self._build()[0].layer_precision if self.calibration is not None else {}
        rows = [{"layer": n, "op_type": lay.op_type, "inputs": list(lay.inputs), "weight": lay.weight,
                 "bias": lay.bias, "output": lay.output, "fused": list(lay.fused),
                 "precision": labels.get(n, "")} for n, lay in self.graph.layers.items()]
        df = pd.DataFrame(rows)
        if self.comparison is not None:
            err = self.comparison.layers.set_index("layer")[["sqnr_db", "cosine"]]
            df = df.join(err, on="layer")
        return df

    def stats(self) -> pd.DataFrame:
        """Per activation tensor: calibration statistics and the planned clip range."""
        if self.calibration is None:
            raise WorkbenchError("no calibration statistics yet; call session.calibrate(data) first")
        df = pd.DataFrame(self.calibration.summary())
        plan = self._build()[0].tensors
        df["precision"] = [plan[t].spec.precision.value if t in plan else "float32" for t in df.tensor]
        df["rule"] = [rule_name(plan[t].spec.range) if t in plan else "" for t in df.tensor]
        df["clip_lo"] = [plan[t].lo if t in plan else np.nan for t in df.tensor]
        df["clip_hi"] = [plan[t].hi if t in plan else np.nan for t in df.tensor]
        df["scale"] = [float(plan[t].qparams.scale) if t in plan else np.nan for t in df.tensor]
        df["zero_point"] = [int(plan[t].qparams.zero_point) if t in plan else np.nan for t in df.tensor]
        return df

    def weight_stats(self, layer: str) -> WeightStats:
        """Per-tensor histogram and per-output-channel ranges of ``layer``'s weight."""
        lay = self.graph.layers.get(layer)
        if lay is None or lay.weight is None:
            raise WorkbenchError(f"{layer!r} is not a layer with a weight; see session.layers()")
        return weight_stats(lay.weight, self.weights[lay.weight], lay.weight_axis or 0)

    # -- export ----------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, *, report: str | os.PathLike | None = None,
               recipe: str | os.PathLike | None = None) -> dict[str, str]:
        """Write the QDQ model, its recipe JSON (default: beside the model) and optionally an
        HTML report (needs a :meth:`compare` first). Every write is atomic."""
        out = writable_path(path, "model output")
        recipe_path = writable_path(recipe or out.with_suffix(".recipe.json"), "recipe output")
        report_path = writable_path(report, "report output") if report else None
        if report_path is not None and self.comparison is None:
            raise WorkbenchError("a report needs evaluation results; call session.compare(data) first "
                                 "(or pass --eval on the command line)")
        plan, qdq = self._build()
        problems = verify_qdq(qdq.proto, plan, qdq.effective)
        if problems:
            raise RuntimeError(f"internal error: the QDQ graph does not match the recipe: {problems[0]}")
        onnx.checker.check_model(qdq.proto)
        written = {"model": str(save_model(qdq.proto, out)),
                   "recipe": str(write_text(recipe_path, self.recipe.to_json(), "recipe output"))}
        if report_path is not None:
            from workbench.export.report import render_report

            html = render_report(self, self.comparison)
            written["report"] = str(write_text(report_path, html, "report output"))
        return written
