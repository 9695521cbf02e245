"""Workbench latencies in the kernel (no browser): what a user waits for.

* ``readout_ms`` — one clip-threshold change → predicted clip/rounding error, SQNR, % clipped
  from the stored histogram (``Session.readout``); target < 20 ms.
* ``drag_ms`` — everything the workbench does in the kernel for one dragged threshold: recipe
  update (``set_range``, autosave), readout, redraw of lines/shading/grid, controls; target < 20 ms.
* ``apply_s`` — Apply: rebuild the QDQ model for a changed recipe and re-simulate float vs
  reference vs deployed on 32 evaluation samples, refreshing per-layer errors; target < 2 s on
  a MobileNet-size model.

Prints one JSON object; medians over repetitions.

    python benchmarks/ui_latency.py [--models demo,ocr_det] [--reps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from common import calib_eval, median, model_path

MEDIAPIPE = ("pose_detection", "selfie_segmentation", "palm_detection_lite", "hand_landmark_full",
             "face_detection_short_range")  # MobileNet-size TFLite models (imported)
os.environ.setdefault("WORKBENCH_AUTOSAVE_DIR", tempfile.mkdtemp(prefix="bench-autosave-"))


def measure(name: str, reps: int) -> dict:
    from workbench.session import Session
    from workbench.ui import Workbench

    if name in MEDIAPIPE:
        from workbench import zoo
        from workbench.datasets import tflite_image_inputs

        path = zoo.path(name)
        both = tflite_image_inputs(path, 96, seed=7)
        calib = {k: v[:64] for k, v in both.items()}
        evaluation = {k: v[64:] for k, v in both.items()}
    else:
        calib, evaluation = calib_eval(name, 64, 32)
        path = model_path(name)
    s = Session(path, progress=False)
    s.calibrate(calib, batch_size=8)
    lay = max(s.graph.layers.values(), key=lambda lay: s.calibration.histograms[lay.output].count
              if lay.output in s.calibration.histograms else 0)
    t = lay.output
    r0 = s.readout(t)
    his = np.linspace(r0["hi"], 0.3 * r0["hi"] + 0.7 * r0["lo"], reps)
    readout = []
    for hi in his:
        start = time.perf_counter()
        s.readout(t, r0["lo"], float(hi))
        readout.append(time.perf_counter() - start)
    bench = Workbench(s)
    bench.focus(lay.name)
    view = bench.histogram
    view.focus(t)
    drag = []
    for hi in his:
        start = time.perf_counter()
        view.hi_line.location = float(hi)  # what a drag in the browser does
        drag.append(time.perf_counter() - start)
    assert s.recipe.tensors[t].range.hi == his[-1]
    s.set_range(t)
    apply = []
    for i in range(3):
        s.set(lay.name, precision="int16" if i % 2 == 0 else "int8")
        start = time.perf_counter()
        s.compare(evaluation, batch_size=32)
        apply.append(time.perf_counter() - start)
    return {"tensor": t, "tensor_elements_calibrated": s.calibration.histograms[t].count,
            "layers": len(s.graph.layers), "readout_ms": 1e3 * median(readout), "drag_ms": 1e3 * median(drag),
            "apply_s": median(apply), "eval_samples": 32}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="demo,pose_detection,selfie_segmentation,ocr_det", help="comma-separated")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    out = {name: measure(name, args.reps) for name in args.models.split(",")}
    for name, r in out.items():
        print(f"{name:8s} readout {r['readout_ms']:.2f} ms  drag {r['drag_ms']:.2f} ms  apply {r['apply_s']:.2f} s",
              file=sys.stderr)
    print(json.dumps({"models": out}))


if __name__ == "__main__":
    main()
