"""Calibration time ÷ plain float inference time on the same samples (goal ≤ 1.3), per model.

    python benchmarks/calibration_speed.py [--models demo,ocr_rec] [--samples N] [--reps 3]

Float inference is the original model in a default onnxruntime session (all optimisations, as a user
runs it); calibration is ``Session.calibrate(data, batch_size=32)`` (it builds its own session, with
every activation exposed), exact and element-sampled (``values_per_sample=4096``: ``ratio_sampled``).
The three alternate within each repetition; medians are reported. The breakdown comes from the exact
calibration calls (``Runner.run``, ``Histogram.update`` and ``Runner.__init__`` are wrapped with
timers): time in onnxruntime with the intermediate outputs exposed, in histogram updates, in building
the session, and the rest (batching).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    MODELS,
    Unavailable,
    emit,
    error_tail,
    has_dynamic_batch,
    interleaved,
    log,
    log_table,
    median,
    model_path,
    real_inputs,
    timed_method,
)

GOAL = 1.3
# 256 samples is the target; the OCR models take 128 by default to keep run_all short (the ratio is per
# batch, so it barely depends on the count). Pass --samples 256 for the full run.
DEFAULT_SAMPLES = {"demo": 256, "minilm": 256, "ocr_rec": 128, "ocr_det": 128}
OCR_DET_SIZE = 256  # a modest detector input keeps this benchmark short


def measure(name: str, samples: int, reps: int, batch: int) -> dict[str, Any]:
    """Interleaved float / calibration timings for one model."""
    import onnxruntime as ort

    from workbench.calibration.sampling import DEFAULT_PER_SAMPLE
    from workbench.numerics import Histogram
    from workbench.runtime import Runner
    from workbench.session import Session

    path = model_path(name)
    data = real_inputs(name, samples, size=OCR_DET_SIZE)
    t = time.perf_counter()
    s = Session(path, target="ort-cpu", progress=False)
    init_s = time.perf_counter() - t
    batches = list(s.feeds(data, batch_size=batch))
    used_batch = len(next(iter(batches[0].values())))
    tensors = s.graph.activation_tensors()

    plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    plain.run(None, batches[0])  # warm-up (first-run allocations)

    parts: dict[str, list[list[float]]] = {"run": [], "hist": [], "build": []}

    def float_plain() -> None:
        for b in batches:
            plain.run(None, b)

    def calibrate() -> None:
        acc = {k: [0.0, 0] for k in parts}
        with timed_method(Runner, "run", acc["run"]), timed_method(Histogram, "update", acc["hist"]), \
                timed_method(Runner, "__init__", acc["build"]):
            s.calibrate(data, batch_size=batch)
        for k in parts:
            parts[k].append(acc[k])

    sampled_strides: dict[str, int] = {}

    def calibrate_sampled() -> None:
        sampled_strides.update(s.calibrate(data, batch_size=batch, values_per_sample=DEFAULT_PER_SAMPLE).strides)

    times = interleaved({"float": float_plain, "calibrate": calibrate,
                         "calibrate_sampled": calibrate_sampled}, reps)
    one = {k: v[:1] for k, v in batches[0].items()}  # exposed bytes per sample (outside the timings)
    per_sample = sum(v.nbytes for v in Runner(s.prepared, outputs=tensors).run(one).values())

    med = {k: median(v) for k, v in times.items()}
    run_s, hist_s, build_s = (median([a[0] for a in parts[k]]) for k in ("run", "hist", "build"))
    cal = med["calibrate"]
    exposed_gb = per_sample * samples / 2**30
    return {
        "samples": samples, "batch_size": used_batch, "dynamic_batch": has_dynamic_batch(path), "reps": reps,
        "input_shapes": {k: list(v.shape[1:]) for k, v in data.items()},
        "session_init_s": init_s,
        "float_s": med["float"], "calibrate_s": cal, "ratio": cal / med["float"],
        "goal": GOAL, "meets_goal": cal / med["float"] <= GOAL,
        "calibrate_sampled_s": med["calibrate_sampled"], "ratio_sampled": med["calibrate_sampled"] / med["float"],
        "values_per_sample": DEFAULT_PER_SAMPLE,
        "sampled_tensors": sum(1 for k in sampled_strides.values() if k > 1),
        "breakdown": {
            "ort_exposed_run_s": run_s, "histogram_update_s": hist_s, "session_build_s": build_s,
            "other_s": cal - run_s - hist_s - build_s,
            "ort_exposed_share": run_s / cal, "histogram_share": hist_s / cal,
            "ort_runs": parts["run"][0][1] if parts["run"] else None,
            "exposed_tensors": len(tensors), "exposed_mb_per_sample": per_sample / 2**20,
            "histogram_gb_per_s": exposed_gb / hist_s if hist_s else None,
        },
        "times_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--samples", type=int, default=None, help="samples per model (default: per model)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in args.models.split(","):
        n = args.samples or DEFAULT_SAMPLES[name]
        log(f"[calibration_speed] {name}: {n} samples x {args.reps} reps ...")
        try:
            results[name] = measure(name, n, args.reps, args.batch_size)
        except Unavailable as e:
            results[name] = {"skipped": str(e)}
        except Exception as e:
            results[name] = {"error": error_tail(e)}
        r = results[name]
        summary = (f"ratio {r['ratio']:.2f} (float {r['float_s']:.2f} s, calibrate {r['calibrate_s']:.2f} s), "
                   f"sampled {r['ratio_sampled']:.2f}"
                   if "ratio" in r else str(r))
        log(f"[calibration_speed] {name}: {summary}")
    rows = [{"model": k, **v, **v.get("breakdown", {})} for k, v in results.items()]
    log_table(rows, ["model", "samples", "float_s", "calibrate_s", "ratio", "ratio_sampled", "sampled_tensors",
                     "ort_exposed_share",
                     "histogram_share", "ort_runs", "exposed_mb_per_sample", "histogram_gb_per_s"],
              title="calibration time / float inference time")
    emit({"benchmark": "calibration_speed", "goal_ratio": GOAL, "ocr_det_size": OCR_DET_SIZE,
          "total_s": time.perf_counter() - t0, "models": results})


if __name__ == "__main__":
    main()
