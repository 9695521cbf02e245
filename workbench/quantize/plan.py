"""Recipe + calibration -> a plan: the exact integer format of every quantized tensor.

Resolution per layer: recipe default → layer override (precision / specs) → tensor
override. A tensor read by several layers takes the most precise integer spec they ask
for. Tensors in one group (pass-through ops, shared Concat scales) share parameters,
computed from the union of the members' clip ranges. Bias is int32 with
``scale = s_input · s_weight`` (per output channel) and zero-point 0, so it adds no error of
its own beyond rounding at the accumulator's resolution; where it would not fit, that output
channel's weight scale is raised (:func:`_bias_scales`). A scalar affine chain ``y = a·h + b``
reads ``h``'s integers on the grid ``a·s_h`` (:func:`_affine_grids`).

Defaults for places every quantizer handles badly, recorded in :attr:`QuantPlan.notes` and
changed by a tensor override in the recipe:

- outputs of ops whose range is fixed by the op (Sigmoid, HardSigmoid, Softmax: [0, 1]; Tanh:
  [−1, 1]) take that range instead of a calibrated one: a range rule that clips them (as
  histogram searches do when the top of the range is sparse) costs dB on held-out data;
- Softmax inputs (attention scores plus −1e4/−1e38 masks), LayerNormalization inputs (residual
  sums with outlier channels), mask tensors computed from integer inputs, and the statistics
  inside an unfused LayerNorm (ReduceMean/Pow/Sqrt/Div) stay float
  (see :mod:`workbench.graph.layers`): quantizing them costs up to 9 dB on an OCR recogniser;
- with ``Recipe.bias_correction``, each Conv/Gemm/MatMul bias becomes ``b − δ`` with
  ``δ_o = Σ_k (W_q − W)[o, k] · E[x_k]``: the mean shift of each output channel that weight
  rounding causes, from the per-channel means of the layer's *float* input collected during
  calibration (for Conv, ``E[x]`` per input channel, summed over the kernel window and taken
  over the group's channels). Conv/Gemm without a bias get one; a MatMul's bias is the constant
  operand of the Add that alone reads it (transformer graphs), which stays float;
- with ``Recipe.depthwise_equalization``, an activation read only by depthwise convolutions
  and produced by a Conv (with or without a fused Relu/Clip) is equalized: channel ``c`` of the
  producing weights and bias is divided by ``s_c`` and the depthwise filters reading it multiplied
  by ``s_c`` (:mod:`workbench.quantize.equalize`), so one scale per tensor gives each channel
  its own range (a 0.2-wide channel beside a 6-wide one would keep 8 levels) and onnxruntime
  still runs integer kernels; the plans of those weights are for the scaled values;
- on targets that run onnxruntime's x86 integer kernels (``ort-cpu``), layers whose uint8×int8
  sums would saturate on CPUs without VNNI get int8 weight scales at which no weight pair can
  saturate where that adds little noise, and otherwise store their int8 weights as uint8 with
  zero-point 128 (the same values; :mod:`workbench.quantize.saturation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from workbench.calibration import Calibration, input_channel_axes
from workbench.errors import WorkbenchError
from workbench.graph.layers import AffineLink, Layer, LayerGraph
from workbench.models.naming import unique_name
from workbench.numerics import QParams, array_clip_range, compute_qparams, dequantize, quantize
from workbench.quantize.equalize import depthwise, equalize_depthwise_inputs
from workbench.quantize.saturation import (
    FIT_RISK_THRESHOLD,
    RISK_THRESHOLD,
    noise_ratio,
    pair_fit_scales,
    saturation_risk,
)
from workbench.recipe import ClipRange, PerChannel, Precision, Recipe, Symmetry, TensorSpec
from workbench.targets import Target

#: A constant shift of an affine-linked activation below this share of its grid step is left alone.
NEGLIGIBLE_SHIFT = 0.02
#: A padded Conv takes an affine-linked input's constant shift into its bias if at most this share of
#: its output positions read padding (there the bias over-corrects).
BORDER_SHARE = 0.1
#: An affine chain's shift b of at least this many steps of y's grid moves h's step to make it whole.
REGRID_STEPS = 8
#: Largest |int32 bias|: half the int32 range, the other half left to the products' sum.
BIAS_LIMIT = 2**30

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
    #: initializer -> its float value in the quantized model, where the plan changes it (bias
    #: correction, depthwise equalization); the weight and bias plans are for these values
    values: dict[str, np.ndarray] = field(default_factory=dict)
    #: layer name -> name of a bias initializer added by bias correction (value in ``values``)
    added_biases: dict[str, str] = field(default_factory=dict)
    #: activation -> the tensor whose integers it reads through its own grid (a scalar affine
    #: chain ``y = a·h + b`` between them that the export drops; see :func:`_affine_grids`)
    affine_sources: dict[str, str] = field(default_factory=dict)


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
        if layer.output not in graph_outputs and not lg.read_as_float(layer.output):
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
        qp = spec_qparams(spec, lo, hi)
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
        lo, hi = array_clip_range(w, spec.range, bits=spec.precision.bits, symmetric=spec.symmetric,
                                  signed=spec.signed, axis=axis)
        qp = spec_qparams(spec, lo, hi, axis=axis)
        plans[name] = TensorPlan(name, "weight", spec, qp, name)

    affine = (_affine_grids(lg, recipe, plans, fixed_groups, weights, calib, notes) if recipe.fold_affine_chains
              else {})
    target.check((f"tensor '{p.name}'", p.spec, p.kind == "weight") for p in plans.values())
    if fixed_groups:
        notes.append(f"{len(fixed_groups)} output(s) of Sigmoid/HardSigmoid/Softmax/Tanh use the op's fixed range "
                     f"([0, 1] or [−1, 1]) instead of a calibrated one (e.g. {fixed_groups[0]!r}); a tensor "
                     "override in the recipe changes it")
    if target.avoid_u8s8_saturation:
        _avoid_saturation(lg, recipe, calib, weights, plans, notes, target.pair_fit_noise)
    notes += _float_by_design(lg, plans)
    biases = _Biases(lg, weights)
    if recipe.bias_correction:
        _bias_correction(lg, plans, weights, calib, notes, biases)
    _compensate_affine_shifts(lg, plans, affine, weights, calib, biases)
    values, added = biases.values, biases.added
    if recipe.depthwise_equalization:  # last: it rescales weights and the corrected biases
        values |= equalize_depthwise_inputs(lg, recipe, calib, weights, values, added, plans, fixed_groups, notes)
    bias_scales = _bias_scales(lg, plans, {**weights, **values}, recipe, notes, added)
    return QuantPlan(plans, bias_scales, tuple(fp16), tuple(float32), labels, notes, values, added, affine)


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


def _affine_grids(lg: LayerGraph, recipe: Recipe, plans: dict[str, TensorPlan], fixed_groups: list[str],
                  weights: dict[str, np.ndarray], calib: Calibration, notes: list[str]) -> dict[str, str]:
    """Give ``y = a·h + b`` (a scalar affine chain, :class:`~workbench.graph.layers.AffineLink`)
    the image of ``h``'s grid instead of a grid of its own::

        y ≈ a·s_h·(q_h − z_h) + b = s_y·(q_h − z_y),   s_y = a·s_h,   z_y = round(z_h − b / s_y)

    so ``y`` is ``h``'s integers read with other parameters: no second rounding, and the export
    drops the chain (onnxruntime ran it in float between two Q/DQ pairs). Rounding ``z_y`` moves
    every value of ``y`` by the same ``ε = s_y·(z_h − z_y) − b`` (|ε| ≤ s_y/2); a constant error does
    not average out downstream (one such shift cost an OCR recogniser 6 dB), so unless it is
    negligible (≤ ``NEGLIGIBLE_SHIFT·s_y``) ``y`` is linked only where every reader is a Conv (with
    little padding) or a Gemm whose bias takes ``ε·ΣW`` back (:func:`_compensate_affine_shifts`), or where
    ``b`` spans at least ``REGRID_STEPS`` of y's steps: then h's step is set so that ``b/s_y`` is a
    whole number (h's grid moves by at most ``1/(2·REGRID_STEPS)``, ε = 0). Only for ``a > 0``, a
    per-tensor ``h`` of the same integer type, ``z_y`` inside the type's range, ``y`` not a model
    output, no tensor override on ``y`` and ``y``'s group made of ``y`` and its pass-through
    outputs; ``Recipe.fold_affine_chains`` off leaves every chain in float. Returns ``{y: h}``."""
    out: dict[str, str] = {}
    regridded: set[str] = set()
    members: dict[str, list[str]] = {}
    for t, p in plans.items():
        if p.kind == "activation":
            members.setdefault(p.group, []).append(t)
    below: dict[str, list[str]] = {}
    for src, dst in lg.passthrough:
        below.setdefault(src, []).append(dst)
    for y, link in lg.affine.items():
        p, hp = plans.get(y), plans.get(link.source)
        if (p is None or hp is None or p.group != y or hp.group == y or y in recipe.tensors or link.scale <= 0
                or y in lg.graph_outputs  # the file must still compute it
                or hp.qparams.axis is not None or (p.spec.precision, p.spec.signed) != (hp.spec.precision,
                                                                                      hp.qparams.signed)):
            continue
        reach, todo = {y}, [y]
        while todo:
            for d in below.get(todo.pop(), []):
                if d not in reach:
                    reach.add(d)
                    todo.append(d)
        group = members[y]
        if not set(group) <= reach:
            continue
        qp = _affine_grid(link, hp.qparams)
        if qp is None:
            continue
        eps = _affine_shift(link, qp, hp.qparams)
        if abs(eps) > NEGLIGIBLE_SHIFT * float(qp.scale) and not (
                group == [y] and _absorbs_shift(y, lg, plans, weights, calib)):
            # make b a whole number of y's steps instead: h's step changes by at most 1 / (2·REGRID_STEPS)
            steps = link.shift / float(qp.scale)
            h_group = members[hp.group]
            if (abs(steps) < REGRID_STEPS or hp.group in regridded or hp.group in fixed_groups
                    or any(plans[src].group == hp.group for src in out.values())  # a y already reads h's grid
                    or any(t in recipe.tensors for t in h_group)):
                continue
            h = hp.qparams
            h_step = np.float32(link.shift / (link.scale * round(steps)))
            h_zp = h.zero_point if hp.spec.symmetric else np.clip(np.rint(h.qmin - hp.lo / h_step), h.qmin, h.qmax)
            h_qp = QParams(h_step, np.int64(h_zp), h.bits, h.signed)
            qp = _affine_grid(link, h_qp)
            if qp is None or abs(_affine_shift(link, qp, h_qp)) > NEGLIGIBLE_SHIFT * float(qp.scale):
                continue
            h_lo, h_hi = float(h_step) * (h.qmin - int(h_zp)), float(h_step) * (h.qmax - int(h_zp))
            for t in h_group:
                plans[t] = replace(plans[t], qparams=h_qp, lo=h_lo, hi=h_hi)
            regridded.add(hp.group)
        h = plans[link.source].qparams
        zp, scale = int(qp.zero_point), float(qp.scale)
        lo, hi = scale * (h.qmin - zp), scale * (h.qmax - zp)
        for t in group:
            plans[t] = replace(plans[t], spec=replace(plans[t].spec, signed=h.signed), qparams=qp, lo=lo, hi=hi)
        out[y] = link.source
    if out:
        y = next(iter(out))
        notes.append(f"{len(out)} scalar affine chain(s) y = a·h + b read h's integers on the grid a·s_h (e.g. "
                     f"{y!r} from {out[y]!r}): no second rounding, and the export drops the Mul/Add; a tensor "
                     "override on y gives it a grid of its own, Recipe.fold_affine_chains=False all of them")
    return out


def _avoid_saturation(lg: LayerGraph, recipe: Recipe, calib: Calibration, weights: dict[str, np.ndarray],
                      plans: dict[str, TensorPlan], notes: list[str], pair_fit_noise: float) -> None:
    """Layers whose uint8×int8 sums would saturate onnxruntime's x86 kernels without VNNI get
    pair-fitted int8 weight scales where that adds at most ``pair_fit_noise`` to their predicted
    noise (risk above ``FIT_RISK_THRESHOLD``), uint8 weights (zero-point 128, the same values)
    elsewhere (risk above ``RISK_THRESHOLD``); see :mod:`workbench.quantize.saturation`."""
    nodes = {n.name: n for n in lg.producers.values()}
    fitted, unsigned = [], []
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
        if depthwise(node, w):  # onnxruntime's depthwise kernel accumulates in int32
            continue
        xq, qp, hist = xp.qparams, wp.qparams, calib.histograms[layer.inputs[0]]
        risk = saturation_risk(hist, float(xq.scale), int(xq.zero_point), quantize(w, qp), layer.op_type, qp.axis,
                               raw_offset=128 if xq.signed else 0, channels=calib.channel_range(layer.inputs[0]))
        if risk <= FIT_RISK_THRESHOLD:
            continue
        fit = pair_fit_scales(w, layer.op_type, qp.axis, qp.scale)
        if pair_fit_noise > 0 and noise_ratio(w, layer.op_type, qp.axis, qp.scale, fit, hist.mean_square,
                                              float(xq.scale)) <= 1 + pair_fit_noise:
            plans[layer.weight] = replace(wp, qparams=replace(qp, scale=fit.astype(np.float32)))
            fitted.append(layer.name)
        elif risk > RISK_THRESHOLD:
            u8 = QParams(qp.scale, np.full(qp.zero_point.shape, 128, dtype=np.int64), 8, False, qp.axis)
            plans[layer.weight] = replace(wp, spec=replace(wp.spec, signed=False), qparams=u8)
            unsigned.append(layer.name)
    why = "their uint8×int8 sums would saturate onnxruntime's x86 kernels on CPUs without VNNI"
    if fitted:
        notes.append(f"weight scales of {len(fitted)} layer(s) raised so that no pair of int8 weights can saturate "
                     f"(e.g. {fitted[0]!r}; at most +{pair_fit_noise:.0%} predicted layer noise): {why}; a weight "
                     "tensor override keeps the plain scales")
    if unsigned:
        notes.append(f"weights of {len(unsigned)} layer(s) stored as uint8 with zero-point 128 (the same values, "
                     f"slower kernels; e.g. {unsigned[0]!r}): {why}, and pair-fitted int8 scales would cost more "
                     "than that; a weight tensor override with signed=True keeps int8")


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


def spec_qparams(spec: TensorSpec, lo: float | np.ndarray, hi: float | np.ndarray, *,
                 axis: int | None = None) -> QParams:
    """The integer grid ``spec`` gives the clip range ``[lo, hi]`` (per channel along ``axis``)."""
    return compute_qparams(lo, hi, bits=spec.precision.bits, signed=spec.signed, symmetric=spec.symmetric,
                           power_of_two=spec.power_of_two, axis=axis)


def _group_range(group: list[str], spec: TensorSpec, calib: Calibration) -> tuple[float, float]:
    if isinstance(spec.range, ClipRange):
        if spec.range.per_channel:
            raise WorkbenchError(f"tensor {group[0]!r}: a ClipRange with one value per channel applies to "
                                 "per-channel weights; activations take one lo and one hi")
        return spec.range.lo, spec.range.hi  # type: ignore[return-value]
    ranges = [calib.range(t, spec.range, bits=spec.precision.bits, symmetric=spec.symmetric, signed=spec.signed)
              for t in group if t in calib.histograms]
    if not ranges:
        raise WorkbenchError(f"tensor {group[0]!r} has no calibration statistics; run calibrate() again "
                             "after changing the model")
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _bias_scales(lg: LayerGraph, plans: dict[str, TensorPlan], weights: dict[str, np.ndarray],
                 recipe: Recipe, notes: list[str], added: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """int32 bias scale ``s_in·s_w`` of every layer with integer input and weights. Where a bias
    would not fit (``|b| / (s_in·s_w) > BIAS_LIMIT``: output channels whose weights are negligible
    beside their bias, e.g. dead channels, or depthwise filters scaled down by equalization), that
    channel's weight scale is raised to ``|b| / (s_in·BIAS_LIMIT)`` in ``plans``: its products then
    stay below ``K·255·128 / 2³⁰`` of its bias, and the layer keeps an int32 bias (a float bias is
    no way out: onnxruntime quantizes it itself when it fuses the layer and clamps it to int32)."""
    out = {}
    if not recipe.quantize_bias:
        return out
    added = added or {}
    raised = []
    for layer in lg.layers.values():
        name = layer.bias or added.get(layer.name)
        if not (name and layer.weight in plans and layer.inputs and layer.inputs[0] in plans):
            continue
        s_in = np.float64(plans[layer.inputs[0]].qparams.scale)
        wp = plans[layer.weight]
        s_w = np.asarray(wp.qparams.scale, np.float64)
        bias = weights[name].astype(np.float64)
        if s_w.ndim and s_w.size != bias.size:
            continue
        need = np.abs(bias).reshape(s_w.shape if s_w.ndim else -1) / (s_in * BIAS_LIMIT)
        if np.any(need > s_w):
            s_w = np.maximum(s_w, need if s_w.ndim else need.max()).astype(np.float32)
            plans[layer.weight] = replace(wp, qparams=replace(wp.qparams, scale=s_w))
            raised.append(layer.name)
        out[name] = np.broadcast_to(s_in * np.asarray(plans[layer.weight].qparams.scale, np.float64),
                                    bias.shape).astype(np.float32)
    if raised:
        notes.append(f"weight scales of {len(raised)} layer(s) raised on the output channels whose int32 bias would "
                     f"not fit at s_input·s_weight (weights negligible beside the bias, e.g. {raised[0]!r}); "
                     "their biases stay int32 (onnxruntime would clamp a float one to int32 itself)")
    return out


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return a.f if a.type == a.FLOAT else a.i
    return default


def _ints(node, name: str) -> list[int] | None:
    for a in node.attribute:
        if a.name == name:
            return list(a.ints)
    return None


def _tap_positions(node, kernel: tuple[int, ...], spatial: tuple[int, ...]) -> list[np.ndarray] | None:
    """Per spatial dim of a Conv, the input index each (output position, tap) reads: ``[out, k]``
    arrays (outside ``[0, size)`` = zero padding); None if the output would be empty."""
    n = len(kernel)
    strides = _ints(node, "strides") or [1] * n
    dilations = _ints(node, "dilations") or [1] * n
    pads = _ints(node, "pads") or [0] * (2 * n)
    auto = next((a.s.decode() for a in node.attribute if a.name == "auto_pad"), "NOTSET")
    out = []
    for i, (size, k) in enumerate(zip(spatial, kernel, strict=True)):
        s, d = strides[i], dilations[i]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            total = max(0, (-(-size // s) - 1) * s + d * (k - 1) + 1 - size)
            begin = total // 2 if auto == "SAME_UPPER" else total - total // 2
            end = total - begin
        elif auto == "VALID":
            begin = end = 0
        else:
            begin, end = pads[i], pads[i + n]
        positions = (size + begin + end - d * (k - 1) - 1) // s + 1
        if positions <= 0:
            return None
        out.append(np.arange(positions)[:, None] * s - begin + np.arange(k)[None, :] * d)
    return out


def tap_coverage(node, kernel: tuple[int, ...], spatial: tuple[int, ...] | None) -> np.ndarray:
    """Per kernel tap of a Conv, the share of output positions where it reads real input rather
    than zero padding (1 everywhere without padding or without a known input size)."""
    idx = _tap_positions(node, kernel, spatial) if spatial is not None and len(spatial) == len(kernel) else None
    if idx is None:
        return np.ones(kernel)
    cover = np.ones(())
    for i, size in zip(idx, spatial, strict=True):
        cover = np.multiply.outer(cover, ((i >= 0) & (i < size)).mean(0))
    return cover


def border_share(node, kernel: tuple[int, ...], spatial: tuple[int, ...] | None) -> float:
    """Share of a Conv's output positions where some tap reads zero padding (1 if unknown)."""
    idx = _tap_positions(node, kernel, spatial) if spatial is not None and len(spatial) == len(kernel) else None
    if idx is None:
        return 1.0
    inside = np.prod([((i >= 0) & (i < size)).all(1).mean() for i, size in zip(idx, spatial, strict=True)])
    return float(1.0 - inside)


def weight_mean_shift(op_type: str, node, w: np.ndarray, w_q: np.ndarray, mu: np.ndarray,
                      spatial: tuple[int, ...] | None = None) -> np.ndarray | None:
    """δ per output channel: the mean output shift that replacing ``w`` by ``w_q`` causes for inputs
    with per-channel mean ``mu`` (a scalar: the same mean on every channel; None if the shapes do
    not fit). For a Conv, ``spatial`` (the input's size) weights each kernel tap by the share of
    output positions where it reads real input, not zero padding."""
    dw = w_q.astype(np.float64) - w.astype(np.float64)
    mu = np.asarray(mu, np.float64)

    def channels(n: int) -> np.ndarray:
        return np.full(n, float(mu)) if mu.ndim == 0 else mu

    if op_type == "Conv":
        groups = int(_attr(node, "group", 1))
        out_ch, cg = dw.shape[:2]
        mu = channels(cg * groups)
        if mu.size != cg * groups or out_ch % groups:
            return None
        cover = tap_coverage(node, tuple(dw.shape[2:]), spatial)
        per_in = (dw * cover).reshape(out_ch, cg, -1).sum(-1)  # [O, C/g]: summed over the kernel window
        group_of = np.arange(out_ch) // (out_ch // groups)
        return (per_in * mu.reshape(groups, cg)[group_of]).sum(1)
    if dw.ndim != 2:
        return None
    if op_type == "Gemm":
        nk = dw if _attr(node, "transB", 0) else dw.T
        mu = channels(nk.shape[1])
        return float(_attr(node, "alpha", 1.0)) * (nk @ mu) if mu.size == nk.shape[1] else None
    if op_type == "MatMul":
        mu = channels(dw.shape[0])
        return mu @ dw if mu.size == dw.shape[0] else None
    return None


class _Biases:
    """Float bias values the plan changes (``values``) and the biases it adds (``added``: layer
    -> new initializer name), shared by bias correction and the affine shift compensation."""

    def __init__(self, lg: LayerGraph, weights: dict[str, np.ndarray]) -> None:
        self.lg, self.weights = lg, weights
        self.values: dict[str, np.ndarray] = {}
        self.added: dict[str, str] = {}
        self.taken = lg.initializers | lg.float_tensors | set(lg.producers) | set(lg.consumers) | {
            n.name for nodes in lg.consumers.values() for n in nodes}

    def subtract(self, layer: Layer, node, delta: np.ndarray) -> bool:
        """Bias of ``layer`` becomes ``b − δ`` (per output channel); a Conv/Gemm without a bias
        gets one. False where the layer has no bias of its own to change."""
        beta = float(_attr(node, "beta", 1.0)) if layer.op_type == "Gemm" else 1.0
        name = self.added.get(layer.name) or _bias_of(layer, node, self.lg)
        if name is None and layer.op_type in ("Conv", "Gemm") and (len(node.input) < 3 or not node.input[2]):
            name = unique_name(f"{layer.name}.bias", self.taken)
            self.taken.add(name)
            self.added[layer.name] = name
            b = np.zeros(delta.shape, np.float64)
        elif name is None or not _fits(self.weights[name], delta.size):
            return False
        else:
            b = self.values.get(name, self.weights[name]).astype(np.float64)
        self.values[name] = (b.reshape(-1) - delta / beta).reshape(b.shape).astype(np.float32)
        return True


def _node_of(layer: Layer, lg: LayerGraph):
    return next((n for n in lg.consumers.get(layer.inputs[0], []) if n.name == layer.name), None) \
        if layer.inputs else None


def _bias_correction(lg: LayerGraph, plans: dict[str, TensorPlan], weights: dict[str, np.ndarray],
                     calib: Calibration, notes: list[str], biases: _Biases) -> None:
    """Correct the biases of the weighted layers with integer weights (``b − δ``, into ``biases``)."""
    axes = input_channel_axes(lg)
    no_mean = no_bias = done = 0
    for layer in lg.layers.values():
        if layer.op_type not in ("Conv", "Gemm", "MatMul") or layer.weight not in plans or not layer.inputs:
            continue
        node = _node_of(layer, lg)
        mu = calib.channel_mean(layer.inputs[0], axes.get(layer.inputs[0], 1))
        if node is None or mu is None:
            no_mean += 1
            continue
        wp = plans[layer.weight]
        w = weights[layer.weight]
        stats = calib.means.get(layer.inputs[0])
        delta = weight_mean_shift(layer.op_type, node, w, dequantize(quantize(w, wp.qparams), wp.qparams), mu,
                                  stats.spatial if stats is not None else None)
        if delta is None:
            continue
        if biases.subtract(layer, node, delta):
            done += 1
        else:
            no_bias += 1
    if done:
        notes.append(f"bias correction: the biases of {done} layer(s) ({len(biases.added)} added) are shifted by "
                     "the mean output error of their weight quantization, from the per-channel means of the "
                     "float inputs on the calibration data; Recipe.bias_correction=False turns it off"
                     + (f"; {no_mean} layer(s) lack input means (calibrate again)" if no_mean else "")
                     + (f"; {no_bias} layer(s) without a bias of their own (a MatMul without a constant Add) "
                        "left as they are" if no_bias else ""))


def _affine_grid(link: AffineLink, h: QParams) -> QParams | None:
    """``y``'s grid as the image of ``h``'s (None where ``z_y`` falls outside the type's range)."""
    scale = np.float32(link.scale * float(h.scale))
    zp = int(np.rint(float(h.zero_point) - link.shift / float(scale)))
    if not (h.qmin <= zp <= h.qmax) or not np.isfinite(scale) or scale <= 0:
        return None
    return QParams(scale, np.int64(zp), h.bits, h.signed)


def _affine_shift(link: AffineLink, y: QParams, h: QParams) -> float:
    """``ε = s_y·(z_h − z_y) − b``: what reading ``h``'s integers on ``y``'s grid adds to ``y``."""
    return float(np.float64(y.scale) * (int(h.zero_point) - int(y.zero_point)) - link.shift)


def _compensate_affine_shifts(lg: LayerGraph, plans: dict[str, TensorPlan], affine: dict[str, str],
                              weights: dict[str, np.ndarray], calib: Calibration, biases: _Biases) -> None:
    """Subtract ``ε·Σ W`` (taps weighted by how often they read real input, not padding) from
    the bias of every layer reading an affine-linked ``y`` whose shift ``ε`` is not negligible
    (:func:`_affine_grids` links those only where every reader can take it)."""
    for y, h in affine.items():
        eps = _affine_shift(lg.affine[y], plans[y].qparams, plans[h].qparams)
        if abs(eps) <= NEGLIGIBLE_SHIFT * float(plans[y].qparams.scale):
            continue
        stats = calib.means.get(y)
        for node in lg.consumers.get(y, []):
            layer = lg.layers[node.name]
            w = weights[layer.weight]
            delta = weight_mean_shift(layer.op_type, node, np.zeros_like(w), w, np.float64(eps),
                                      stats.spatial if stats is not None else None)
            if delta is not None:
                biases.subtract(layer, node, delta)


def _absorbs_shift(y: str, lg: LayerGraph, plans: dict[str, TensorPlan], weights: dict[str, np.ndarray],
                   calib: Calibration) -> bool:
    """Whether every reader of ``y`` is a Conv or Gemm with integer weights, reading it as its
    input and with a bias of its own (or none yet): a constant shift of ``y`` moves into that bias.
    A padded Conv reads zeros at the border, where the shift is not, so there its bias takes it
    back only on average: allowed where at most ``BORDER_SHARE`` of its outputs touch padding (on
    the small feature maps of an OCR recogniser the border is most of the map)."""
    stats = calib.means.get(y)
    for node in lg.consumers.get(y, []):
        layer = lg.layers.get(node.name)
        if (layer is None or layer.op_type not in ("Conv", "Gemm") or layer.inputs != (y,) or node.input[0] != y
                or layer.weight not in plans or (layer.bias is not None and len(lg.consumers[layer.bias]) != 1)):
            return False
        kernel = tuple(weights[layer.weight].shape[2:])
        if layer.op_type == "Conv" and border_share(node, kernel, stats.spatial if stats else None) > BORDER_SHARE:
            return False
    return True


def _fits(bias: np.ndarray, n: int) -> bool:
    """A bias with one value per output channel ([N] or [1, .., N])."""
    return bias.size == n and (bias.ndim <= 1 or bias.shape[-1] == n)


def _bias_of(layer: Layer, node, lg: LayerGraph) -> str | None:
    """The bias initializer of ``layer`` that only it reads: Conv/Gemm input 2, or the constant
    operand of an Add that alone reads a MatMul's output."""
    if layer.op_type in ("Conv", "Gemm"):
        name = layer.bias
    else:
        consumers = lg.consumers.get(node.output[0], [])
        if layer.fused or len(consumers) != 1 or consumers[0].op_type != "Add":
            return None
        others = [i for i in consumers[0].input if i != node.output[0]]
        name = others[0] if len(others) == 1 and others[0] in lg.initializers else None
    if name is None or len(lg.consumers.get(name, [])) != 1:
        return None
    return name


def _label(act: TensorSpec, weight: TensorSpec | None) -> str:
    a = act.precision
    if weight is None or not weight.precision.is_integer:
        return a.value if a.is_integer or weight is None else "float32"
    w = weight.precision
    if not a.is_integer:
        return f"w{w.bits}-only"
    return f"int{a.bits}" if a == w else f"w{w.bits}a{a.bits}"
