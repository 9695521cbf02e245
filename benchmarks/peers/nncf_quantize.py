"""Quantize an ONNX model with NNCF's defaults; runs in the peers' environment (.venv-peers), not ours.

    .venv-peers/bin/python benchmarks/peers/nncf_quantize.py SRC.onnx CALIB.npz OUT.onnx [BATCH]

``nncf.quantize(model, nncf.Dataset(feeds), subset_size=N)`` with everything else at its defaults
(preset PERFORMANCE: symmetric per-channel int8 weights, per-tensor activations from the mean of
per-sample min/max, fast bias correction, model outputs left float), one sample per dataset item
(NNCF's statistics are per item) and N = all calibration samples.
Prints one JSON line: time_s, nncf/onnx/onnxruntime versions. Imports nothing from workbench.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    src, calib, out = sys.argv[1:4]
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1  # samples per dataset item
    import nncf
    import numpy as np
    import onnx
    import onnxruntime

    with np.load(calib) as z:
        data = {k: z[k] for k in z.files}
    n = len(next(iter(data.values())))
    feeds = [{k: v[i:i + batch] for k, v in data.items()} for i in range(0, n, batch)]
    model = onnx.load(src)
    t = time.perf_counter()
    q = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds))
    elapsed = time.perf_counter() - t
    onnx.save(q, out)
    print(json.dumps({"time_s": elapsed, "subset_size": len(feeds), "batch": batch, "nncf": nncf.__version__,
                      "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}))


if __name__ == "__main__":
    main()
