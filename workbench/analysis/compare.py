"""Float vs quantized, tensor by tensor, in one pass over the evaluation data.

Three onnxruntime sessions run in lockstep on each batch:
- the float model, exposing every layer output;
- the QDQ model with graph optimisations off, exposing the same tensors (the *reference*
  simulation: Q/DQ evaluated exactly as written);
- the QDQ model with all optimisations on (the *deployed* kernels this CPU would use, e.g.
  QLinearConv), exposing only model outputs.

Per tensor the errors accumulate in constant memory (SQNR, MSE, cosine, max-abs). The two
output SQNRs (exact and deployed) differ where this CPU's integer kernels do other arithmetic
than the graph says (x86 without VNNI: saturating uint8×int8 sums); :attr:`Comparison.deployed_warning`
says so in words, with the CPU features found (:func:`workbench.runtime.cpu.cpu_features`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pandas as pd
from tqdm.auto import tqdm

from workbench.numerics import ErrorAccumulator, margin_interval, sample_err2
from workbench.runtime import Runner, Slicer
from workbench.runtime.cache import CachedRunner
from workbench.runtime.cpu import cpu_features

#: Exact and deployed output SQNR may differ by this much (dB) before the comparison warns.
DEPLOYED_GAP_DB = 0.5

Metric = Callable[[dict[str, np.ndarray]], float]
"""User metric: model outputs over the whole evaluation set (concatenated) -> a number."""


@dataclass(frozen=True)
class LayerRow:
    layer: str
    op_type: str
    precision: str
    tensor: str  # float name of the layer's output


@dataclass(frozen=True)
class Comparison:
    """Errors of the quantized model against the float model on one data set."""

    outputs: pd.DataFrame  # one row per model output
    layers: pd.DataFrame  # one row per layer
    num_samples: int
    metric: dict[str, float] = field(default_factory=dict)  # {"float", "quantized", "deployed"}
    cpu: dict[str, Any] = field(default_factory=dict)  # CpuFeatures.to_dict() of the deployed run
    #: per model output (batch-first ones): per-sample Σ float² and Σ(float − exact QDQ)²
    sample_signal: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    sample_err2: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def change_from(self, before: Comparison, *, level: float = 0.9) -> pd.DataFrame:
        """Exact output SQNR now vs ``before`` on the same samples, with the paired-bootstrap
        interval of the change (:func:`~workbench.numerics.margin_interval`): one row per output
        that both measured sample by sample on identical float outputs (the same data); empty
        when there is none. An interval that holds 0 means the change is within what the luck
        of which samples were drawn could give."""
        rows = []
        for t, err in self.sample_err2.items():
            old = before.sample_err2.get(t)
            if old is None or not np.array_equal(self.sample_signal[t], before.sample_signal.get(t)):
                continue
            lo, hi = margin_interval(err, old, level=level)
            rows.append({"output": t, "sqnr_db_before": float(before.outputs.loc[t, "sqnr_db"]),
                         "sqnr_db": float(self.outputs.loc[t, "sqnr_db"]),
                         "change_db": float(self.outputs.loc[t, "sqnr_db"] - before.outputs.loc[t, "sqnr_db"]),
                         "interval_lo_db": lo, "interval_hi_db": hi, "samples": len(err)})
        return pd.DataFrame(rows, columns=["output", "sqnr_db_before", "sqnr_db", "change_db", "interval_lo_db",
                                           "interval_hi_db", "samples"]).set_index("output")

    @property
    def deployed_gap_db(self) -> float | None:
        """Largest |exact − deployed| output SQNR (dB) over the model outputs; None without a
        deployed run (or where both are infinite)."""
        if "deployed_sqnr_db" not in self.outputs:
            return None
        exact = self.outputs["sqnr_db"].to_numpy(dtype=float)
        dep = self.outputs["deployed_sqnr_db"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            gap = np.abs(exact - dep)
        gap = np.where(np.isinf(exact) & np.isinf(dep), 0.0, gap)
        gap = gap[~np.isnan(gap)]
        return float(gap.max()) if gap.size else None

    @property
    def deployed_warning(self) -> str | None:
        """A plain-words warning when this machine's onnxruntime kernels give output SQNR more
        than 0.5 dB away from the exact QDQ arithmetic; None when they agree (or were not run).
        The one text that the report, the command line and the notebook show."""
        gap = self.deployed_gap_db
        if gap is None or gap <= DEPLOYED_GAP_DB:
            return None
        row = (self.outputs["sqnr_db"] - self.outputs["deployed_sqnr_db"]).abs().idxmax()
        exact = float(self.outputs.loc[row, "sqnr_db"])
        dep = float(self.outputs.loc[row, "deployed_sqnr_db"])
        cpu = self.cpu.get("describe") or "this CPU"
        why = (" Without VNNI, onnxruntime's uint8×int8 kernels add pairs of products in a saturating "
               "16-bit register; the 'ort-cpu' target gives the layers at risk weight scales at which no "
               "pair can saturate, or uint8 weights.") if self.cpu.get("u8s8_saturates") else ""
        return (f"The exported file runs differently here than it was measured: output {row!r} has "
                f"{exact:.2f} dB SQNR in exact arithmetic but {dep:.2f} dB with onnxruntime's default "
                f"kernels on {cpu} (a {gap:.2f} dB gap).{why} Check the deployed number on the machine "
                "that will run the model.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "outputs": _records(self.outputs.reset_index()),
            "layers": _records(self.layers),
            "metric": {k: _finite(v) for k, v in self.metric.items()},
            "cpu": dict(self.cpu),
            "deployed_gap_db": _finite(self.deployed_gap_db),
            "deployed_warning": self.deployed_warning,
        }


def _finite(v: Any) -> Any:
    """JSON has no infinities: +inf SQNR (identical tensors) is written as null."""
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _finite(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def compared_tensors(float_model: onnx.ModelProto, layers: Sequence[LayerRow]) -> list[str]:
    """The float tensors a comparison measures: model outputs, then each layer's output."""
    return list(dict.fromkeys([*(o.name for o in float_model.graph.output), *(row.tensor for row in layers)]))


