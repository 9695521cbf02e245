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

import atexit
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
from tqdm.auto import tqdm
from traitlets import HasTraits, Instance, List, observe

from workbench.analysis.compare import Comparison, LayerRow, Metric, compare, compared_tensors
from workbench.autosave import Autosave, autosave_path, fingerprint, read_autosave, write_autosave
from workbench.calibration import Calibration, WeightStats, calibrate, input_channel_axes, weight_stats
from workbench.errors import WorkbenchError
from workbench.export.atomic import save_model, writable_path, write_text
from workbench.graph.layers import find_layers
from workbench.graph.prepare import prepare
from workbench.ledger import LedgerEntry, ledger_table, now, recipe_diff, summarize
from workbench.models import LoadedModel, load_model
from workbench.numerics import ErrorAccumulator, compute_qparams, expected_error, fake_quantize, sqnr_db
from workbench.quantize import QdqModel, QuantPlan, build_plan, build_qdq, verify_qdq
from workbench.quantize.overrides import overrides_to_recipe, plan_to_overrides
from workbench.quantize.plan import check_names, layer_specs, spec_qparams
from workbench.recipe import (
    Auto,
    ClipRange,
    Entropy,
    LayerSpec,
    MinMax,
    Mse,
    Percentile,
    PerChannel,
    PerTensor,
    Precision,
    RangeRule,
    Recipe,
    Symmetry,
    TensorSpec,
    rule_name,
)
from workbench.runtime import Runner, as_feeds
from workbench.runtime.cache import CachedRunner
from workbench.targets import Target, get_target

SEARCH_RULES: tuple[RangeRule, ...] = (Auto(), MinMax(), Percentile(99.99), Entropy(), Mse())
#: Recipe flags search_ranges tries both ways, one after the other
SEARCH_SWITCHES = ("bias_correction", "depthwise_equalization", "fold_affine_chains")
FLOAT_CACHE_BYTES = 1 << 30  # float outputs kept for re-evaluation (Apply) on the same data
AUTOSAVE_DEFER_S = 0.5  # a drag's autosave is written this long after its last move
RANGE_MERGE_S = 1.0  # clip-range edits of one tensor closer than this are one undo step (a drag)
KEEP: Any = object()  # "leave this setting as it is" in Session.set
_DEFERRED: weakref.WeakSet = weakref.WeakSet()  # sessions that may hold a deferred autosave


@atexit.register
def _flush_deferred() -> None:
    """A kernel shut down mid-drag still writes the last clip range (daemon timers die silently)."""
    for session in list(_DEFERRED):
        session.flush()


def as_rule(rule: str | RangeRule) -> RangeRule:
    """A range rule from its name ('minmax', 'percentile', 'entropy', 'mse', 'auto') or itself."""
    if isinstance(rule, str):
        found = [r for r in SEARCH_RULES if rule_name(r) == rule]
        if not found:
            raise WorkbenchError(f"range rule {rule!r}: use one of {[rule_name(r) for r in SEARCH_RULES]}")
        return found[0]
    return rule


