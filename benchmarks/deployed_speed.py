"""Exact vs deployed output SQNR and deployed inference time of the ``ort-cpu`` profile and the
options it was chosen from, side by side with onnxruntime's own ``quantize_static`` output.

    python benchmarks/deployed_speed.py [--models demo,ocr_det] [--reps 40] [--threads 1]

Per model, one process, the same calibration and held-out data (benchmarks/common.py):

* ``ort_quantize_static`` — onnxruntime ``quantize_static`` on our prepared float graph: QDQ,
  per_channel=True, QUInt8 activations / QInt8 weights, MinMax, defaults otherwise: the speed bar;
* ``ours`` — ``Session(model, target="ort-cpu")`` defaults (Auto ranges, no rule search): in the
  layers at risk of u8s8 saturation, pair-fitted int8 weight scales or uint8 weights (zero-point 128);
* ``ours_uint8_weights_only`` — the same with ``Target.pair_fit_noise=0``: uint8 weights in every
  layer at risk (the profile before pair-fitted scales);
* ``ours_int8_weights`` — the same recipe with every weight int8 (the profile before either);
* ``ours_uint8_weights_all`` — every weight uint8 (u8u8 kernels everywhere);
* ``ours_weights_7bit`` — onnxruntime's ``reduce_range``: int8 weights on a 7-bit grid (±63);
* ``ours_int8_symmetric_activations`` — int8 symmetric activations (s8s8), int8 weights;
* ``ours_no_equalization`` — ``ours`` without depthwise equalization
  (``Recipe.depthwise_equalization=False``): what the equalized weights cost or buy deployed.

``exact_sqnr_db``: optimisations off (Q/DQ in float, the recipe's arithmetic); ``deployed_sqnr_db``:
all optimisations on (this CPU's fused integer kernels); ``time_ms``: median deployed run time of one
batch, all variants interleaved round by round so machine noise hits them alike; ``speed_ratio``:
time ÷ ``ort_quantize_static``'s. Prints one JSON object (stdout) and a markdown table (stderr).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    ALL_MODELS,
    MODELS,
    TFLITE_MODELS,
    Unavailable,
    calib_eval,
    emit,
    error_tail,
    log,
    log_table,
    median,
    model_path,
)

DEFAULT_CALIB = {"demo": 64, "minilm": 64, "ocr_rec": 16, "ocr_det": 16} | dict.fromkeys(TFLITE_MODELS, 32)
DEFAULT_EVAL = {"demo": 256, "minilm": 32, "ocr_rec": 32, "ocr_det": 16} | dict.fromkeys(TFLITE_MODELS, 16)


def _session(proto: Any, *, optimize: bool, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    level = ort.GraphOptimizationLevel
    so.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _outputs(proto: Any, data: dict[str, np.ndarray], *, optimize: bool, batch: int) -> list[np.ndarray]:
    s = _session(proto, optimize=optimize, threads=0)
    n = len(next(iter(data.values())))
    outs = [s.run(None, {k: v[i:i + batch] for k, v in data.items()}) for i in range(0, n, batch)]
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def _sqnr(ref: list[np.ndarray], test: list[np.ndarray]) -> float:
    from workbench.numerics import ErrorAccumulator

    return float(np.mean([ErrorAccumulator().update(r, t).result()["sqnr_db"] for r, t in zip(ref, test, strict=True)]))


def _copy(proto: Any) -> Any:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def _weight_dqs(proto: Any):
    """(node, int8 weight initializer) of every DequantizeLinear reading an int8/uint8 weight."""
    from onnx import TensorProto

    inits = {t.name: t for t in proto.graph.initializer}
    for n in proto.graph.node:
        t = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if t is not None and t.data_type in (TensorProto.INT8, TensorProto.UINT8) and len(t.dims) > 1:
            yield n, inits


def _set(inits: dict, name: str, arr: np.ndarray) -> None:
    from onnx import numpy_helper

    inits[name].CopyFrom(numpy_helper.from_array(arr, name))


def uint8_weights_everywhere(proto: Any) -> Any:
    """Every int8 weight stored as uint8 with zero-point 128 (same values)."""
    from onnx import TensorProto, numpy_helper

    out = _copy(proto)
    for n, inits in list(_weight_dqs(out)):
        if inits[n.input[0]].data_type == TensorProto.INT8:
            q = numpy_helper.to_array(inits[n.input[0]]).astype(np.int16)
            zp = numpy_helper.to_array(inits[n.input[2]]).astype(np.int16)
            _set(inits, n.input[0], (q + 128).astype(np.uint8))
            _set(inits, n.input[2], (zp + 128).astype(np.uint8))
    return out


def weights_7bit(proto: Any) -> Any:
    """onnxruntime's reduce_range: int8 weights re-quantized to ±63 (scale ×127/63), biases re-scaled."""
    from onnx import numpy_helper

    out = _copy(proto)
    for n, inits in list(_weight_dqs(out)):
        q = numpy_helper.to_array(inits[n.input[0]]).astype(np.float64)
        zp = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)
        s = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if s.ndim:
            shape[axis] = -1
        w = (q - zp.reshape(shape)) * s.reshape(shape)
        s2 = s * 127.0 / 63.0
        q2 = np.clip(np.rint(w / s2.reshape(shape)), -63, 63).astype(np.int8)
        _set(inits, n.input[0], q2)
        _set(inits, n.input[1], s2.astype(np.float32))
        _set(inits, n.input[2], np.zeros(zp.shape, np.int8))
    _rescale_biases(out)
    return out


