"""Speed of the numerics hot paths; prints JSON with median (and best) microseconds.

    python benchmarks/error_model_speed.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.numerics import Histogram, compute_qparams, expected_error


def _timings_us(fn, repeat: int) -> tuple[float, float]:
    """Median and minimum wall time in microseconds (the minimum shows the cost on a quiet machine)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e6), float(np.min(times) * 1e6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=1_000_000).astype(np.float32)
    hist = Histogram().update(x)
    relu = Histogram().update(np.maximum(x, 0))
    qp = compute_qparams(-3.0, 3.0, bits=8, signed=True, symmetric=True)
    qp_relu = compute_qparams(0.0, 3.0, bits=8, signed=False, symmetric=False)
    runs = {
        "expected_error": (lambda: expected_error(hist, qp), args.repeat),
        "expected_error_relu": (lambda: expected_error(relu, qp_relu), args.repeat),
        "histogram_update_1M_float32": (lambda: hist.update(x), max(args.repeat // 4, 10)),
    }
    result: dict[str, float | int] = {"bins": hist.bins, "repeat": args.repeat}
    for name, (fn, repeat) in runs.items():
        result[f"{name}_median_us"], result[f"{name}_min_us"] = _timings_us(fn, repeat)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
