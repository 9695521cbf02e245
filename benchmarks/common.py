"""Shared benchmark plumbing: the models and their real data, timing, child processes, output.

Every benchmark script prints ONE JSON object to stdout (human tables go to stderr). Models:

* ``demo``    — ``assets/demo/mnist_dsconv.onnx`` with ``calib.npz`` / ``eval.npz`` (skipped if absent);
* ``ocr_det`` — PP-OCRv4 detector on :func:`workbench.datasets.ocr_det_inputs` crops (320x320 default);
* ``ocr_rec`` — PP-OCRv4 recogniser on rendered text lines (:func:`~workbench.datasets.ocr_rec_inputs`);
* ``minilm``  — all-MiniLM-L6-v2 exported to ONNX once (``<zoo>/derived/minilm.onnx``), 32-token sentences;
* the MediaPipe TFLite models (``TFLITE_MODELS``) — ``workbench.zoo.path(name)`` is the ``.tflite`` file (what
  ``workbench quantize`` takes); :func:`onnx_path` writes its imported ONNX graph (NHWC inputs) for tools
  that need ONNX; data: :func:`workbench.datasets.tflite_image_inputs` (photo crops, the model's own input
  scaling).

Calibration and evaluation samples are the two halves of ONE seeded stream (first ``n_calib``, then
``n_eval``): disjoint by construction, which separate seeds would not guarantee (MiniLM draws from a
69-sentence corpus).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = ("demo", "ocr_det", "ocr_rec", "minilm")
TFLITE_MODELS = ("face_detection_short_range", "hand_landmark_full", "palm_detection_lite", "pose_detection",
                 "selfie_segmentation")
ALL_MODELS = MODELS + TFLITE_MODELS  # the peer comparison runs on all; the other scripts default to MODELS
DEMO_DIR = Path(os.environ.get("WORKBENCH_BENCH_DEMO_DIR") or ROOT / "assets" / "demo")  # env: for testing
SEED = 20240601
OCR_DET_SIZE = 320
MINILM_SEQ = 32


class Unavailable(Exception):
    """A model or its data is not there (e.g. the demo is still being produced); skip it with a note."""


# -- models and data ---------------------------------------------------------------------------------------
def model_path(name: str) -> Path:
    """Path of benchmark model ``name`` (MiniLM is exported on first use and cached; a TFLite model's path is
    its ``.tflite`` file, see :func:`onnx_path`)."""
    if name == "demo":
        p = DEMO_DIR / "mnist_dsconv.onnx"
        if not (p.is_file() and (DEMO_DIR / "calib.npz").is_file() and (DEMO_DIR / "eval.npz").is_file()):
            raise Unavailable(f"demo not built yet ({p} / calib.npz / eval.npz missing)")
        return p
    from workbench import zoo

    if name == "minilm":
        cached = zoo.default_root() / "derived" / "minilm.onnx"
        if cached.is_file():  # skip importing torch (it would inflate the memory numbers)
            return cached
        from workbench.minilm import minilm_onnx

        return minilm_onnx()

    if name not in ("ocr_det", "ocr_rec", *TFLITE_MODELS):
        raise ValueError(f"unknown benchmark model {name!r}; choose from {ALL_MODELS}")
    return zoo.path(name)


def onnx_path(name: str, folder: str | os.PathLike) -> Path:
    """An ONNX file of benchmark model ``name``: :func:`model_path` itself, or for a ``.tflite`` model its graph
    as :func:`workbench.models.load_model` imports it (NHWC inputs), saved under ``folder``."""
    src = model_path(name)
    if src.suffix.lower() != ".tflite":
        return src
    from workbench.models import load_model

    return save_temp_model(load_model(src).proto, folder, f"{name}.imported.onnx")


def _demo_arrays(which: str) -> np.ndarray:
    with np.load(DEMO_DIR / f"{which}.npz") as z:
        return np.asarray(z["image"], np.float32)


def real_inputs(name: str, n: int, *, seed: int = SEED, size: int = OCR_DET_SIZE,
                part: str = "calib") -> dict[str, np.ndarray]:
    """``n`` real samples for ``name`` (dict input name → array stacked on axis 0).

    For the demo, ``part`` picks ``calib.npz`` or ``eval.npz`` (cycled if ``n`` exceeds the file); for the
    zoo models the samples come from the seeded generators in :mod:`workbench.datasets`.
    """
    from workbench import datasets

    if name == "demo":
        model_path("demo")
        x = _demo_arrays("calib" if part == "calib" else "eval")
        return {"image": np.resize(x, (n, *x.shape[1:])) if n > len(x) else x[:n].copy()}
    if name == "ocr_det":
        return datasets.ocr_det_inputs(n, size=size, seed=seed)
    if name == "ocr_rec":
        return datasets.ocr_rec_inputs(n, seed=seed)
    if name == "minilm":
        return datasets.minilm_inputs(n, seq_len=MINILM_SEQ, seed=seed)
    if name in TFLITE_MODELS:
        return datasets.tflite_image_inputs(model_path(name), n, seed=seed)
    raise ValueError(f"unknown benchmark model {name!r}; choose from {ALL_MODELS}")


def calib_eval(name: str, n_calib: int = 64, n_eval: int = 32, *, seed: int = SEED,
               size: int = OCR_DET_SIZE) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Disjoint calibration and held-out evaluation inputs (see the module docstring)."""
    if name == "demo":
        return (real_inputs(name, n_calib, part="calib"), real_inputs(name, n_eval, part="eval"))
    both = real_inputs(name, n_calib + n_eval, seed=seed, size=size)
    return ({k: v[:n_calib] for k, v in both.items()}, {k: v[n_calib:] for k, v in both.items()})