def compare(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto, effective: dict[str, str],
            layers: Sequence[LayerRow], feeds: Iterable[dict[str, np.ndarray]], *,
            metric: Metric | None = None, deployed: bool = True, num_batches: int | None = None,
            progress: bool = True, splittable: bool = True, float_run: Runner | CachedRunner | None = None
            ) -> Comparison:
    """Run float, reference-QDQ and deployed-QDQ side by side over ``feeds``. ``float_run``: a
    runner of ``float_model`` exposing :func:`compared_tensors` (e.g. a CachedRunner kept across
    comparisons); built here when not given."""
    outputs = [o.name for o in float_model.graph.output]
    tensors = compared_tensors(float_model, layers)
    if float_run is None or float_run.output_names != tensors:
        float_run = Runner(float_model, outputs=tensors)
    ref_run = Runner(qdq_model, outputs=[effective.get(t, t) for t in tensors])
    dep_run = Runner(qdq_model, optimize=True) if deployed else None
    ref_err = {t: ErrorAccumulator() for t in tensors}
    dep_err = {t: ErrorAccumulator() for t in outputs}
    dep_vs_ref = {t: ErrorAccumulator() for t in outputs}
    kept: dict[str, list[dict[str, np.ndarray]]] = {"float": [], "quantized": [], "deployed": []}
    per_sample: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {t: [] for t in outputs}
    slicer = Slicer([float_run, ref_run, *([dep_run] if dep_run else [])], splittable=splittable)
    samples = 0
    with tqdm(total=num_batches, desc="comparing", disable=not progress, unit="batch") as bar:
        for feed in feeds:
            for part, (f, r, *d) in slicer.run(feed):
                n = len(next(iter(part.values())))
                samples += n
                for t in tensors:
                    ref_err[t].update(f[t], r[effective.get(t, t)])
                for t in list(per_sample):  # outputs not batch-first get no per-sample errors
                    if np.shape(f[t])[:1] == (n,):
                        per_sample[t].append((sample_err2(f[t], 0.0), sample_err2(f[t], r[effective.get(t, t)])))
                    else:
                        del per_sample[t]
                for t in outputs if d else ():
                    dep_err[t].update(f[t], d[0][t])
                    dep_vs_ref[t].update(r[effective.get(t, t)], d[0][t])
                if metric is not None:
                    kept["float"].append({t: f[t] for t in outputs})
                    kept["quantized"].append({t: r[effective.get(t, t)] for t in outputs})
                    if d:
                        kept["deployed"].append({t: d[0][t] for t in outputs})
            bar.update(1)

    out_rows = []
    for t in outputs:
        row = {"output": t, **ref_err[t].result()}
        if dep_run is not None:
            row["deployed_sqnr_db"] = dep_err[t].result()["sqnr_db"]
            row["deployed_cosine"] = dep_err[t].result()["cosine"]
            row["deployed_vs_reference_sqnr_db"] = dep_vs_ref[t].result()["sqnr_db"]
        out_rows.append(row)
    layer_rows = [{"layer": row.layer, "op_type": row.op_type, "precision": row.precision,
                   "tensor": row.tensor, **ref_err[row.tensor].result()} for row in layers]
    metrics = {}
    if metric is not None:
        for name, batches in kept.items():
            if batches:
                metrics[name] = float(metric({t: np.concatenate([b[t] for b in batches]) for t in outputs}))
    cpu: dict[str, Any] = {}
    if dep_run is not None:
        features = cpu_features()
        cpu = {**features.to_dict(), "describe": features.describe()}
    signal = {t: np.concatenate([p[0] for p in parts]) for t, parts in per_sample.items() if parts}
    err2 = {t: np.concatenate([p[1] for p in parts]) for t, parts in per_sample.items() if parts}
    return Comparison(pd.DataFrame(out_rows).set_index("output"), pd.DataFrame(layer_rows), samples, metrics, cpu,
                      signal, err2)
