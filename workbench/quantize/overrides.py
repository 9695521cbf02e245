"""onnxruntime's ``TensorQuantOverrides`` (the ``extra_options`` of ``quantize_static``) in
and out, as JSON-able dicts: ``{tensor: [{"quant_type": "QInt8", "scale": ..., "zero_point":
..., "axis": 0}]}`` (import also takes ``symmetric`` and ``rmin``/``rmax``).

Export writes the plan's exact parameters, so onnxruntime reproduces our grid. Import turns
each entry into a per-tensor recipe override: ``rmin``/``rmax`` or ``scale``/``zero_point``
become an explicit clip range that yields the same grid. Unlike onnxruntime, names that do
not exist or are not quantized are errors (checked when the recipe is applied).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.quantize.plan import QuantPlan
from workbench.recipe import ClipRange, PerChannel, PerTensor, Precision, Recipe, Symmetry, TensorSpec

_TYPES = {"QInt4": (Precision.INT4, True), "QUInt4": (Precision.INT4, False),
          "QInt8": (Precision.INT8, True), "QUInt8": (Precision.INT8, False),
          "QInt16": (Precision.INT16, True), "QUInt16": (Precision.INT16, False)}
_NAMES = {v: k for k, v in _TYPES.items()}
_KEYS = {"quant_type", "symmetric", "scale", "zero_point", "axis", "rmin", "rmax", "reduce_range"}


def plan_to_overrides(plan: QuantPlan) -> dict[str, list[dict[str, Any]]]:
    """Every integer tensor of ``plan`` with its exact scale and zero-point."""
    out = {}
    for t in plan.tensors.values():
        qp = t.qparams
        entry: dict[str, Any] = {
            "quant_type": _NAMES[(t.spec.precision, qp.signed)],
            "scale": np.asarray(qp.scale, np.float64).tolist(),
            "zero_point": np.asarray(qp.zero_point, np.int64).tolist(),
        }
        if qp.axis is not None:
            entry["axis"] = qp.axis
        out[t.name] = [entry]
    return out


def overrides_to_recipe(overrides: Mapping[str, Any], base: Recipe, *, weights: set[str]) -> Recipe:
    """``base`` with one tensor override per entry. ``weights`` names the weight tensors
    (their defaults come from ``base.weights``, the rest from ``base.activations``)."""
    if not isinstance(overrides, Mapping):
        raise WorkbenchError("TensorQuantOverrides: expected an object {tensor name: [ {...} ]}")
    recipe = base
    for name, entries in overrides.items():
        where = f"TensorQuantOverrides[{name!r}]"
        if isinstance(entries, Mapping):
            entries = [entries]
        if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], Mapping):
            raise WorkbenchError(f"{where}: expected a list with one object (per-consumer overrides are not "
                                 "supported)")
        e = entries[0]
        extra = sorted(set(e) - _KEYS)
        if extra:
            raise WorkbenchError(f"{where}: unknown key(s) {extra}; known keys: {sorted(_KEYS)}")
        spec = base.weights if name in weights else base.activations
        if "quant_type" in e:
            if e["quant_type"] not in _TYPES:
                raise WorkbenchError(f"{where}.quant_type: {e['quant_type']!r} is not one of: {', '.join(_TYPES)}")
            precision, signed = _TYPES[e["quant_type"]]
            spec = replace(spec, precision=precision, signed=signed)
        if "symmetric" in e:
            spec = replace(spec, symmetry=Symmetry.SYMMETRIC if e["symmetric"] else Symmetry.ASYMMETRIC)
        if "axis" in e:
            spec = replace(spec, granularity=PerChannel(int(e["axis"])))
        elif name not in weights:
            spec = replace(spec, granularity=PerTensor())
        if "rmin" in e or "rmax" in e:
            if "rmin" not in e or "rmax" not in e:
                raise WorkbenchError(f"{where}: give both rmin and rmax")
            spec = replace(spec, range=ClipRange(float(e["rmin"]), float(e["rmax"])))
        elif "scale" in e:
            spec = replace(spec, range=_grid_range(e, spec, where))
        recipe = recipe.with_tensor(name, spec)
    return recipe


def _grid_range(e: Mapping[str, Any], spec: TensorSpec, where: str) -> ClipRange:
    """The clip range whose grid has this scale and zero-point (one per channel for lists)."""
    scale = np.asarray(e["scale"], np.float64).ravel()
    zp = np.asarray(e.get("zero_point", 0), np.float64).ravel()
    if zp.size not in (1, scale.size) or (scale.size > 1 and "axis" not in e):
        raise WorkbenchError(f"{where}: {scale.size} scales and {zp.size} zero-points; per channel, give one of "
                             "each per channel and the 'axis'")
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise WorkbenchError(f"{where}.scale: must be finite and positive")
    bits = spec.precision.bits
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if spec.signed else (0, 2**bits - 1)
    if spec.symmetry == Symmetry.SYMMETRIC:
        lo, hi = -scale * (2 ** (bits - 1) - 1), scale * (2 ** (bits - 1) - 1)
    else:
        lo, hi = (qmin - zp) * scale, (qmax - zp) * scale
    if scale.size == 1:
        return ClipRange(float(lo[0]), float(hi[0]))
    return ClipRange(tuple(lo.tolist()), tuple(hi.tolist()))