def nbytes(data: dict[str, np.ndarray]) -> int:
    return int(sum(v.nbytes for v in data.values()))


def cycled(data: dict[str, np.ndarray], n: int, *, noise: float = 0.0,
           seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` samples made by cycling ``data`` (float inputs get Gaussian noise × their std per repeat)."""
    return next(iter(cycled_batches(data, n, batch=n, noise=noise, seed=seed)()))


def cycled_batches(data: dict[str, np.ndarray], n: int, *, batch: int, noise: float = 0.02,
                   seed: int = 0) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """A callable returning a fresh iterator of ``batch``-sized batches, ``n`` samples in all, cycled
    from ``data`` and made lazily (so the data held does not grow with ``n``). Float inputs get
    ``noise × std`` Gaussian noise on every pass after the first; integer inputs (token ids) repeat."""
    total = len(next(iter(data.values())))

    def gen() -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng(seed)
        for start in range(0, n, batch):
            idx = np.arange(start, min(start + batch, n))
            out = {}
            for k, v in data.items():
                x = v[idx % total]
                if noise and v.dtype.kind == "f":
                    again = (idx >= total).reshape(-1, *[1] * (v.ndim - 1))
                    jitter = rng.normal(0.0, noise * float(v.std()), x.shape).astype(v.dtype)
                    x = np.where(again, x + jitter, x)
                out[k] = np.ascontiguousarray(x)
            yield out

    return gen


def has_dynamic_batch(path: str | os.PathLike) -> bool:
    """True when every graph input has a symbolic (or missing) first dimension."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return False
    return True


def save_temp_model(proto: Any, folder: str | os.PathLike, name: str) -> Path:
    """Save ``proto`` under ``folder`` (external data beyond 2 GB is not expected here)."""
    import onnx

    p = Path(folder) / name
    onnx.save(proto, str(p))
    return p


# -- timing -------------------------------------------------------------------------------------------------
def interleaved(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    """Wall seconds of each function, ``reps`` rounds, the functions alternating within each round (so
    machine noise hits all alike); the order rotates every round."""
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else math.nan


@contextlib.contextmanager
def timed_method(cls: type, method: str, acc: list[float]) -> Iterator[None]:
    """Patch ``cls.method`` so every call adds its wall time to ``acc[0]`` and 1 to ``acc[1]``
    (restored afterwards)."""
    orig = getattr(cls, method)

    def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig(self, *a, **kw)
        finally:
            acc[0] += time.perf_counter() - t
            acc[1] += 1

    setattr(cls, method, wrapper)
    try:
        yield
    finally:
        setattr(cls, method, orig)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (MB; Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# -- child processes ----------------------------------------------------------------------------------------
def run_child(args: list[str], *, timeout: float = 1800, mem_limit_gb: float | None = None,
              env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
              python: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run ``python <args>`` in a fresh process; return the JSON object it printed last on stdout, plus
    ``child_peak_rss_mb`` (the kernel's high-water mark for that child, from ``wait4``), ``wall_s``,
    ``returncode``, and ``error`` (stderr tail) when it failed. ``mem_limit_gb`` caps its address
    space (RLIMIT_AS) so a runaway child fails instead of taking the machine down. ``cwd`` defaults to
    the repository root (pass a temp folder for tools that drop files in the working directory).
    ``python``: another interpreter (e.g. the peers' environment, ``.venv-peers/bin/python``)."""
    import resource

    def limit() -> None:
        if mem_limit_gb is not None:
            cap = int(mem_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([str(python or sys.executable), *args], stdout=out, stderr=err, cwd=cwd or ROOT,
                                env=full_env, preexec_fn=limit)
        deadline = t0 + timeout
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    result: dict[str, Any] = {}
    for line in reversed(stdout.strip().splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                result = obj
                break
    result["returncode"] = proc.returncode
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    result["child_peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1) if usage is not None else None
    if proc.returncode != 0:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-6:]
        timed_out = time.perf_counter() - t0 > timeout
        result.setdefault("error", ("timed out; " if timed_out else "") + " | ".join(tail)[-1500:])
    return result


def error_tail(exc: BaseException, lines: int = 3) -> str:
    """The last lines of ``exc``'s traceback, one string (long numpy reprs trimmed)."""
    import traceback

    tb = traceback.format_exception(exc)
    text = "".join(tb).strip().splitlines()
    keep = [ln.strip() for ln in text if ln.strip().startswith(("File", "raise", "workbench", "ValueError",
                                                               "RuntimeError", "TypeError"))]
    parts = keep[-lines:] if keep else text[-lines:]
    return " | ".join(p[:300] for p in parts) + f" | {type(exc).__name__}: {str(exc)[:300]}"


# -- output ------------------------------------------------------------------------------------------------
def clean(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars → Python, non-finite floats → None, floats rounded to 6 digits."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return float(f"{v:.6g}") if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def emit(obj: dict[str, Any]) -> None:
    """Print the one JSON object of a benchmark script to stdout."""
    sys.stdout.write(json.dumps(clean(obj)) + "\n")
    sys.stdout.flush()


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float | np.floating):
        return "—" if not math.isfinite(v) else f"{v:.{digits}g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def table(rows: list[dict[str, Any]], cols: list[str], *, title: str = "") -> str:
    """A markdown table of ``rows`` (missing cells shown as —)."""
    head = [f"**{title}**", ""] if title else []
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(head + lines)


def log_table(rows: list[dict[str, Any]], cols: list[str], *, title: str = "") -> None:
    log(table(rows, cols, title=title))
