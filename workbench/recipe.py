"""What to quantize and how: frozen values, versioned JSON in and out.

A :class:`Recipe` holds a default :class:`TensorSpec` for activations and one for weights,
plus overrides per layer (ONNX node name, :class:`LayerSpec`) and per tensor (tensor name,
:class:`TensorSpec`). Edit with :func:`dataclasses.replace` or the ``with_*`` helpers; every
option is an enum or a small frozen dataclass, so a typo fails when the object is built.

Resolution (done in :mod:`workbench.quantize.params`): default → layer override → tensor
override; where one tensor feeds layers that ask for different integer precisions, the most
precise one wins (int16 over int8).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from workbench.errors import WorkbenchError

SCHEMA_VERSION = 1
#: Recipe.bias_correction's default: shift each weighted layer's bias by the mean output error
#: its weight quantization causes on the calibration inputs (see workbench.quantize.plan). Off here;
#: Session.search_ranges (the CLI's default) turns it on per model where the calibration outputs
#: gain: measured W8A8 it moved MediaPipe's pose detector +3.9 dB and hand landmark +4.7, the demo
#: +0.25, but MiniLM −0.12 and the OCR recogniser's deployed figure −0.53.
BIAS_CORRECTION_DEFAULT = False
#: Recipe.depthwise_equalization's default: activations read only by depthwise convolutions get
#: per-channel resolution by scaling the weights around them (workbench.quantize.equalize).
DEPTHWISE_EQUALIZATION_DEFAULT = True
#: Recipe.fold_affine_chains' default: y = a·h + b by scalar constants reads h's integers on the
#: grid a·s_h and the export drops the Mul/Add (workbench.quantize.plan._affine_grids): one rounding
#: less and no float ops between Q/DQ pairs (OCR detector +1.5 dB exact, 1.15× → 1.03–1.08× the time
#: of onnxruntime's quantize_static file). Search_ranges tries it off too: on the OCR recogniser,
#: whose attention amplifies any change of rounding, it moved held-out output SQNR by −1 to +1 dB.
FOLD_AFFINE_CHAINS_DEFAULT = True


def _enum(cls: type[StrEnum], value: Any, what: str) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(m.value for m in cls)
        raise WorkbenchError(f"{what}: {value!r} is not one of: {choices}") from None


class Precision(StrEnum):
    """Numeric format of a tensor (or, for a layer, of its computation)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT16 = "int16"
    INT8 = "int8"
    INT4 = "int4"

    @property
    def bits(self) -> int:
        return {"float32": 32, "float16": 16, "int16": 16, "int8": 8, "int4": 4}[self.value]

    @property
    def is_integer(self) -> bool:
        return self.value.startswith("int")


class Symmetry(StrEnum):
    """SYMMETRIC: zero maps to the middle of the integer grid (zero-point 0 for signed
    types); ASYMMETRIC (affine): the grid spans [lo, hi] exactly, zero stays representable."""

    SYMMETRIC = "symmetric"
    ASYMMETRIC = "asymmetric"


@dataclass(frozen=True)
class PerTensor:
    """One scale and zero-point for the whole tensor."""


@dataclass(frozen=True)
class PerChannel:
    """One scale per slice along ``axis``; ``None`` means the op's output-channel axis
    (Conv weight axis 0, Gemm weight axis 0 with transB else 1, MatMul weight axis -1)."""

    axis: int | None = None


Granularity = PerTensor | PerChannel


@dataclass(frozen=True)
class MinMax:
    """Clip at the observed minimum and maximum: no clipping error, coarsest grid."""


@dataclass(frozen=True)
class Percentile:
    """Clip at the ``percentile``-th percentile of |x| (symmetric) or of each tail."""

    percentile: float = 99.99

    def __post_init__(self) -> None:
        if not 50.0 < self.percentile <= 100.0:
            raise WorkbenchError(f"Percentile({self.percentile}): choose a percentile in (50, 100]")


@dataclass(frozen=True)
class Entropy:
    """TensorRT's rule: the threshold whose quantized distribution has the least KL
    divergence from the calibration histogram."""


@dataclass(frozen=True)
class Mse:
    """The clip range with the least expected clipping + rounding error (squared)."""


@dataclass(frozen=True)
class Auto:
    """Per tensor, whichever of min-max, percentile, entropy and MSE predicts the least
    error on the stored histogram."""


