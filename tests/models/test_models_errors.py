"""Every bad model input gives a one-line WorkbenchError naming the source and the problem."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from workbench.errors import WorkbenchError
from workbench.models import load_model, load_onnx


def _relu(mk, op="Relu", inputs=("x",), opset=13, **kw):
    nodes = [helper.make_node(op, list(inputs), ["y"])]
    return mk.make(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], opset=opset, **kw)


def _raises(source, *fragments: str) -> str:
    with pytest.raises(WorkbenchError) as info:
        load_model(source)
    msg = str(info.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.onnx", "model file not found", "nope.onnx")


def test_directory(tmp_path):
    _raises(tmp_path, str(tmp_path), "is not a file")


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("hello, this is not a model\n")
    _raises(path, str(path), "is not an ONNX model")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    _raises(path, str(path), "is empty")


def test_truncated_file(mk, tmp_path):
    data = mk.conv_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    _raises(path, str(path), "truncated")


def test_garbage_bytes():
    _raises(b"\x00\x01garbage\xff" * 8, "<bytes>", "not an ONNX model")


def test_model_without_inputs(mk):
    nodes = [helper.make_node("Relu", ["w"], ["y"])]
    proto = mk.make(nodes, [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                    {"w": mk.f32(2)})
    _raises(proto, "<ModelProto>", "the model has no inputs")


def test_unknown_op_onnxruntime_cannot_load(mk):
    _raises(_relu(mk, op="Frobnicate"), "onnxruntime cannot load the model", "Frobnicate")


def test_dangling_input_onnxruntime_cannot_load(mk):
    _raises(_relu(mk, inputs=("q",)), "onnxruntime cannot load the model", "'q'")


def test_missing_external_data_file(mk, tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save_model(mk.conv_model(), path, save_as_external_data=True, location="ext.bin", size_threshold=0)
    (tmp_path / "ext.bin").unlink()
    _raises(path, str(path), "'ext.bin'", "missing", "copy the external data file")


def test_proto_with_unread_external_data(mk, tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save_model(mk.conv_model(), path, save_as_external_data=True, location="ext.bin", size_threshold=0)
    proto = onnx.load(path, load_external_data=False)
    _raises(proto, "external file 'ext.bin'", "onnx.load(path)")


def test_no_default_opset(mk):
    proto = _relu(mk)
    del proto.opset_import[:]
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    _raises(proto, "imports no ai.onnx opset")


def test_missing_tflite_and_torch_files_are_named(tmp_path):
    _raises(tmp_path / "m.tflite", "model file not found", "m.tflite")
    _raises(tmp_path / "m.pt2", "model file not found", "m.pt2")


def test_torch_pickles_and_modules_without_inputs_say_what_to_do(tmp_path):
    torch = pytest.importorskip("torch")
    (tmp_path / "m.pt").write_bytes(b"not a graph")
    _raises(tmp_path / "m.pt", "m.pt", "state dict", "torch.export.save")
    _raises(torch.nn.Linear(2, 2), "Linear: no example inputs", "pass example_inputs")


def test_unsupported_source_type():
    _raises(42, "cannot load a model from a int")
    with pytest.raises(WorkbenchError, match="cannot load ONNX from a list"):
        load_onnx([1, 2])
