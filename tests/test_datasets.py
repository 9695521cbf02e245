"""Real inputs for the zoo models (workbench.datasets) and the MiniLM ONNX export (workbench.minilm)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from workbench import datasets, zoo
from workbench.errors import WorkbenchError

pytestmark = pytest.mark.zoo


@pytest.fixture(scope="module")
def root():
    r = zoo.default_root()
    try:
        for name in ("ocr_det", "ocr_rec", "ocr_dict", "minilm", "page", "dejavu_sans"):
            zoo.path(name, r)
    except WorkbenchError as e:
        pytest.skip(str(e))
    return r


def _session(p) -> ort.InferenceSession:
    return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])


def _edit_distance(a: str, b: str) -> int:
    d = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, cb in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (ca != cb))
    return d[-1]


# --------------------------------------------------------------------------------------------- detector
def test_det_inputs_shape_range_determinism(root):
    a = datasets.ocr_det_inputs(6, root=root)
    assert list(a) == ["x"] and a["x"].shape == (6, 3, 320, 320) and a["x"].dtype == np.float32
    assert a["x"].min() >= -1.0 and a["x"].max() <= 1.0
    np.testing.assert_array_equal(a["x"], datasets.ocr_det_inputs(6, root=root)["x"])
    assert not np.array_equal(a["x"], datasets.ocr_det_inputs(6, seed=1, root=root)["x"])
    assert datasets.ocr_det_inputs(1, size=256, root=root)["x"].shape == (1, 3, 256, 256)
    with pytest.raises(WorkbenchError, match="multiple of 32"):
        datasets.ocr_det_inputs(1, size=300, root=root)
    with pytest.raises(WorkbenchError, match="at least one"):
        datasets.ocr_det_inputs(0, root=root)


def test_det_model_finds_text_on_page_crops(root):
    n = 8
    x = datasets.ocr_det_inputs(n, root=root)
    sess = _session(zoo.path("ocr_det", root))
    assert [i.name for i in sess.get_inputs()] == ["x"]
    prob = sess.run(None, x)[0]
    assert prob.shape == (n, 1, 320, 320)
    frac = (prob[:, 0] > 0.3).mean(axis=(1, 2))
    src = datasets.ocr_det_sources(n)
    page = frac[[s == "page" for s in src]]
    photo = frac[[s == "photo" for s in src]]
    assert src.count("page") >= n // 2
    assert page.min() > 0.05, frac  # text strokes cover 12-18% of a page crop
    assert photo.max() < page.min(), frac


# ------------------------------------------------------------------------------------------- recogniser
def test_rec_inputs_shape_padding_determinism(root):
    a = datasets.ocr_rec_inputs(4, root=root)["x"]
    assert a.shape == (4, 3, 48, 320) and a.dtype == np.float32
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert any(np.all(s[:, :, -8:] == 0.0) for s in a)  # zero padding on the right
    np.testing.assert_array_equal(a, datasets.ocr_rec_inputs(4, root=root)["x"])
    texts = datasets.ocr_rec_texts(4, root=root)
    assert len(texts) == 4 and all(t.strip() for t in texts)
    assert texts != datasets.ocr_rec_texts(4, seed=1, root=root)


def test_rec_model_reads_rendered_lines(root):
    n = 32
    x = datasets.ocr_rec_inputs(n, root=root)
    truth = datasets.ocr_rec_texts(n, root=root)
    logits = _session(zoo.path("ocr_rec", root)).run(None, x)[0]
    read = datasets.ocr_rec_decode(logits, zoo.path("ocr_dict", root))
    errors = sum(_edit_distance(r.strip(), t) for r, t in zip(read, truth, strict=True))
    accuracy = 1 - errors / sum(len(t) for t in truth)
    assert accuracy >= 0.8, list(zip(truth, read, strict=True))


def test_rec_decode_checks_dictionary(root):
    with pytest.raises(WorkbenchError, match="does not match"):
        datasets.ocr_rec_decode(np.zeros((1, 40, 10), np.float32), zoo.path("ocr_dict", root))
    chars = datasets._read_ocr_dict(zoo.path("ocr_dict", root))
    logits = np.zeros((1, 6, len(chars)), np.float32)
    for t, c in enumerate(["a", "a", "blank", "a", " ", "b"]):
        logits[0, t, chars.index(c)] = 1.0
    assert datasets.ocr_rec_decode(logits, zoo.path("ocr_dict", root)) == ["aa b"]


# ---------------------------------------------------------------------------------------------- MiniLM
def test_tokenizer_known_words(root):
    tok = datasets.minilm_tokenizer(root)
    assert tok.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    assert tok.tokenize("Embeddings") == ["em", "##bed", "##ding", "##s"]
    assert tok.tokenize("Hello, world!") == ["hello", ",", "world", "!"]
    assert tok.tokenize("naïve café") == ["naive", "cafe"]
    assert tok.tokenize("\U0001f9ea x") == ["[UNK]", "x"]
    enc = tok.encode(["A man is eating food.", "word " * 50], seq_len=12)
    assert enc["input_ids"][0, :8].tolist() == [101, 1037, 2158, 2003, 5983, 2833, 1012, 102]
    assert enc["input_ids"][0, 8:].tolist() == [0] * 4 and enc["attention_mask"][0].sum() == 8
    assert enc["input_ids"][1, -1] == 102 and enc["attention_mask"][1].all()


def test_minilm_inputs(root):
    a = datasets.minilm_inputs(80, seq_len=24, root=root)  # past the 69-sentence corpus
    assert sorted(a) == ["attention_mask", "input_ids", "token_type_ids"]
    assert all(v.shape == (80, 24) and v.dtype == np.int64 for v in a.values())
    assert (a["input_ids"][:, 0] == 101).all() and not a["token_type_ids"].any()
    b = datasets.minilm_inputs(80, seq_len=24, root=root)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_datasets_import_does_not_load_torch():
    code = "import sys, workbench.datasets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_save_npz_atomic(tmp_path):
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.ones((2, 4), np.int64)}
    p = datasets.save_npz(tmp_path / "calib.npz", arrays)
    with np.load(p) as z:
        assert sorted(z.files) == ["ids", "x"] and np.array_equal(z["x"], arrays["x"])
    assert [f.name for f in tmp_path.iterdir()] == ["calib.npz"]
    with pytest.raises(WorkbenchError, match="does not exist"):
        datasets.save_npz(tmp_path / "missing" / "a.npz", arrays)


def test_read_safetensors_f16_f32(tmp_path):
    from workbench.minilm import read_safetensors

    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    b = np.array([1.5, -2.0], np.float32)
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}
    h = json.dumps(header).encode()
    (tmp_path / "t.safetensors").write_bytes(len(h).to_bytes(8, "little") + h + a.tobytes() + b.tobytes())
    t = read_safetensors(tmp_path / "t.safetensors")
    assert t["a"].dtype == np.float16 and np.array_equal(t["a"], a) and np.array_equal(t["b"], b)


@pytest.fixture(scope="module")
def minilm(root, tmp_path_factory):
    from workbench import minilm

    path = minilm.export_minilm_onnx(tmp_path_factory.mktemp("minilm") / "minilm.onnx", root=root)
    return path, minilm.load_minilm(root)


def test_minilm_export_graph_and_parity(root, minilm):
    from workbench.minilm import onnx_parity

    path, model = minilm
    proto = onnx.load(path)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in proto.graph.output] == ["last_hidden_state"]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert all(isinstance(d, str) for d in dims)  # dynamic batch and sequence
    ops = {n.op_type for n in proto.graph.node}
    assert "LayerNormalization" in ops and "Erf" in ops
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # one file, no external data
    for n, s, seed in ((16, 48, 5), (3, 20, 6)):
        assert onnx_parity(path, model, datasets.minilm_inputs(n, seq_len=s, seed=seed, root=root)) <= 1e-4


def test_minilm_paraphrases_closer_than_unrelated(root, minilm):
    from workbench.minilm import embed

    _, model = minilm
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awful."]
    e = embed(model, texts, root)
    np.testing.assert_array_equal(e, embed(model, texts, root))  # deterministic
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > 0.6 and e[0] @ e[2] < 0.3