@dataclass(frozen=True)
class ClipRange:
    """An explicit clip range [lo, hi], e.g. a threshold the user dragged; for a per-channel
    weight also one value per channel (tuples, e.g. imported per-channel scales)."""

    lo: float | tuple[float, ...]
    hi: float | tuple[float, ...]

    def __post_init__(self) -> None:
        listed = [isinstance(v, list | tuple) for v in (self.lo, self.hi)]
        if any(listed):
            if not all(listed) or len(self.lo) != len(self.hi) or not self.lo:  # type: ignore[arg-type]
                raise WorkbenchError(f"ClipRange({self.lo}, {self.hi}): per channel, give lo and hi as two lists of "
                                     "the same length (one value per channel)")
            object.__setattr__(self, "lo", tuple(float(v) for v in self.lo))  # type: ignore[union-attr]
            object.__setattr__(self, "hi", tuple(float(v) for v in self.hi))  # type: ignore[union-attr]
        lo, hi = (self.lo, self.hi) if self.per_channel else ((self.lo,), (self.hi,))
        if not all(a < b for a, b in zip(lo, hi, strict=True)):
            raise WorkbenchError(f"ClipRange({self.lo}, {self.hi}): lo must be smaller than hi")

    @property
    def per_channel(self) -> bool:
        return isinstance(self.lo, tuple)


RangeRule = MinMax | Percentile | Entropy | Mse | Auto | ClipRange
_RULES: dict[str, type] = {
    "minmax": MinMax,
    "percentile": Percentile,
    "entropy": Entropy,
    "mse": Mse,
    "auto": Auto,
    "clip": ClipRange,
}
_RULE_NAMES = {cls: name for name, cls in _RULES.items()}


def rule_name(rule: RangeRule) -> str:
    """Short name of a range rule: 'minmax', 'percentile', 'entropy', 'mse', 'auto', 'clip'."""
    return _RULE_NAMES[type(rule)]


@dataclass(frozen=True)
class TensorSpec:
    """How one tensor is represented. Integer fields are ignored for float precisions."""

    precision: Precision = Precision.INT8
    symmetry: Symmetry = Symmetry.ASYMMETRIC
    signed: bool = False
    granularity: Granularity = field(default_factory=PerTensor)
    range: RangeRule = field(default_factory=MinMax)
    power_of_two: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", _enum(Precision, self.precision, "precision"))
        object.__setattr__(self, "symmetry", _enum(Symmetry, self.symmetry, "symmetry"))
        if not isinstance(self.granularity, PerTensor | PerChannel):
            raise WorkbenchError(
                f"granularity: {self.granularity!r} is not PerTensor() or PerChannel(axis)")
        if not isinstance(self.range, RangeRule):
            raise WorkbenchError(f"range: {self.range!r} is not one of: {', '.join(_RULES)}")

    @property
    def symmetric(self) -> bool:
        return self.symmetry == Symmetry.SYMMETRIC

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "precision": self.precision.value,
            "symmetry": self.symmetry.value,
            "signed": self.signed,
            "granularity": "per_channel" if isinstance(self.granularity, PerChannel) else "per_tensor",
            "range": {"rule": rule_name(self.range), **dataclasses.asdict(self.range)},
            "power_of_two": self.power_of_two,
        }
        if isinstance(self.granularity, PerChannel):
            d["axis"] = self.granularity.axis
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "spec") -> TensorSpec:
        known = {"precision", "symmetry", "signed", "granularity", "axis", "range", "power_of_two"}
        _no_unknown(d, known, where)
        kw: dict[str, Any] = {k: d[k] for k in ("precision", "symmetry", "signed", "power_of_two") if k in d}
        gran = d.get("granularity", "per_tensor")
        if gran == "per_channel":
            kw["granularity"] = PerChannel(d.get("axis"))
        elif gran == "per_tensor":
            kw["granularity"] = PerTensor()
        else:
            raise WorkbenchError(f"{where}.granularity: {gran!r} is not 'per_tensor' or 'per_channel'")
        if "range" in d:
            kw["range"] = _rule_from_dict(d["range"], f"{where}.range")
        return cls(**kw)


def _rule_from_dict(d: Any, where: str) -> RangeRule:
    if not isinstance(d, Mapping) or "rule" not in d:
        raise WorkbenchError(
            f"{where}: expected an object like {{'rule': 'percentile', 'percentile': 99.99}}")
    name = d["rule"]
    if name not in _RULES:
        raise WorkbenchError(f"{where}.rule: {name!r} is not one of: {', '.join(_RULES)}")
    cls = _RULES[name]
    params = {k: v for k, v in d.items() if k != "rule"}
    _no_unknown(params, {f.name for f in dataclasses.fields(cls)}, where)
    return cls(**params)


def _no_unknown(d: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(d) - known)
    if extra:
        raise WorkbenchError(f"{where}: unknown key(s) {extra}; known keys: {sorted(known)}")


