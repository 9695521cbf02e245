"""Recipe + calibration -> a plan: the exact integer format of every quantized tensor.

Resolution per layer: recipe default → layer override (precision / specs) → tensor
override. A tensor read by several layers takes the most precise integer spec they ask
for. Tensors in one group (pass-through ops, shared Concat scales) share parameters,
computed from the union of the members' clip ranges. Bias is int32 with
``scale = s_input · s_weight`` (per output channel) and zero-point 0, so it adds no error of
its own beyond rounding at the accumulator's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from workbench.calibration import Calibration
from workbench.errors import WorkbenchError
from workbench.graph.layers import Layer, LayerGraph
from workbench.numerics import QParams, array_clip_range, compute_qparams
from workbench.recipe import ClipRange, PerChannel, Precision, Recipe, TensorSpec
from workbench.targets import Target

INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class TensorPlan:
    """One integer-quantized tensor."""

    name: str
    kind: str  # "activation" | "weight"
    spec: TensorSpec
    qparams: QParams
    group: str  # activations: root tensor of the shared group; weights: own name
    lo: float | None = None  # activations: the clip range the parameters came from
    hi: float | None = None


@dataclass(frozen=True)
class QuantPlan:
    tensors: dict[str, TensorPlan]
    bias_scales: dict[str, np.ndarray]  # bias initializer -> int32 scale per output channel
    fp16_layers: tuple[str, ...]
    float_layers: tuple[str, ...]
    layer_precision: dict[str, str]
    notes: list[str] = field(default_factory=list)


def _rank(spec: TensorSpec) -> int:
    return spec.precision.bits if spec.precision.is_integer else 0


def layer_specs(layer: Layer, recipe: Recipe) -> tuple[Precision | None, TensorSpec, TensorSpec]:
    """(layer precision, activation spec, weight spec) of ``layer`` before tensor overrides."""
    override = recipe.layers.get(layer.name)
    precision = override.precision if override else None
    act = override.activations if override and override.activations else recipe.activations
    weight = override.weights if override and override.weights else recipe.weights
    if precision in (Precision.INT8, Precision.INT16):
        act = replace(act, precision=precision)
    elif precision == Precision.INT4:
        weight = replace(weight, precision=Precision.INT4)
    return precision, act, weight


def check_names(recipe: Recipe, lg: LayerGraph) -> None:
    """Overrides must name real layers and quantizable tensors (onnxruntime ignores typos)."""
    for name in recipe.layers:
        if name not in lg.layers:
            raise WorkbenchError(f"recipe layer {name!r} is not a quantizable layer of this model; "
                                 f"see session.layers() for the names (e.g. {_some(lg.layers)})")
    weights = {layer.weight for layer in lg.layers.values() if layer.weight}
    tensors = set(lg.activation_tensors()) | weights
    for name in recipe.tensors:
        if name not in tensors:
            why = "does not exist" if name not in lg.float_tensors | lg.initializers else "is not quantized"
            raise WorkbenchError(f"recipe tensor {name!r} {why} in this model; quantizable tensors "
                                 f"include {_some(tensors)}")


def _some(names) -> str:
    names = sorted(names)
    return ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")


def build_plan(lg: LayerGraph, recipe: Recipe, calib: Calibration, weights: dict[str, np.ndarray],
               target: Target) -> QuantPlan:
    check_names(recipe, lg)
    demands: dict[str, list[TensorSpec]] = {}
    weight_specs: dict[str, tuple[TensorSpec, Layer]] = {}
    fp16, float32, labels = [], [], {}
    graph_outputs = set(lg.graph_outputs)
    for layer in lg.layers.values():
        precision, act, wspec = layer_specs(layer, recipe)
        if precision == Precision.FLOAT32:
            float32.append(layer.name)
            labels[layer.name] = "float32"
            continue
        if precision == Precision.FLOAT16:
            fp16.append(layer.name)
            labels[layer.name] = "float16"
            continue
        for t in layer.inputs:
            demands.setdefault(t, []).append(recipe.tensors.get(t, act))
        if layer.output not in graph_outputs:
            demands.setdefault(layer.output, []).append(recipe.tensors.get(layer.output, act))
        if layer.weight:
            weight_specs[layer.weight] = (recipe.tensors.get(layer.weight, wspec), layer)
        labels[layer.name] = _label(act, wspec if layer.weight else None)

    plans: dict[str, TensorPlan] = {}
    quantized = [t for t, specs in demands.items() if any(s.precision.is_integer for s in specs)]
    for group in lg.groups(quantized, share_concat=target.share_concat):
        specs = [s for t in group for s in demands.get(t, []) if s.precision.is_integer]
        spec = max(specs, key=_rank)
        lo, hi = _group_range(group, spec, calib)
        qp = compute_qparams(lo, hi, bits=spec.precision.bits, signed=spec.signed,
                             symmetric=spec.symmetry.value == "symmetric", power_of_two=spec.power_of_two)
        for t in group:
            plans[t] = TensorPlan(t, "activation", spec, qp, group[0], lo, hi)

    for name, (spec, layer) in weight_specs.items():
        if not spec.precision.is_integer:
            continue
        w = weights[name]
        axis = None
        if isinstance(spec.granularity, PerChannel):
            axis = layer.weight_axis if spec.granularity.axis is None else spec.granularity.axis
            axis %= w.ndim
        lo, hi = array_clip_range(w, spec.range, bits=spec.precision.bits, symmetric=_sym(spec),
                                  signed=spec.signed, axis=axis)
        qp = compute_qparams(lo, hi, bits=spec.precision.bits, signed=spec.signed, symmetric=_sym(spec),
                             power_of_two=spec.power_of_two, axis=axis)
        plans[name] = TensorPlan(name, "weight", spec, qp, name)

    target.check((f"tensor '{p.name}'", p.spec, p.kind == "weight") for p in plans.values())
    notes: list[str] = []
    bias_scales = _bias_scales(lg, plans, weights, recipe, notes)
    return QuantPlan(plans, bias_scales, tuple(fp16), tuple(float32), labels, notes)


def _sym(spec: TensorSpec) -> bool:
    return spec.symmetry.value == "symmetric"


def _group_range(group: list[str], spec: TensorSpec, calib: Calibration) -> tuple[float, float]:
    if isinstance(spec.range, ClipRange):
        return spec.range.lo, spec.range.hi
    ranges = [calib.range(t, spec.range, bits=spec.precision.bits, symmetric=_sym(spec), signed=spec.signed)
              for t in group if t in calib.histograms]
    if not ranges:
        raise WorkbenchError(f"tensor {group[0]!r} has no calibration statistics; run calibrate() again "
                             "after changing the model")
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _bias_scales(lg: LayerGraph, plans: dict[str, TensorPlan], weights: dict[str, np.ndarray],
                 recipe: Recipe, notes: list[str]) -> dict[str, np.ndarray]:
    out = {}
    if not recipe.quantize_bias:
        return out
    for layer in lg.layers.values():
        if not (layer.bias and layer.weight in plans and layer.inputs and layer.inputs[0] in plans):
            continue
        s_in = plans[layer.inputs[0]].qparams.scale.astype(np.float64)
        s_w = plans[layer.weight].qparams.scale.astype(np.float64)
        bias = weights[layer.bias].astype(np.float64)
        scale = np.broadcast_to(s_in * s_w, bias.shape).astype(np.float32)
        if np.any(np.abs(bias) / scale > INT32_MAX):
            notes.append(f"bias {layer.bias!r} of layer {layer.name!r} left in float: int32 would overflow "
                         "at scale s_input·s_weight")
            continue
        out[layer.bias] = scale
    return out


def _label(act: TensorSpec, weight: TensorSpec | None) -> str:
    a = act.precision
    if weight is None or not weight.precision.is_integer:
        return a.value if a.is_integer or weight is None else "float32"
    w = weight.precision
    if not a.is_integer:
        return f"w{w.bits}-only"
    return f"int{a.bits}" if a == w else f"w{w.bits}a{a.bits}"
