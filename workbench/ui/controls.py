"""Per-layer settings: precision, symmetry, weight granularity, range rule, reset — applied to
the focused layer, the selected layers, or every layer of an op type; undo/redo; the target
profile's limits and the current recipe's problems shown, not just enforced."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as w

from workbench.errors import WorkbenchError
from workbench.quantize.plan import layer_specs
from workbench.recipe import PerChannel, Precision, rule_name
from workbench.session import KEEP, SEARCH_RULES, Session
from workbench.ui.format import note

PRECISIONS = ["default", "float32", "float16", "int16", "int8", "int4"]
SCOPES = ["focused layer", "selected layers", "all of this op type"]


class Controls:
    """``selection()`` returns (focused layer, selected layers) from the owner."""

    def __init__(self, session: Session, selection: Callable[[], tuple[str | None, list[str]]]) -> None:
        self.session = session
        self.selection = selection
        self._quiet = False
        style = {"description_width": "initial"}
        self.scope = w.Dropdown(options=SCOPES, description="apply to", style=style)
        self.precision = w.Dropdown(options=PRECISIONS, description="precision", style=style)
        self.symmetry = w.Dropdown(options=["asymmetric", "symmetric"], description="activations", style=style)
        self.granularity = w.Dropdown(options=["per_channel", "per_tensor"], description="weights", style=style)
        self.rule = w.Dropdown(options=[rule_name(r) for r in SEARCH_RULES], description="range rule", style=style)
        self.reset = w.Button(description="reset", tooltip="drop this scope's overrides")
        self.undo = w.Button(description="undo", icon="undo")
        self.redo = w.Button(description="redo", icon="repeat")
        self.limits = w.HTML()
        self.message = w.HTML()
        self.precision.observe(lambda c: self._apply(precision=None if c["new"] == "default" else c["new"]), "value")
        self.symmetry.observe(lambda c: self._apply(symmetry=c["new"]), "value")
        self.granularity.observe(lambda c: self._apply(weight_granularity=c["new"]), "value")
        self.rule.observe(lambda c: self._apply(range=c["new"]), "value")
        self.reset.on_click(lambda _: self._do(lambda: self.session.reset(self._targets())))
        self.undo.on_click(lambda _: self._do(self.session.undo))
        self.redo.on_click(lambda _: self._do(self.session.redo))
        self.widget = w.VBox([self.scope, self.precision, self.symmetry, self.granularity, self.rule,
                              w.HBox([self.reset, self.undo, self.redo]), self.message, self.limits],
                             layout=w.Layout(width="330px", min_width="330px"))
        for control in (self.reset, self.undo, self.redo):
            control.layout.width = "95px"

    def _targets(self) -> list[str]:
        focus, selected = self.selection()
        if self.scope.value == "selected layers":
            return selected or ([focus] if focus else [])
        if self.scope.value == "all of this op type" and focus:
            return self.session.layer_names(self.session.graph.layers[focus].op_type)
        return [focus] if focus else []

    def _apply(self, **change) -> None:
        if self._quiet:
            return
        layers = self._targets()
        if not layers:
            self.message.value = note("select a layer first", "warn")
            return
        self._do(lambda: self.session.set(layers, **{k: change.get(k, KEEP) for k in
                                                     ("precision", "symmetry", "weight_granularity", "range")}))

    def _do(self, action: Callable[[], object]) -> None:
        try:
            action()
            self.message.value = ""
        except WorkbenchError as e:
            self.message.value = note(str(e), "error")
        self.refresh()

    def refresh(self) -> None:
        """Show the focused layer's settings and the target's limits (after any recipe change)."""
        focus, _ = self.selection()
        s = self.session
        self.undo.disabled, self.redo.disabled = not s.can_undo, not s.can_redo
        problems = s.target.problems(_specs(s))
        self.limits.value = (f"<div style='line-height:1.3;font-size:90%'><b>target {s.target.name}</b>: "
                             f"{s.target.description}</div>" + "".join(note(p, "warn") for p in problems[:5]))
        if focus is None:
            return
        lay = s.graph.layers[focus]
        precision, act, weight = layer_specs(lay, s.recipe)
        self._quiet = True
        try:
            self.precision.value = precision.value if isinstance(precision, Precision) else "default"
            self.symmetry.value = act.symmetry.value
            self.granularity.value = "per_channel" if isinstance(weight.granularity, PerChannel) else "per_tensor"
            self.granularity.disabled = lay.weight is None
            self.rule.value = rule_name(act.range) if rule_name(act.range) in self.rule.options else "auto"
        finally:
            self._quiet = False


def _specs(session: Session):
    """(where, spec, is_weight) for every layer's resolved activation and weight spec."""
    for name, lay in session.graph.layers.items():
        precision, act, weight = layer_specs(lay, session.recipe)
        if precision != Precision.FLOAT32 and precision != Precision.FLOAT16:
            yield f"layer {name} activations", act, False
            if lay.weight:
                yield f"layer {name} weights", weight, True
