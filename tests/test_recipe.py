import dataclasses

import pytest

from workbench.errors import WorkbenchError
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
    Recipe,
    Symmetry,
    TensorSpec,
)
from workbench.targets import TARGETS, get_target


def _rich_recipe() -> Recipe:
    r = get_target("ort-cpu").default_recipe()
    r = r.with_layer("conv1", LayerSpec(precision=Precision.INT16))
    r = r.with_layer("fc", LayerSpec(weights=TensorSpec(Precision.INT4, Symmetry.SYMMETRIC, signed=True,
                                                        granularity=PerChannel(0), range=Mse())))
    r = r.with_tensor("r1", TensorSpec(range=ClipRange(-1.5, 3.25)))
    r = r.with_tensor("mp", TensorSpec(range=Percentile(99.9), power_of_two=True))
    r = r.with_tensor("c1.w", TensorSpec(Precision.INT8, Symmetry.SYMMETRIC, signed=True, granularity=PerChannel(0),
                                         range=ClipRange([-0.5, -0.25], [0.5, 0.25])))
    return r.with_tensor("cat", TensorSpec(range=Entropy(), granularity=PerTensor()))


def test_json_round_trip_is_identity():
    r = _rich_recipe()
    back = Recipe.from_json(r.to_json())
    assert back == r
    assert back.to_json() == r.to_json()
    assert back.layers["conv1"].precision is Precision.INT16
    assert back.tensors["r1"].range == ClipRange(-1.5, 3.25)
    assert back.tensors["c1.w"].range == ClipRange((-0.5, -0.25), (0.5, 0.25))  # per channel


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_default_round_trips(name):
    r = get_target(name).default_recipe()
    assert Recipe.from_dict(r.to_dict()) == r


def test_recipe_is_frozen():
    r = Recipe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.target = "tensorrt"  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.layers["x"] = LayerSpec()  # type: ignore[index]


@pytest.mark.parametrize("bad, match", [
    (lambda: TensorSpec(precision="int7"), "precision: 'int7' is not one of"),
    (lambda: TensorSpec(symmetry="symetric"), "symmetry: 'symetric'"),
    (lambda: Percentile(30), "Percentile"),
    (lambda: ClipRange(2.0, 1.0), "lo must be smaller"),
    (lambda: ClipRange([0.0, 1.0], [1.0, 0.5]), "lo must be smaller"),
    (lambda: ClipRange([0.0, 1.0], [1.0]), "two lists of the same length"),
    (lambda: ClipRange([0.0], 1.0), "two lists of the same length"),
    (lambda: LayerSpec(precision="fp16"), "layer precision: 'fp16'"),
    (lambda: TensorSpec(range="minmax"), "range"),
    (lambda: Recipe.from_json("{not json"), "not valid JSON"),
    (lambda: Recipe.from_dict({"version": 99}), "version 99"),
    (lambda: Recipe.from_dict({"activations": {"precison": "int8"}}), "unknown key"),
    (lambda: Recipe.from_dict({"weights": {"range": {"rule": "kl"}}}), "rule: 'kl'"),
    (lambda: Recipe.from_dict({"layers": {"c": {"precision": "int3"}}}), "int3"),
    (lambda: get_target("tpu"), "unknown target 'tpu'"),
])
def test_typos_fail_at_construction(bad, match):
    with pytest.raises(WorkbenchError, match=match):
        bad()


def test_with_layer_none_removes_override():
    r = Recipe().with_layer("a", LayerSpec(precision="float16"))
    assert "a" in r.layers
    assert "a" not in r.with_layer("a", None).layers


def test_target_checks_name_the_problem():
    trt = get_target("tensorrt")
    problems = trt.problems([("tensor 'x'", TensorSpec(Precision.INT16, Symmetry.SYMMETRIC, signed=True), False),
                             ("tensor 'y'", TensorSpec(Precision.INT8, Symmetry.ASYMMETRIC), False),
                             ("tensor 'z'", TensorSpec(Precision.FLOAT16), False)])
    assert len(problems) == 2
    assert "int16" in problems[0] and "tensor 'x'" in problems[0]
    assert "symmetric" in problems[1]
    pow2 = get_target("pow2")
    assert pow2.problems([("w", TensorSpec(Precision.INT8, Symmetry.SYMMETRIC, True, PerChannel(),
                                          MinMax(), power_of_two=True), True)])
    assert not pow2.problems([("w", pow2.weights, True), ("a", pow2.activations, False)])
    with pytest.raises(WorkbenchError, match="int4 is for weights only"):
        get_target("ort-cpu").check([("tensor 'a'", TensorSpec(Precision.INT4), False)])
    assert isinstance(get_target("ort-cpu").activations.range, Auto)