@dataclass(frozen=True)
class LayerSpec:
    """Override for one layer (an ONNX node and its tensors).

    ``precision`` is the layer's precision: FLOAT32 leaves it in float, FLOAT16 runs it as
    an fp16 island, INT16/INT8 set its activation precision, INT4 its weight precision.
    ``activations``/``weights`` replace the defaults for this layer's tensors outright.
    """

    precision: Precision | None = None
    activations: TensorSpec | None = None
    weights: TensorSpec | None = None

    def __post_init__(self) -> None:
        if self.precision is not None:
            object.__setattr__(self, "precision", _enum(Precision, self.precision, "layer precision"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.precision is not None:
            d["precision"] = self.precision.value
        if self.activations is not None:
            d["activations"] = self.activations.to_dict()
        if self.weights is not None:
            d["weights"] = self.weights.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> LayerSpec:
        _no_unknown(d, {"precision", "activations", "weights"}, where)
        return cls(
            precision=d.get("precision"),
            activations=TensorSpec.from_dict(d["activations"], f"{where}.activations")
            if "activations" in d else None,
            weights=TensorSpec.from_dict(d["weights"], f"{where}.weights") if "weights" in d else None,
        )


def default_activations() -> TensorSpec:
    return TensorSpec(Precision.INT8, Symmetry.ASYMMETRIC, signed=False, range=Auto())


def default_weights() -> TensorSpec:
    return TensorSpec(Precision.INT8, Symmetry.SYMMETRIC, signed=True, granularity=PerChannel())


@dataclass(frozen=True)
class Recipe:
    """The whole quantization plan for one model. A value: compare, hash-free, JSON round trip."""

    target: str = "ort-cpu"
    activations: TensorSpec = field(default_factory=default_activations)
    weights: TensorSpec = field(default_factory=default_weights)
    quantize_bias: bool = True
    bias_correction: bool = BIAS_CORRECTION_DEFAULT
    depthwise_equalization: bool = DEPTHWISE_EQUALIZATION_DEFAULT
    fold_affine_chains: bool = FOLD_AFFINE_CHAINS_DEFAULT
    layers: Mapping[str, LayerSpec] = field(default_factory=dict)
    tensors: Mapping[str, TensorSpec] = field(default_factory=dict)
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.version != SCHEMA_VERSION:
            raise WorkbenchError(
                f"recipe version {self.version} is not supported (this workbench reads version "
                f"{SCHEMA_VERSION})")
        for name, spec in self.layers.items():
            if not isinstance(spec, LayerSpec):
                raise WorkbenchError(f"layers[{name!r}]: expected a LayerSpec, got {type(spec).__name__}")
        for name, spec in self.tensors.items():
            if not isinstance(spec, TensorSpec):
                raise WorkbenchError(f"tensors[{name!r}]: expected a TensorSpec, got {type(spec).__name__}")
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))
        object.__setattr__(self, "tensors", MappingProxyType(dict(self.tensors)))

    # -- editing -------------------------------------------------------------------------
    def with_layer(self, name: str, spec: LayerSpec | None) -> Recipe:
        """A copy with layer ``name`` overridden (``None`` removes the override)."""
        layers = {k: v for k, v in self.layers.items() if k != name}
        if spec is not None:
            layers[name] = spec
        return dataclasses.replace(self, layers=layers)

    def with_tensor(self, name: str, spec: TensorSpec | None) -> Recipe:
        """A copy with tensor ``name`` overridden (``None`` removes the override)."""
        tensors = {k: v for k, v in self.tensors.items() if k != name}
        if spec is not None:
            tensors[name] = spec
        return dataclasses.replace(self, tensors=tensors)

    # -- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "target": self.target,
            "activations": self.activations.to_dict(),
            "weights": self.weights.to_dict(),
            "quantize_bias": self.quantize_bias,
            "bias_correction": self.bias_correction,
            "depthwise_equalization": self.depthwise_equalization,
            "fold_affine_chains": self.fold_affine_chains,
            "layers": {k: v.to_dict() for k, v in sorted(self.layers.items())},
            "tensors": {k: v.to_dict() for k, v in sorted(self.tensors.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recipe:
        if not isinstance(d, Mapping):
            raise WorkbenchError("recipe: expected a JSON object")
        _no_unknown(d, {"version", "target", "activations", "weights", "quantize_bias", "bias_correction",
                        "depthwise_equalization", "depthwise_per_channel", "fold_affine_chains", "layers", "tensors"},
                    "recipe")
        version = d.get("version", SCHEMA_VERSION)
        return cls(
            version=version,
            target=d.get("target", "ort-cpu"),
            activations=TensorSpec.from_dict(d["activations"], "activations")
            if "activations" in d else default_activations(),
            weights=TensorSpec.from_dict(d["weights"], "weights") if "weights" in d else default_weights(),
            quantize_bias=bool(d.get("quantize_bias", True)),
            bias_correction=bool(d.get("bias_correction", BIAS_CORRECTION_DEFAULT)),
            depthwise_equalization=bool(d.get("depthwise_equalization",  # earlier name, same meaning
                                              d.get("depthwise_per_channel", DEPTHWISE_EQUALIZATION_DEFAULT))),
            fold_affine_chains=bool(d.get("fold_affine_chains", FOLD_AFFINE_CHAINS_DEFAULT)),
            layers={k: LayerSpec.from_dict(v, f"layers[{k!r}]") for k, v in d.get("layers", {}).items()},
            tensors={k: TensorSpec.from_dict(v, f"tensors[{k!r}]") for k, v in d.get("tensors", {}).items()},
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise WorkbenchError(f"recipe JSON is not valid JSON: {e}") from None
        return cls.from_dict(d)
