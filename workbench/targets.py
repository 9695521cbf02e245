"""Target profiles: what a deployment target can run, its default recipe, and why.

A profile gives the default activation and weight specs and checks a recipe, returning
one line per problem that names the tensor/layer, what the target can't do, and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.recipe import (
    Auto,
    PerChannel,
    Precision,
    Recipe,
    Symmetry,
    TensorSpec,
)

#: ``ort-cpu``'s ``pair_fit_noise``: ``10·log10(1.12) = 0.49`` dB, the 0.5 dB budget, even if every layer
#: of a network took its whole share (see :func:`workbench.quantize.saturation.noise_ratio`).
ORT_CPU_PAIR_FIT_NOISE = 0.12

Check = Callable[[str, TensorSpec, bool], str | None]
"""(where, spec, is_weight) -> a problem sentence, or None when the target can run it."""


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    activations: TensorSpec
    weights: TensorSpec
    checks: tuple[Check, ...] = ()
    share_concat: bool = False  # Concat inputs and output take one scale (no requantize)
    # Make layers where onnxruntime's uint8×int8 x86 kernels without VNNI would saturate
    # saturation-free (workbench.quantize.saturation): pair-fitted int8 weight scales where the
    # layer's predicted output noise grows by at most ``pair_fit_noise`` (0: never), else uint8
    # weights with zero-point 128 (the same values).
    avoid_u8s8_saturation: bool = False
    pair_fit_noise: float = 0.0

    def default_recipe(self) -> Recipe:
        return Recipe(target=self.name, activations=self.activations, weights=self.weights)

    def problems(self, specs: Iterable[tuple[str, TensorSpec, bool]]) -> list[str]:
        """Every (where, spec, is_weight) that asks for something this target cannot run."""
        out = []
        for where, spec, is_weight in specs:
            if spec.precision.is_integer:
                out += [msg for check in self.checks if (msg := check(where, spec, is_weight))]
        return out

    def check(self, specs: Iterable[tuple[str, TensorSpec, bool]]) -> None:
        """Raise one WorkbenchError naming the first problem (and how many more there are)."""
        problems = self.problems(specs)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise WorkbenchError(f"target '{self.name}': {problems[0]}{more}")


def _no_int4_activations(where: str, spec: TensorSpec, is_weight: bool) -> str | None:
    if spec.precision == Precision.INT4 and not is_weight:
        return f"{where}: int4 is for weights only; use int8 or int16 for activations"
    return None


def _symmetric_only(where: str, spec: TensorSpec, is_weight: bool) -> str | None:
    if spec.symmetry != Symmetry.SYMMETRIC or not spec.signed:
        return (f"{where}: this target runs only signed symmetric quantization (zero-point 0); "
                "set symmetry=symmetric, signed=True")
    return None


def _no_int16(where: str, spec: TensorSpec, is_weight: bool) -> str | None:
    if spec.precision == Precision.INT16:
        return f"{where}: this target has no int16 kernels; use int8, float16 or float32"
    return None


def _pow2_per_tensor(where: str, spec: TensorSpec, is_weight: bool) -> str | None:
    if not spec.power_of_two:
        return f"{where}: this target needs power-of-two scales; set power_of_two=True"
    if isinstance(spec.granularity, PerChannel):
        return f"{where}: this target uses one scale per tensor; set granularity=PerTensor()"
    return None


_W8_PER_CHANNEL = TensorSpec(Precision.INT8, Symmetry.SYMMETRIC, signed=True, granularity=PerChannel())

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "ort-cpu",
            "onnxruntime on CPU: uint8 asymmetric activations (zero-point absorbs ReLU's one-sided "
            "range), int8 symmetric per-channel weights, int32 bias. Layers whose uint8×int8 sums would "
            "saturate onnxruntime's x86 kernels without VNNI get weight scales at which no pair of weights "
            "can (where that adds at most 12 % to the layer's noise) or uint8 weights (zero-point 128, the "
            "same values), so the file runs as measured on every CPU. int16 activations run "
            "exactly here too (onnxruntime keeps them as Q/DQ around float kernels: float speed).",
            TensorSpec(Precision.INT8, Symmetry.ASYMMETRIC, signed=False, range=Auto()),
            _W8_PER_CHANNEL,
            (_no_int4_activations,),
            avoid_u8s8_saturation=True,
            pair_fit_noise=ORT_CPU_PAIR_FIT_NOISE,
        ),
        Target(
            "tensorrt",
            "NVIDIA TensorRT: int8 symmetric everywhere (it ignores zero-points), per-channel "
            "weights, per-tensor activations; no int16.",
            TensorSpec(Precision.INT8, Symmetry.SYMMETRIC, signed=True, range=Auto()),
            _W8_PER_CHANNEL,
            (_no_int4_activations, _symmetric_only, _no_int16),
            share_concat=True,
        ),
        Target(
            "int16-npu",
            "NPUs with 16-bit activations (TFLite's 16x8 mode): uint16 asymmetric activations, "
            "int8 symmetric per-channel weights.",
            TensorSpec(Precision.INT16, Symmetry.ASYMMETRIC, signed=False, range=Auto()),
            _W8_PER_CHANNEL,
            (_no_int4_activations,),
        ),
        Target(
            "pow2",
            "Power-of-two DSPs such as TI's TIDL: int8 symmetric, one power-of-two scale per "
            "tensor, so rescaling is a shift.",
            TensorSpec(Precision.INT8, Symmetry.SYMMETRIC, signed=True, range=Auto(), power_of_two=True),
            TensorSpec(Precision.INT8, Symmetry.SYMMETRIC, signed=True, power_of_two=True),
            (_no_int4_activations, _symmetric_only, _pow2_per_tensor),
            share_concat=True,
        ),
    )
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise WorkbenchError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}") from None
