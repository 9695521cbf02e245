"""Recipe + calibration -> a plan: the exact integer format of every quantized tensor.

Resolution per layer: recipe default → layer override (precision / specs) → tensor
override. A tensor read by several layers takes the most precise integer spec they ask
for. Tensors in one group (pass-through ops, shared Concat scales) share parameters,
computed from the union of the members' clip ranges. Bias is int32 with
``scale = s_input · s_weight`` (per output channel) and zero-point 0, so it adds no error of
its own beyond rounding at the accumulator's resolution.

Defaults for places every quantizer handles badly, recorded in :attr:`QuantPlan.notes` and
changed by a tensor override in the recipe:

- outputs of ops whose range is fixed by the op (Sigmoid, HardSigmoid, Softmax: [0, 1]; Tanh:
  [−1, 1]) take that range instead of a calibrated one: a range rule that clips them (as
  histogram searches do when the top of the range is sparse) costs dB on held-out data;
- Softmax inputs (attention scores plus −1e4/−1e38 masks), mask tensors computed from integer
  inputs, and the statistics inside an unfused LayerNorm (ReduceMean/Pow/Sqrt/Div) stay float
  (see :mod:`workbench.graph.layers`): quantizing them costs up to 9 dB on an OCR recogniser;
- on targets that run onnxruntime's x86 integer kernels (``ort-cpu``), layers whose uint8×int8
  sums would saturate on CPUs without VNNI store their int8 weights as uint8 with zero-point 128
  (:mod:`workbench.quantize.saturation`): the same values, so the exact arithmetic is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from workbench.calibration import Calibration
from workbench.errors import WorkbenchError
from workbench.graph.layers import Layer, LayerGraph
from workbench.numerics import QParams, array_clip_range, compute_qparams, quantize
from workbench.quantize.saturation import RISK_THRESHOLD, saturation_risk
from workbench.recipe import ClipRange, PerChannel, Precision, Recipe, Symmetry, TensorSpec
from workbench.targets import Target

INT32_MAX = 2**31 - 1

#: Ops whose output range is fixed by the op itself: their outputs take this range by default.
FIXED_RANGES: dict[str, tuple[float, float]] = {
    "Sigmoid": (0.0, 1.0), "HardSigmoid": (0.0, 1.0), "Softmax": (0.0, 1.0), "Tanh": (-1.0, 1.0),
}
_LAYERNORM_STATS = {"ReduceMean", "Pow", "Sqrt", "Div", "Reciprocal"}


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
    notes: list[str] = []
    fixed_groups: list[str] = []
    quantized = [t for t, specs in demands.items() if any(s.precision.is_integer for s in specs)]
    for group in lg.groups(quantized, share_concat=target.share_concat):
        specs = [s for t in group for s in demands.get(t, []) if s.precision.is_integer]
        spec = max(specs, key=_rank)
        fixed = _fixed_range(group, lg, recipe)
        if fixed is not None and not isinstance(spec.range, ClipRange):
            lo, hi = fixed
            fixed_groups.append(group[0])
        else:
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
    if fixed_groups:
        notes.append(f"{len(fixed_groups)} output(s) of Sigmoid/HardSigmoid/Softmax/Tanh use the op's fixed range "
                     f"([0, 1] or [−1, 1]) instead of a calibrated one (e.g. {fixed_groups[0]!r}); a tensor "
                     "override in the recipe changes it")
    if target.avoid_u8s8_saturation:
        _avoid_saturation(lg, recipe, calib, weights, plans, notes)
    notes += _float_by_design(lg, plans)
    bias_scales = _bias_scales(lg, plans, weights, recipe, notes)
    return QuantPlan(plans, bias_scales, tuple(fp16), tuple(float32), labels, notes)


def _fixed_range(group: list[str], lg: LayerGraph, recipe: Recipe) -> tuple[float, float] | None:
    """The op-given range of a group whose members are all outputs of fixed-range ops (or of
    pass-through ops over them), unless the recipe overrides one of its tensors."""
    if any(t in recipe.tensors for t in group):
        return None
    ranges = set()
    for t in group:
        node = lg.producers.get(t)
        if node is None:
            return None
        if node.op_type in FIXED_RANGES:
            ranges.add(FIXED_RANGES[node.op_type])
        elif not (node.input and node.input[0] in group):  # pass-through inside the group
            return None
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _depthwise(node, w: np.ndarray) -> bool:
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return node.op_type == "Conv" and group > 1 and w.ndim >= 2 and w.shape[1] == 1


def _avoid_saturation(lg: LayerGraph, recipe: Recipe, calib: Calibration, weights: dict[str, np.ndarray],
                      plans: dict[str, TensorPlan], notes: list[str]) -> None:
    """uint8 weights (zero-point 128, same values) where onnxruntime's x86 uint8×int8 kernels
    without VNNI would saturate; see :mod:`workbench.quantize.saturation`."""
    nodes = {n.name: n for n in lg.producers.values()}
    changed = []
    for layer in lg.layers.values():
        wp = plans.get(layer.weight) if layer.weight else None
        xp = plans.get(layer.inputs[0]) if layer.inputs else None
        node = nodes.get(layer.name)
        if (wp is None or xp is None or node is None or layer.op_type not in ("Conv", "Gemm", "MatMul")
                or wp.spec.precision != Precision.INT8 or not wp.qparams.signed
                or wp.spec.symmetry != Symmetry.SYMMETRIC or xp.spec.precision != Precision.INT8
                or layer.weight in recipe.tensors
                or (layer.name in recipe.layers and recipe.layers[layer.name].weights is not None)
                or layer.inputs[0] not in calib.histograms):
            continue
        w = weights[layer.weight]
        if _depthwise(node, w):  # onnxruntime's depthwise kernel accumulates in int32
            continue
        xq = xp.qparams
        risk = saturation_risk(calib.histograms[layer.inputs[0]], float(xq.scale), int(xq.zero_point),
                               quantize(w, wp.qparams), layer.op_type, wp.qparams.axis,
                               raw_offset=128 if xq.signed else 0)
        if risk <= RISK_THRESHOLD:
            continue
        qp = wp.qparams
        u8 = QParams(qp.scale, np.full(qp.zero_point.shape, 128, dtype=np.int64), 8, False, qp.axis)
        plans[layer.weight] = replace(wp, spec=replace(wp.spec, signed=False), qparams=u8)
        changed.append(layer.name)
    if changed:
        notes.append(f"weights of {len(changed)} layer(s) stored as uint8 with zero-point 128 (the same values): "
                     "their uint8×int8 sums would saturate onnxruntime's x86 kernels on CPUs without VNNI "
                     f"(e.g. {changed[0]!r}); a weight tensor override with signed=True keeps int8")


def _float_by_design(lg: LayerGraph, plans: dict[str, TensorPlan]) -> list[str]:
    """Notes on the sensitive tensors that stay float by the placement rules."""
    softmax = [n for n in lg.producers.values() if n.op_type == "Softmax"]
    stats = [n for n in lg.producers.values() if n.op_type in _LAYERNORM_STATS
             and n.output and n.output[0] in lg.float_tensors and n.output[0] not in plans]
    out = []
    if softmax:
        out.append(f"{len(softmax)} Softmax input(s) stay float (attention scores plus masks); their outputs "
                   "use the fixed range [0, 1] where a layer reads them")
    if stats:
        out.append(f"{len(stats)} ReduceMean/Pow/Sqrt/Div output(s) stay float (statistics inside unfused "
                   "normalisations, where int8 costs the most)")
    return out


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