class Session(HasTraits):
    """A model being quantized. ``recipe`` is a trait: assign a new Recipe to change it."""

    recipe = Instance(Recipe)
    calibration = Instance(Calibration, allow_none=True)
    comparison = Instance(Comparison, allow_none=True)
    ledger = List()  # LedgerEntry per evaluated recipe, oldest first

    def __init__(self, model: Any, *, example_inputs: Any = None, target: str | None = None,
                 recipe: Recipe | None = None, progress: bool = True,
                 autosave: bool | str | os.PathLike = True) -> None:
        super().__init__()
        self.model: LoadedModel = load_model(model, example_inputs=example_inputs)
        if recipe is not None and target is not None and recipe.target != target:
            raise WorkbenchError(f"recipe is for target {recipe.target!r} but target={target!r} was given; "
                                 "drop one of them")
        self.target = get_target(target or (recipe.target if recipe else "ort-cpu"))
        self.progress = progress
        self.prepared, notes = prepare(self.model.proto)
        self.notes: list[str] = [*self.model.notes, *notes]
        self.graph = find_layers(self.prepared)
        self.weights = {t.name: onnx.numpy_helper.to_array(t) for t in self.prepared.graph.initializer}
        self._built: tuple[tuple[Recipe, Target], QdqModel] | None = None  # keyed on (recipe, target)
        self._planned: tuple[tuple[Recipe, Target], QuantPlan] | None = None
        self.sensitivities: dict[str, float] = {}
        self.float_cache_bytes = FLOAT_CACHE_BYTES
        self._float_run: CachedRunner | None = None
        self._last_edit: tuple[Any, float] = (None, 0.0)
        self._calibration_data: Any = None
        self._undo: list[Recipe] = []
        self._redo: list[Recipe] = []
        self._tracking = False
        self.recipe = recipe or self.target.default_recipe()
        self._autosave_path: Path | None = None
        self._pending_save: threading.Timer | None = None
        self._save_lock = threading.RLock()
        self.autosaved: Autosave | None = None
        if autosave:
            self._open_autosave(autosave, offer=recipe is None)
        self._tracking = True

    @property
    def _splittable(self) -> bool:
        """Batches may be cut into smaller ones (every input has a dynamic batch axis)."""
        return all(i.batch_dynamic for i in self.model.inputs)

    # -- data ------------------------------------------------------------------------------
    def feeds(self, data: Any, *, batch_size: int = 32, limit: int | None = None):
        return as_feeds(data, self.model, batch_size=batch_size, limit=limit)

    def calibrate(self, data: Any, *, batch_size: int = 32, limit: int | None = None,
                  values_per_sample: int | None = None) -> Calibration:
        """One streaming pass over ``data``: a histogram for every quantizable activation.

        ``values_per_sample=None`` (default) observes every value; an integer ``m`` observes about
        ``m`` values per sample of each larger tensor (one in a prime stride) where the first
        sample shows the slice keeps the tensor's range: estimated statistics, and faster only as
        far as tensors pass that check (see :mod:`workbench.calibration.sampling`)."""
        feeds = self.feeds(data, batch_size=batch_size, limit=limit)
        self._calibration_data = data
        self.calibration = calibrate(self.prepared, self.graph.activation_tensors(), feeds,
                                     num_batches=feeds.num_batches, progress=self.progress,
                                     splittable=self._splittable,
                                     channel_axes=input_channel_axes(self.graph),
                                     values_per_sample=values_per_sample)
        self._built = self._planned = None
        return self.calibration

    # -- recipe ----------------------------------------------------------------------------
    def set(self, layers: str | Iterable[str], *, precision: Any = KEEP, symmetry: Any = KEEP,
            weight_granularity: Any = KEEP, range: Any = KEEP) -> Recipe:
        """Change one layer, or several (a list, e.g. ``session.layer_names("Conv")``), in one
        undoable step. ``precision``: 'float32', 'float16', 'int16', 'int8', 'int4' (weights) or
        None (back to the default); ``symmetry`` of the activations ('symmetric' → signed,
        'asymmetric' → unsigned); ``weight_granularity``: 'per_channel' | 'per_tensor';
        ``range``: the activations' range rule ('minmax', 'percentile', 'entropy', 'mse', 'auto'
        or a rule object)."""
        recipe = self.recipe
        for name in self._layer_list(layers):
            old = recipe.layers.get(name, LayerSpec())
            act = old.activations or recipe.activations
            weights = old.weights or recipe.weights
            if symmetry is not KEEP:
                sym = Symmetry(symmetry)
                act = replace(act, symmetry=sym, signed=sym == Symmetry.SYMMETRIC)
            if range is not KEEP:
                act = replace(act, range=as_rule(range))
            if weight_granularity is not KEEP:
                gran = {"per_channel": PerChannel(), "per_tensor": PerTensor()}.get(str(weight_granularity))
                if gran is None:
                    raise WorkbenchError(f"weight_granularity {weight_granularity!r}: use 'per_channel' or "
                                         "'per_tensor'")
                weights = replace(weights, granularity=gran)
            spec = LayerSpec(precision=old.precision if precision is KEEP else precision,
                             activations=None if act == recipe.activations else act,
                             weights=None if weights == recipe.weights else weights)
            recipe = recipe.with_layer(name, None if spec == LayerSpec() else spec)
        self.recipe = recipe
        return recipe

    def load_recipe(self, path: str | os.PathLike) -> Recipe:
        p = Path(path)
        if not p.is_file():
            raise WorkbenchError(f"recipe file {str(p)!r} does not exist")
        recipe = Recipe.from_json(p.read_text())
        self.target = get_target(recipe.target)
        self.recipe = recipe
        return recipe

    def search_ranges(self, data: Any = None, *, rules: tuple[RangeRule, ...] = SEARCH_RULES,
                      switches: tuple[str, ...] = SEARCH_SWITCHES, batch_size: int = 16,
                      limit: int = 16) -> pd.DataFrame:
        """Try each activation range rule as the recipe's default, then, one after the other, the
        best recipe so far with each of ``switches`` (boolean Recipe fields) the other way; keep
        the recipe whose model outputs have the highest SQNR on ``data`` (default: the
        calibration data, first ``limit`` samples), and return the table of candidates.

        No single rule is best on every model (percentile wins on one OCR network, the
        per-tensor MSE/auto choice on another), nor is bias correction (+3.9 dB on MediaPipe's
        pose detector, −0.1 on MiniLM), depthwise equalization (+8 dB on hand landmark, −0.7 on
        the OCR detector) or folding scalar affine chains (+1.5 dB on the OCR detector, −1 to
        +1 on the recogniser, whose attention amplifies any change of rounding): measuring beats
        guessing. Scored on the samples the histograms came from, it favours ranges clipped to them
        (selfie segmenter: entropy ranges with bias correction 17.2 dB on those 16 samples, 12.8 on
        the benchmark's first 128 held out, where the default rule with bias correction had 13.7;
        on three other draws of 128 the pick won by 1.3–3.2 dB)."""
        score = self._output_sqnr(data, batch_size=batch_size, limit=limit, what="search_ranges")
        base = self.recipe
        trials = [replace(base, activations=replace(base.activations, range=rule)) for rule in rules]
        scores = [score(r) for r in trials]
        for name in switches:
            best = trials[int(np.argmax(scores))]
            trials.append(replace(best, **{name: not getattr(best, name)}))
            scores.append(score(trials[-1]))
        self.recipe = trials[int(np.argmax(scores))]
        table = pd.DataFrame([{"rule": rule_name(r.activations.range), **{n: getattr(r, n) for n in switches},
                               "sqnr_db": v} for r, v in zip(trials, scores, strict=True)])
        chosen = "".join(f", {n.replace('_', ' ')} {'on' if getattr(self.recipe, n) else 'off'}" for n in switches)
        n = min(limit, self.calibration.num_samples)
        self.notes = [*self.notes, f"activation range rule '{rule_name(self.recipe.activations.range)}'{chosen} "
                                   f"chosen by output SQNR on {n} calibration samples"]
        return table

    def _output_sqnr(self, data: Any, *, batch_size: int, limit: int, what: str) -> Callable[[Recipe], float]:
        """A scorer of trial recipes: mean model-output SQNR (dB) of a recipe's QDQ model against
        the float model on the first ``limit`` samples of ``data`` (default: the calibration
        data). The float outputs are computed once; ``self.recipe`` is not touched."""
        data = self._calibration_data if data is None else data
        if data is None:
            raise WorkbenchError(f"{what} needs data; pass it, or call calibrate(data) first")
        cal = self._need_calibration()
        feeds = list(self.feeds(data, batch_size=batch_size, limit=limit))
        float_run = Runner(self.prepared)
        reference = [float_run.run(feed) for feed in feeds]

        def score(recipe: Recipe) -> float:
            plan = build_plan(self.graph, recipe, cal, self.weights, self.target)
            run = Runner(build_qdq(self.prepared, self.graph, plan, self.weights).proto)
            errors = {o: ErrorAccumulator() for o in float_run.output_names}
            for feed, ref in zip(feeds, reference, strict=True):
                for o, value in run.run(feed).items():
                    errors[o].update(ref[o], value)
            return float(np.mean([e.sqnr_db for e in errors.values()]))

        return score

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
        if self.calibration is not None:  # a grid that cannot be built fails here, not at the next plan
            build_plan(self.graph, recipe, self.calibration, self.weights, self.target)
        self.recipe = recipe
        return recipe

    def export_overrides(self, path: str | os.PathLike | None = None) -> dict:
        """The current plan as onnxruntime ``TensorQuantOverrides`` (exact scales/zero-points);
        also written as JSON to ``path`` (atomically) when given."""
        overrides = plan_to_overrides(self.plan)
        if path is not None:
            write_text(path, json.dumps(overrides, indent=1), "TensorQuantOverrides output")
        return overrides

    def set_range(self, tensor: str, lo: float | None = None, hi: float | None = None, *,
                  rule: str | RangeRule | None = None) -> Recipe:
        """Clip ``tensor`` to ``[lo, hi]`` (a ClipRange override), or give it its own range ``rule``;
        ``set_range(tensor)`` with neither drops the tensor's override."""
        if tensor not in self.graph.activation_tensors():
            raise WorkbenchError(f"{tensor!r} is not a quantizable activation tensor; see session.stats()")
        if rule is None and lo is None and hi is None:
            return self._replace(self.recipe.with_tensor(tensor, None))
        if rule is not None and (lo is not None or hi is not None):
            raise WorkbenchError("set_range: give either lo and hi, or rule, not both")
        if rule is None and (lo is None or hi is None):
            raise WorkbenchError(f"set_range({tensor!r}): give both lo and hi")
        new_range = as_rule(rule) if rule is not None else ClipRange(float(lo), float(hi))
        recipe = self.recipe.with_tensor(tensor, replace(self.tensor_spec(tensor), range=new_range))
        key, when = ("range", tensor), time.monotonic()
        merge = self._last_edit[0] == key and when - self._last_edit[1] < RANGE_MERGE_S
        self._last_edit = (key, when)
        return self._jump(recipe, defer_save=True) if merge and self.can_undo else self._replace(recipe)

    def reset(self, layers: str | Iterable[str]) -> Recipe:
        """Drop every override of ``layers`` and of their activation tensors."""
        names = self._layer_list(layers)
        recipe = self.recipe
        for name in names:
            lay = self.graph.layers[name]
            recipe = recipe.with_layer(name, None)
            for t in (*lay.inputs, lay.output):
                recipe = recipe.with_tensor(t, None) if t in recipe.tensors else recipe
        return self._replace(recipe)

    def layer_names(self, op_type: str | None = None) -> list[str]:
        """Names of the quantizable layers, optionally only those of one op type."""
        return [n for n, lay in self.graph.layers.items() if op_type in (None, lay.op_type)]

    def tensor_spec(self, tensor: str) -> TensorSpec:
        """The spec ``tensor`` is quantized with under the current recipe (the default
        activation spec for a tensor the recipe leaves in float)."""
        if tensor in self.recipe.tensors:
            return self.recipe.tensors[tensor]
        planned = self.plan.tensors.get(tensor) if self.calibration is not None else None
        return planned.spec if planned else self.recipe.activations

    def rule_ranges(self, tensor: str) -> dict[str, tuple[float, float]]:
        """Clip range of ``tensor`` under each range rule, for its current bits and symmetry."""
        spec = self._grid_spec(tensor)
        cal = self._need_calibration()
        return {rule_name(r): cal.range(tensor, r, bits=spec.precision.bits, symmetric=spec.symmetric,
                                        signed=spec.signed) for r in SEARCH_RULES}

    def _grid_spec(self, tensor: str) -> TensorSpec:
        """:meth:`tensor_spec`, as int8 where it is float (what quantizing it would give)."""
        spec = self.tensor_spec(tensor)
        return spec if spec.precision.is_integer else replace(spec, precision=Precision.INT8)

    def readout(self, tensor: str, lo: float | None = None, hi: float | None = None) -> dict[str, float]:
        """Predicted error of quantizing ``tensor`` with clip range ``[lo, hi]`` (default: the
        planned one), from its calibration histogram alone (no model run): clipping and
        rounding MSE, SQNR, % clipped, RMSE/scale (≈ 0.289 when healthy), and the grid."""
        cal = self._need_calibration()
        if tensor not in cal.histograms:
            raise WorkbenchError(f"{tensor!r} has no calibration histogram; see session.stats() for tensors")
        spec = self._grid_spec(tensor)
        if (lo is None or hi is None) and isinstance(spec.range, ClipRange):  # no plan needed: fast
            lo, hi = spec.range.lo if lo is None else lo, spec.range.hi if hi is None else hi
        if lo is None or hi is None:  # the plan's range (a group's members share their union)
            planned = self.plan.tensors.get(tensor)
            if planned is not None and planned.lo is not None:
                plo, phi = planned.lo, planned.hi
            else:
                plo, phi = cal.range(tensor, spec.range, bits=spec.precision.bits, signed=spec.signed,
                                     symmetric=spec.symmetric)
            lo, hi = plo if lo is None else lo, phi if hi is None else hi
        qp = spec_qparams(spec, lo, hi)
        est = expected_error(cal.histograms[tensor], qp)
        grid_lo, grid_hi = (float(v) for v in qp.clip_range())
        return {"lo": float(lo), "hi": float(hi), "grid_lo": grid_lo, "grid_hi": grid_hi,
                "scale": float(qp.scale), "zero_point": int(qp.zero_point), "bits": spec.precision.bits,
                "clip_mse": est.clip_mse, "round_mse": est.round_mse, "mse": est.mse, "sqnr_db": est.sqnr_db,
                "clipped_percent": 100.0 * est.clipped_fraction, "rmse_over_scale": est.rmse_over_scale}

    def weight_readout(self, layer: str, bits: int = 8) -> dict[str, Any]:
        """What per-tensor vs per-channel symmetric ``bits`` quantization does to ``layer``'s
        weight: SQNR of each, and per output channel its range and SQNR under both."""
        ws = self.weight_stats(layer)
        w = self.weights[self.graph.layers[layer].weight]
        per_channel = compute_qparams(ws.channel_min, ws.channel_max, bits=bits, signed=True, symmetric=True,
                                      axis=ws.axis)
        per_tensor = compute_qparams(float(ws.channel_min.min()), float(ws.channel_max.max()), bits=bits,
                                     signed=True, symmetric=True)
        rows = np.moveaxis(w, ws.axis, 0).reshape(w.shape[ws.axis], -1)
        fq_c = np.moveaxis(fake_quantize(w, per_channel), ws.axis, 0).reshape(rows.shape)
        fq_t = np.moveaxis(fake_quantize(w, per_tensor), ws.axis, 0).reshape(rows.shape)
        return {"per_tensor_sqnr_db": sqnr_db(w, fake_quantize(w, per_tensor)),
                "per_channel_sqnr_db": sqnr_db(w, fake_quantize(w, per_channel)),
                "channel_min": ws.channel_min, "channel_max": ws.channel_max,
                "channel_sqnr_per_tensor_db": np.array([sqnr_db(r, q) for r, q in zip(rows, fq_t, strict=True)]),
                "channel_sqnr_per_channel_db": np.array([sqnr_db(r, q) for r, q in zip(rows, fq_c, strict=True)])}

    # -- undo, ledger, autosave ------------------------------------------------------------
    @observe("recipe")
    def _on_recipe(self, change: Any) -> None:
        if not getattr(self, "_tracking", False):
            return
        if change.old is not None and change.old != change.new:
            self._undo.append(change.old)
            self._redo.clear()
        self._save()

    def _replace(self, recipe: Recipe) -> Recipe:
        check_names(recipe, self.graph)
        self.recipe = recipe
        return recipe

    def _jump(self, recipe: Recipe, *, defer_save: bool = False) -> Recipe:
        self._tracking = False
        try:
            self.recipe = recipe
        finally:
            self._tracking = True
        self._save(defer=defer_save)
        return recipe

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> Recipe:
        """Go back to the recipe before the last change."""
        if not self._undo:
            raise WorkbenchError("nothing to undo")
        self._redo.append(self.recipe)
        return self._jump(self._undo.pop())

    def redo(self) -> Recipe:
        """Re-apply the change the last undo took back."""
        if not self._redo:
            raise WorkbenchError("nothing to redo")
        self._undo.append(self.recipe)
        return self._jump(self._redo.pop())

    def ledger_table(self) -> pd.DataFrame:
        """Every evaluated recipe: id, time, what changed since the previous one, its metrics."""
        return ledger_table(self.ledger)

    def _entry(self, entry: int) -> LedgerEntry:
        found = [e for e in self.ledger if e.id == entry]
        if not found:
            raise WorkbenchError(f"no ledger entry {entry}; entries are {[e.id for e in self.ledger]}")
        return found[0]

    def diff(self, a: int, b: int | None = None) -> pd.DataFrame:
        """Settings that differ from ledger entry ``a`` to entry ``b`` (default: the current recipe)."""
        after = self.recipe if b is None else self._entry(b).recipe
        return pd.DataFrame(recipe_diff(self._entry(a).recipe, after), columns=["path", "before", "after"])

    def restore(self, entry: int) -> Recipe:
        """Return to the recipe of ledger entry ``entry`` (undoable)."""
        return self._replace(self._entry(entry).recipe)

    @property
    def autosave_path(self) -> Path | None:
        return self._autosave_path

    def restore_autosave(self) -> Recipe:
        """Bring back the autosaved recipe (and its ledger) found when the model was opened."""
        if self.autosaved is None:
            raise WorkbenchError("there is no autosaved recipe to restore for this model")
        found, self.autosaved = self.autosaved, None
        check_names(found.recipe, self.graph)
        self.target = get_target(found.recipe.target)
        self.ledger = [*found.ledger, *self.ledger]
        return self._replace(found.recipe)

    def _open_autosave(self, autosave: bool | str | os.PathLike, *, offer: bool) -> None:
        src = self.model.source
        is_file = os.path.isfile(src)
        self._digest = fingerprint(Path(src).read_bytes() if is_file else self.model.proto.SerializeToString())
        if autosave is True and not is_file:
            self.notes = [*self.notes, "no autosave: the model was not loaded from a file; pass autosave=PATH"]
            return
        path = autosave_path(src, self._digest) if autosave is True else Path(autosave)
        self._autosave_path = path
        try:
            found = read_autosave(path, self._digest)
        except WorkbenchError as e:
            aside = path.with_name(f"{path.name}.damaged-{now().replace(':', '')}")
            path.rename(aside)
            self.notes = [*self.notes, f"{e}; it was moved to {aside}"]
            return
        if found is not None and found.recipe != self.recipe:
            self.autosaved = found
            if offer:
                self.notes = [*self.notes, f"an autosaved recipe from {found.saved_at} exists ({path}); "
                                           "session.restore_autosave() brings it back"]

    def _save(self, *, defer: bool = False) -> None:
        """Write the autosave now, or (``defer``: in the middle of a drag) at most
        ``AUTOSAVE_DEFER_S`` later — a durable write per mouse move would cost ~10 ms each."""
        path = self._autosave_path
        if path is None:
            return
        with self._save_lock:
            pending, self._pending_save = self._pending_save, None
            if pending is not None:
                pending.cancel()
            if defer:
                self._pending_save = threading.Timer(AUTOSAVE_DEFER_S, self._save)
                self._pending_save.daemon = True
                self._pending_save.start()
                _DEFERRED.add(self)  # flushed at interpreter exit if the timer has not fired
                return
            if self.autosaved is not None and path.is_file():
                # the user has not restored the older save: keep it beside, never overwrite hand-tuning
                keep = path.with_name(path.name.removesuffix(".json") + ".previous.json")
                path.replace(keep)
                self.autosaved = replace(self.autosaved, path=keep)
            write_autosave(path, self._digest, self.recipe, self.ledger)

    def flush(self) -> None:
        """Write any deferred autosave now."""
        if self._pending_save is not None:
            self._save()

    def _need_calibration(self) -> Calibration:
        if self.calibration is None:
            raise WorkbenchError("no calibration statistics yet; call session.calibrate(data) first")
        return self.calibration

    def _layer_list(self, layers: str | Iterable[str]) -> list[str]:
        names = [layers] if isinstance(layers, str) else list(layers)
        unknown = [n for n in names if n not in self.graph.layers]
        if unknown:
            raise WorkbenchError(f"no quantizable layer named {unknown[0]!r}; see session.layers()")
        return names

    # -- notebook --------------------------------------------------------------------------
    def show(self, eval_data: Any = None, *, metric: Metric | None = None):
        """The notebook workbench over this session (needs the ``ui`` extra: ipywidgets, bokeh,
        jupyter_bokeh)."""
        from workbench.ui import Workbench

        return Workbench(self, eval_data=eval_data, metric=metric)

    # -- quantize --------------------------------------------------------------------------
    def _build(self) -> tuple[QuantPlan, QdqModel]:
        plan = self.plan
        if self._built is None or self._built[0] != (self.recipe, self.target):
            self._built = ((self.recipe, self.target), build_qdq(self.prepared, self.graph, plan, self.weights))
        return plan, self._built[1]

    @property
    def plan(self) -> QuantPlan:
        """The exact integer format of every quantized tensor (cached until the recipe or the
        target changes; cheaper than :meth:`quantize`, which also builds the QDQ graph)."""
        cal = self._need_calibration()
        if self._planned is None or self._planned[0] != (self.recipe, self.target):
            self._planned = ((self.recipe, self.target),
                             build_plan(self.graph, self.recipe, cal, self.weights, self.target))
        return self._planned[1]

    def quantize(self) -> onnx.ModelProto:
        """The QDQ model for the current recipe and target (cached until either changes)."""
        return self._build()[1].proto

    def compare(self, data: Any, *, metric: Metric | None = None, batch_size: int = 32,
                limit: int | None = None, deployed: bool = True) -> Comparison:
        """Float vs quantized on ``data``: per model output and per layer output. The result
        becomes ``session.comparison`` and a new :attr:`ledger` entry. The float model's outputs
        are remembered (up to :attr:`float_cache_bytes`), so comparing another recipe on the same
        data runs onnxruntime only for the quantized model."""
        plan, qdq = self._build()
        feeds = self.feeds(data, batch_size=batch_size, limit=limit)
        rows = [LayerRow(name, layer.op_type, plan.layer_precision[name], layer.output)
                for name, layer in self.graph.layers.items()]
        if self._float_run is None:
            tensors = compared_tensors(self.prepared, rows)
            self._float_run = CachedRunner(Runner(self.prepared, outputs=tensors), self.float_cache_bytes)
        self._float_run.max_bytes = self.float_cache_bytes  # the user may change it between comparisons
        self.comparison = compare(self.prepared, qdq.with_probes(), qdq.effective, rows, feeds, metric=metric,
                                  deployed=deployed, num_batches=feeds.num_batches, progress=self.progress,
                                  splittable=self._splittable, float_run=self._float_run)
        entry = LedgerEntry(len(self.ledger) + 1, now(), self.recipe, summarize(self.comparison), self.comparison)
        self.ledger = [*self.ledger, entry]
        self._save()
        return self.comparison

    # -- tables ----------------------------------------------------------------------------
    def layers(self) -> pd.DataFrame:
        """Every quantizable layer: op, tensors, current settings, and (after compare) its SQNR
        and (after :meth:`sensitivity`) its sensitivity."""
        labels = self.plan.layer_precision if self.calibration is not None else {}
        rows = []
        for n, lay in self.graph.layers.items():
            _, act, weight = layer_specs(lay, self.recipe)
            rows.append({"layer": n, "op_type": lay.op_type, "inputs": list(lay.inputs), "weight": lay.weight,
                         "bias": lay.bias, "output": lay.output, "fused": list(lay.fused),
                         "precision": labels.get(n, ""), "symmetry": act.symmetry.value,
                         "range": rule_name(act.range),
                         "weights": ("per_channel" if isinstance(weight.granularity, PerChannel) else "per_tensor")
                         if lay.weight else ""})
        df = pd.DataFrame(rows)
        if self.comparison is not None:
            err = self.comparison.layers.set_index("layer")[["sqnr_db", "cosine"]]
            df = df.join(err, on="layer")
        if self.sensitivities:
            df["sensitivity_db"] = [self.sensitivities.get(n, np.nan) for n in df.layer]
        return df

    def sensitivity(self, data: Any = None, *, limit: int = 16, batch_size: int = 16) -> pd.Series:
        """Per layer: model-output SQNR (dB) when ONLY that layer is quantized (all others
        float), on ``data`` (default: the first ``limit`` calibration samples). Low = the layer
        hurts on its own — the usual first suspects for int16/float. Shown in ``layers()``."""
        score = self._output_sqnr(data, batch_size=batch_size, limit=limit, what="sensitivity")
        base = self.recipe
        result = {}
        for name in tqdm(self.graph.layers, desc="sensitivity", disable=not self.progress, unit="layer"):
            others = {o: LayerSpec(precision=Precision.FLOAT32) for o in self.graph.layers if o != name}
            others[name] = base.layers.get(name, LayerSpec())
            result[name] = score(replace(base, layers={k: v for k, v in others.items() if v != LayerSpec()}))
        self.sensitivities = result
        return pd.Series(result, name="sensitivity_db")

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
