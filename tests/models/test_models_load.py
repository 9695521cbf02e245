"""load_onnx / load_model: sources, tensor facts, node naming, external data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import workbench
from workbench.models import LoadedModel, TensorInfo, load_model, load_onnx


def test_loads_from_path_bytes_and_proto_alike(mk, tmp_path):
    proto = mk.conv_model()
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    models = [load_onnx(path), load_onnx(str(path)), load_onnx(proto.SerializeToString()), load_onnx(proto)]
    assert [m.source for m in models] == [str(path), str(path), "<bytes>", "<ModelProto>"]
    for m in models:
        assert isinstance(m, LoadedModel) and m.format == "onnx"
        assert m.inputs == [TensorInfo("x", ("N", 3, 8, 8), np.dtype(np.float32))]
        assert m.outputs == [TensorInfo("y", ("N", 5), np.dtype(np.float32))]
        assert m.opset() == m.original_opset == 13
        assert m.notes == []
    assert len(proto.graph.value_info) == 0, "the caller's proto must not be changed"


def test_tensor_types_cover_intermediates_and_initializers(mk):
    m = load_onnx(mk.conv_model())
    types = m.tensor_types()
    assert types["c"].shape == ("N", 4, 6, 6) and types["r"].shape == ("N", 4, 6, 6)
    assert types["f"].shape == ("N", 144)
    assert types["W"] == TensorInfo("W", (4, 3, 3, 3), np.dtype(np.float32))
    assert {"x", "y", "W", "B", "G", "gb", "c", "r", "f"} <= set(types)


def test_initializers_are_arrays_and_cached(mk):
    proto = mk.conv_model()
    m = load_onnx(proto)
    inits = m.initializers()
    expected = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert set(inits) == set(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(inits[k], v)
    assert m.initializers() is inits


def test_batch_dynamic():
    f32 = np.dtype(np.float32)
    assert TensorInfo("x", ("N", 3), f32).batch_dynamic
    assert TensorInfo("x", (None, 3), f32).batch_dynamic
    assert TensorInfo("x", None, f32).batch_dynamic
    assert not TensorInfo("x", (1, 3), f32).batch_dynamic
    assert TensorInfo("x", ("N", 3, 32, 32), f32).describe() == "x float32 [N,3,32,32]"


def test_fixed_batch_model(mk):
    m = load_onnx(mk.conv_model(batch=1))
    assert m.inputs[0].shape == (1, 3, 8, 8) and not m.inputs[0].batch_dynamic


def test_external_data_next_to_the_model(mk, tmp_path):
    proto = mk.conv_model()
    path = tmp_path / "ext.onnx"
    copy = onnx.ModelProto.FromString(proto.SerializeToString())  # save_model empties the tensors it saves
    onnx.save_model(copy, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.bin", size_threshold=0)
    assert (tmp_path / "ext.bin").stat().st_size > 0
    m = load_onnx(path)
    np.testing.assert_array_equal(m.initializers()["G"], numpy_helper.to_array(proto.graph.initializer[2]))
    x = mk.f32(2, 3, 8, 8)
    np.testing.assert_allclose(mk.ort_run(m.proto, {"x": x})[0], mk.ort_run(proto, {"x": x})[0], rtol=1e-6)


def test_empty_and_duplicate_node_names_are_fixed(mk):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name=""),
             helper.make_node("Relu", ["a"], ["b"], name="dup"),
             helper.make_node("Relu", ["b"], ["c"], name="dup"),
             helper.make_node("Relu", ["c"], ["d"], name="Relu_0"),  # a real name equal to a fill-in
             helper.make_node("Relu", ["d"], ["y"], name="")]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("x", "y")]
    m = load_onnx(mk.make(nodes, vi[:1], vi[1:]))
    names = [n.name for n in m.proto.graph.node]
    assert names == ["Relu_0_1", "dup", "dup_1", "Relu_0", "Relu_4"]
    assert any("named 2 unnamed" in n for n in m.notes)
    assert any("duplicate" in n and "'dup' → 'dup_1'" in n for n in m.notes)
    again = load_onnx(mk.make(nodes, vi[:1], vi[1:]))
    assert [n.name for n in again.proto.graph.node] == names


def test_load_model_dispatches_onnx(mk, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(mk.conv_model(), path)
    assert load_model(path).inputs[0].name == "x"
    assert load_model(path.read_bytes()).source == "<bytes>"
    assert load_model(mk.conv_model()).source == "<ModelProto>"


def test_importing_does_not_import_torch():
    code = "import sys, workbench.models, workbench.runtime; assert 'torch' not in sys.modules"
    root = str(Path(workbench.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