def _rescale_biases(proto: Any) -> None:
    """int32 biases back at scale s_in·s_w after the weight scales changed."""
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    prod = {o: n for n in proto.graph.node for o in n.output}
    for n in proto.graph.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 3:
            continue
        b, x, w = (prod.get(n.input[i]) for i in (2, 0, 1))
        if not (b and x and w) or {b.op_type, x.op_type, w.op_type} != {"DequantizeLinear"}:
            continue
        bias = (numpy_helper.to_array(inits[b.input[0]]).astype(np.float64)
                * numpy_helper.to_array(inits[b.input[1]]).astype(np.float64))
        scale = (numpy_helper.to_array(inits[x.input[1]]).astype(np.float32)
                 * numpy_helper.to_array(inits[w.input[1]]).astype(np.float32))
        scale = np.broadcast_to(scale, bias.shape).astype(np.float32)
        _set(inits, b.input[0], np.rint(bias / scale).astype(np.int32))
        _set(inits, b.input[1], scale)


def ort_quantize_static(prepared: Any, calib: dict[str, np.ndarray], folder: Path) -> Any:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    n = len(next(iter(calib.values())))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{k: v[i:i + 8] for k, v in calib.items()} for i in range(0, n, 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    src, dst = folder / "prepared.onnx", folder / "ort.onnx"
    onnx.save(prepared, str(src))
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return onnx.load(str(dst))


def measure(name: str, n_calib: int, n_eval: int, reps: int, threads: int, time_batch: int) -> dict[str, Any]:
    from workbench.recipe import Symmetry
    from workbench.session import Session

    calib, held = calib_eval(name, n_calib, n_eval)
    s = Session(str(model_path(name)), target="ort-cpu", progress=False)
    s.calibrate(calib, batch_size=16)
    ours = s.quantize()
    notes = list(s.plan.notes)
    u8_layers = sum(1 for t in s.plan.tensors.values() if t.kind == "weight" and not t.qparams.signed)
    weighted = sum(1 for t in s.plan.tensors.values() if t.kind == "weight")
    target = s.target
    s.target = replace(target, pair_fit_noise=0.0)
    uint8_only = s.quantize()
    s.target = replace(target, avoid_u8s8_saturation=False)
    int8_weights = s.quantize()
    base = s.recipe
    s.recipe = replace(base, activations=replace(base.activations, symmetry=Symmetry.SYMMETRIC, signed=True))
    s8s8 = s.quantize()
    s.recipe, s.target = replace(base, depthwise_equalization=False), target
    no_equalization = s.quantize()
    s.recipe = base
    with tempfile.TemporaryDirectory(prefix="wb-deployed-") as d:
        ort_model = ort_quantize_static(s.prepared, calib, Path(d))
    variants = {"ort_quantize_static": ort_model, "ours": ours, "ours_uint8_weights_only": uint8_only,
                "ours_int8_weights": int8_weights,
                "ours_uint8_weights_all": uint8_weights_everywhere(int8_weights),
                "ours_weights_7bit": weights_7bit(int8_weights), "ours_int8_symmetric_activations": s8s8,
                "ours_no_equalization": no_equalization, "float": s.prepared}
    batch = 16
    ref = _outputs(s.prepared, held, optimize=False, batch=batch)
    rows: dict[str, dict[str, Any]] = {}
    for key, proto in variants.items():
        if key == "float":
            rows[key] = {}
            continue
        try:
            rows[key] = {"exact_sqnr_db": _sqnr(ref, _outputs(proto, held, optimize=False, batch=batch)),
                         "deployed_sqnr_db": _sqnr(ref, _outputs(proto, held, optimize=True, batch=batch))}
            rows[key]["gap_db"] = rows[key]["exact_sqnr_db"] - rows[key]["deployed_sqnr_db"]
        except Exception as e:
            rows[key] = {"error": error_tail(e)}
    feed = {k: v[:time_batch] for k, v in held.items()}
    sessions = {k: _session(p, optimize=True, threads=threads) for k, p in variants.items()}
    for sess in sessions.values():
        sess.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    keys = list(sessions)
    for r in range(reps):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            t = time.perf_counter()
            sessions[k].run(None, feed)
            times[k].append(time.perf_counter() - t)
    bar = median(times["ort_quantize_static"])
    for k, ts in times.items():
        rows[k]["time_ms"] = median(ts) * 1e3
        rows[k]["speed_ratio"] = median(ts) / bar
    return {"calib_samples": n_calib, "eval_samples": n_eval, "time_batch": time_batch, "reps": reps,
            "threads": threads, "uint8_weight_layers": u8_layers, "weighted_layers": weighted,
            "notes": notes, "variants": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {','.join(ALL_MODELS)}")
    ap.add_argument("--reps", type=int, default=40, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads for the timing")
    ap.add_argument("--batch", type=int, default=1, help="samples per timed run")
    args = ap.parse_args()
    from workbench.runtime.cpu import cpu_features

    t0 = time.perf_counter()
    cpu = cpu_features()
    results: dict[str, Any] = {}
    for name in args.models.split(","):
        log(f"[deployed_speed] {name}")
        try:
            results[name] = measure(name, DEFAULT_CALIB[name], DEFAULT_EVAL[name], args.reps, args.threads,
                                    args.batch)
        except Unavailable as e:
            results[name] = {"skipped": str(e)}
        except Exception as e:
            results[name] = {"error": error_tail(e)}
    rows = [{"model": m, "variant": k, **v} for m, r in results.items() for k, v in r.get("variants", {}).items()]
    log_table(rows, ["model", "variant", "exact_sqnr_db", "deployed_sqnr_db", "gap_db", "time_ms", "speed_ratio"],
              title=f"exact vs deployed output SQNR (dB) and deployed time, {cpu.describe()}")
    emit({"benchmark": "deployed_speed", "cpu": cpu.to_dict(), "total_s": time.perf_counter() - t0,
          "models": results})


if __name__ == "__main__":
    main()
