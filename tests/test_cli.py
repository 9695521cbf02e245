"""The command line is a contract: names, JSON keys, exit codes, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from tests.builders import conv_net, conv_net_data
from workbench.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    onnx.save(conv_net(), d / "m.onnx")
    np.savez(d / "calib.npz", x=conv_net_data(48))
    np.savez(d / "eval.npz", x=conv_net_data(24, seed=7))
    return d


def test_quantize_json_contract(files, capsys):
    out = files / "out" / "q.onnx"
    out.parent.mkdir()
    rc = main(["quantize", str(files / "m.onnx"), "--data", str(files / "calib.npz"), "--out", str(out),
               "--eval", str(files / "eval.npz"), "--report", str(files / "out" / "r.html"), "--json",
               "--quiet"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["out"] == str(out) and result["target"] == "ort-cpu"
    assert set(result["outputs"]) == {"logits"}
    assert 15 < result["outputs"]["logits"]["sqnr_db"] < 80
    assert 0.95 < result["outputs"]["logits"]["cosine"] <= 1.0
    assert {row["name"] for row in result["layers"]} >= {"conv1", "dwconv", "fc"}
    assert all({"name", "op_type", "precision", "sqnr_db"} <= set(row) for row in result["layers"])
    assert out.exists() and (files / "out" / "r.html").exists() and (files / "out" / "q.recipe.json").exists()
    html = (files / "out" / "r.html").read_text()
    assert "<script" not in html and "dwconv" in html
    assert sorted(p.name for p in out.parent.iterdir()) == ["q.onnx", "q.recipe.json", "r.html"]
    recipe = json.loads((files / "out" / "q.recipe.json").read_text())
    for flag in ("bias_correction", "depthwise_equalization", "fold_affine_chains"):  # chosen by the search, recorded
        assert result[flag] is recipe[flag]


def test_inspect_json(files, capsys):
    assert main(["inspect", str(files / "m.onnx"), "--data", str(files / "calib.npz"), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    tensors = {t["tensor"]: t for t in result["tensors"]}
    assert tensors["r1"]["min"] >= 0 and tensors["r1"]["zero_fraction"] > 0.1  # after a fused Relu
    assert {row["name"] for row in result["layers"]} >= {"conv1", "add"}


def test_console_script_runs(files):
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "inspect", str(files / "m.onnx"), "--data",
                        str(files / "nope.npz")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "nope.npz" in r.stderr


def _bad_inputs(files):
    d = files
    (d / "text.onnx").write_text("this is not a model")
    (d / "trunc.onnx").write_bytes((d / "m.onnx").read_bytes()[:200])
    np.savez(d / "wrongname.npz", image=conv_net_data(4))
    np.savez(d / "wrongshape.npz", x=conv_net_data(4)[:, :2])
    np.savez(d / "wrongdtype.npz", x=conv_net_data(4).astype(np.int32))
    np.savez(d / "empty.npz", x=np.zeros((0, 3, 16, 16), np.float32))
    (d / "bad.json").write_text("{oops")
    (d / "ghost.json").write_text(json.dumps({"layers": {"ghost_layer": {"precision": "int16"}}}))
    (d / "trt.json").write_text(json.dumps({"target": "tensorrt", "activations": {"symmetry": "asymmetric"}}))
    m, c = str(d / "m.onnx"), str(d / "calib.npz")
    return {
        "missing model": ([str(d / "missing.onnx"), "--data", c], "missing.onnx"),
        "not onnx": ([str(d / "text.onnx"), "--data", c], "text.onnx"),
        "truncated": ([str(d / "trunc.onnx"), "--data", c], "trunc.onnx"),
        "missing data": ([m, "--data", str(d / "nodata.npz")], "nodata.npz"),
        "wrong input name": ([m, "--data", str(d / "wrongname.npz")], "'x'"),
        "wrong shape": ([m, "--data", str(d / "wrongshape.npz")], "x"),
        "wrong dtype": ([m, "--data", str(d / "wrongdtype.npz")], "int32"),
        "empty data": ([m, "--data", str(d / "empty.npz")], "empty"),
        "bad recipe json": ([m, "--data", c, "--recipe", str(d / "bad.json")], "JSON"),
        "missing recipe": ([m, "--data", c, "--recipe", str(d / "nope.json")], "nope.json"),
        "unknown layer": ([m, "--data", c, "--recipe", str(d / "ghost.json")], "ghost_layer"),
        "target conflict": ([m, "--data", c, "--recipe", str(d / "trt.json")], "symmetric"),
        "unknown target": ([m, "--data", c, "--target", "tpu"], "tpu"),
    }


@pytest.mark.parametrize("case", range(13))
def test_bad_input_gives_one_line_and_no_file(files, capsys, case):
    name, (args, needle) = list(_bad_inputs(files).items())[case]
    out = files / f"bad{case}" / "q.onnx"
    out.parent.mkdir()
    rc = main(["quantize", *args, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, name
    assert err.startswith("error:") and "\n" not in err, (name, err)
    assert needle.lower() in err.lower(), (name, err)
    assert list(out.parent.iterdir()) == [], name


def test_out_folder_missing(files, capsys):
    rc = main(["quantize", str(files / "m.onnx"), "--data", str(files / "calib.npz"), "--out",
               str(files / "no" / "such" / "q.onnx"), "--quiet"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_quantize_json_has_exact_and_deployed_sqnr_and_cpu(files, capsys):
    out = files / "out_dep" / "q.onnx"
    out.parent.mkdir()
    rc = main(["quantize", str(files / "m.onnx"), "--data", str(files / "calib.npz"), "--out", str(out),
               "--eval", str(files / "eval.npz"), "--json", "--quiet", "--no-search"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    row = result["outputs"]["logits"]
    assert 15 < row["sqnr_db"] < 80 and 15 < row["deployed_sqnr_db"] < 80
    assert isinstance(result["cpu"]["vnni"], bool) or result["cpu"]["vnni"] is None
    assert {"arch", "isa", "u8s8_saturates", "describe"} <= set(result["cpu"])
    gap = abs(row["sqnr_db"] - row["deployed_sqnr_db"])
    assert result["deployed_gap_db"] == pytest.approx(gap, abs=1e-6)
    # the ort-cpu profile keeps the file exact on this machine: no warning
    assert gap <= 0.5 and result["deployed_warning"] is None
