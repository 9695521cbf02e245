"""Output SQNR of our default W8A8 recipe vs onnxruntime's ``quantize_static`` (MinMax, Percentile,
Entropy) and NNCF's defaults, on the same calibration and held-out data, measured by the same code.

    python benchmarks/vs_onnxruntime.py [--models demo,ocr_rec] [--calib N] [--eval N] [--original]

Models: ``benchmarks.common.ALL_MODELS`` (demo, OCR detector and recogniser, MiniLM and the five MediaPipe TFLite
models). For a ``.tflite`` model ours starts from the ``.tflite`` file as ``workbench quantize`` does (its
``time_s``/``init_s`` include the import); the peers start from the same prepared float graph as ever, and
the "original" reference (``--original``, ``prepared_vs_original_float``) is the imported ONNX graph.

Per model, on the same calibration and held-out data: ours is what ``workbench quantize`` makes
(``Session(model, target="ort-cpu")`` → ``calibrate`` → ``search_ranges`` → ``quantize``); onnxruntime is
``quantize_static`` in QDQ format, per_channel=True, QUInt8 activations / QInt8 weights, calibrate_method
MinMax, Percentile or Entropy, its defaults otherwise, after ``quant_pre_process`` (what onnxruntime's
quantization docs recommend; where its symbolic shape inference fails, with ``skip_symbolic_shape=True``;
the JSON says which per model). NNCF is ``nncf.quantize(model, nncf.Dataset(feeds), subset_size=N)`` with
its defaults, run by ``benchmarks/peers/nncf_quantize.py`` in the peers' own environment (``.venv-peers``,
``make bench-peers``; skipped with a note when that environment is missing). For fairness every peer
quantizes the SAME float graph we do (``s.prepared``: BN folded, opset 21); ``--original`` also runs
onnxruntime on the original file. Each quantizer runs in a fresh process (so its time and peak RSS are its
own; onnxruntime's and NNCF's are capped at 12 GB of address space).

SQNR/cosine are on the held-out data against the float graph the quantizer started from, in exact Q/DQ
arithmetic (onnxruntime optimisations off); ``deployed_*`` are the same with all optimisations on (the
integer kernels this CPU runs: without VNNI they may saturate, so they may differ from the exact numbers).
``float_weighted_share`` is the share of weighted layers (Conv/ConvTranspose/Gemm/MatMul with a constant
weight) whose weight is not quantized: a peer that leaves layers in float is not W8A8. For a model with
several outputs the headline SQNR/cosine are those of its FIRST graph output (not an average); every output's
exact figures are under ``per_output``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    ALL_MODELS,
    TFLITE_MODELS,
    Unavailable,
    calib_eval,
    emit,
    error_tail,
    has_dynamic_batch,
    log,
    model_path,
    onnx_path,
    run_child,
)
from workbench.numerics import margin_interval, sample_err2

# 64 calibration samples is the target; onnxruntime's calibrators keep every intermediate output of every
# batch in memory (~200 MB per OCR sample here), so the OCR models use 32 by default (and it halves the
# run time). 512 held-out samples (32 for the detector, at 320×320 the slowest to run), the same seeded stream
# as ever, so the first 128 are the set used before. Pooled SQNR on these models is dominated by a few hard
# images: the selfie segmenter's margin over NNCF was −0.4 dB on those 128, +1.9/+4.6/+5.0 dB on three fresh
# draws of 128 and +0.6 on the 512. ``ours_minus_best_peer_*_ci90`` (a paired bootstrap over the held-out
# samples) says how much of a margin that luck could be.
DEFAULT_CALIB = {"demo": 64, "minilm": 64, "ocr_rec": 32, "ocr_det": 32, **dict.fromkeys(TFLITE_MODELS, 64)}
DEFAULT_EVAL = {"ocr_det": 32}
EVAL_SAMPLES = 512
ORT_CAP_GB = 12.0
METHODS = ("MinMax", "Percentile", "Entropy")
PEERS_PYTHON = Path(__file__).resolve().parents[1] / ".venv-peers" / "bin" / "python"
NNCF_SCRIPT = Path(__file__).resolve().parent / "peers" / "nncf_quantize.py"
PEERS = ("ort_minmax", "ort_percentile", "ort_entropy", "nncf")
_OOM = ("MemoryError", "bad_alloc", "Unable to allocate", "Failed to allocate", "std::bad_alloc")


# -- children -----------------------------------------------------------------------------------------------
def child_ours(name: str, tmp: Path) -> dict[str, Any]:
    """Our default recipe as ``workbench quantize`` makes it (target defaults + ``search_ranges`` on the
    calibration data): writes ``prepared.onnx`` (the float graph) and ``ours.onnx`` (QDQ)."""
    import onnx

    from workbench.session import Session

    t0 = time.perf_counter()
    s = Session(model_path(name), target="ort-cpu", progress=False)
    t1 = time.perf_counter()
    onnx.save(s.prepared, str(tmp / "prepared.onnx"))
    t2 = time.perf_counter()
    s.calibrate(str(tmp / "calib.npz"), batch_size=32)
    s.search_ranges()
    t3 = time.perf_counter()
    q = s.quantize()
    t4 = time.perf_counter()
    onnx.save(q, str(tmp / "ours.onnx"))
    return {"init_s": t1 - t0, "calibrate_s": t3 - t2, "quantize_s": t4 - t3, "time_s": (t1 - t0) + (t4 - t2)}


def child_pre(src: Path, out: Path) -> dict[str, Any]:
    """``quant_pre_process`` with its defaults; if its symbolic shape inference gives up (it does on
    the OCR models' dynamic shapes), again with ``skip_symbolic_shape=True`` (ONNX shape inference only,
    which onnxruntime's docs suggest for non-transformer models)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    t = time.perf_counter()
    try:
        quant_pre_process(str(src), str(out))
        how = "quant_pre_process (defaults)"
    except Exception as e:
        quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
        how = f"quant_pre_process(skip_symbolic_shape=True); the default failed: {str(e)[:120]}"
    return {"time_s": time.perf_counter() - t, "how": how}


def child_ort(src: Path, out: Path, method: str, calib: Path, batch: int) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    with np.load(calib) as z:
        data = {k: z[k] for k in z.files}
    n = len(next(iter(data.values())))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{k: v[i:i + batch] for k, v in data.items()} for i in range(0, n, batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    t = time.perf_counter()
    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method))
    return {"time_s": time.perf_counter() - t}


# -- evaluation ---------------------------------------------------------------------------------------------
def run_all_batches(model: Any, data: dict[str, np.ndarray], *, optimize: bool, batch: int
                    ) -> dict[str, np.ndarray]:
    """Graph outputs of ``model`` over ``data`` (concatenated)."""
    import onnx

    from workbench.runtime import Runner

    proto = onnx.load(str(model)) if isinstance(model, str | Path) else model
    r = Runner(proto, optimize=optimize)
    n = len(next(iter(data.values())))
    outs = [r.run({k: v[i:i + batch] for k, v in data.items()}) for i in range(0, n, batch)]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def errors(ref: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, Any]:
    """SQNR/cosine of the first output (headline) and per output."""
    from workbench.numerics import ErrorAccumulator

    per = {}
    for k, v in ref.items():
        r = ErrorAccumulator().update(v, test[k]).result()
        per[k] = {"sqnr_db": r["sqnr_db"], "cosine": r["cosine"]}
    first = next(iter(per.values()))
    return {**first, "per_output": per} if len(per) > 1 else dict(first)


def evaluate(qpath: Path, ref: dict[str, np.ndarray], data: dict[str, np.ndarray], batch: int
             ) -> dict[str, Any]:
    """Exact and deployed errors; under ``_err2`` the first output's per-sample squared errors (for
    :func:`summarize`'s intervals, not written to the JSON)."""
    first = next(iter(ref))
    test = run_all_batches(qpath, data, optimize=False, batch=batch)
    exact = errors(ref, test)
    out: dict[str, Any] = {"sqnr_db": exact["sqnr_db"], "cosine": exact["cosine"],
                           "_err2": {"sqnr_db": sample_err2(ref[first], test[first])}}
    try:
        test = run_all_batches(qpath, data, optimize=True, batch=batch)
        dep = errors(ref, test)
        out.update(deployed_sqnr_db=dep["sqnr_db"], deployed_cosine=dep["cosine"])
        out["_err2"]["deployed_sqnr_db"] = sample_err2(ref[first], test[first])
    except Exception as e:
        out["deployed_error"] = error_tail(e)
    if "per_output" in exact:
        out["per_output"] = exact["per_output"]
    return out


def float_weighted_share(qpath: Path) -> dict[str, Any]:
    """Weighted layers (Conv/ConvTranspose/Gemm/MatMul whose weight is a constant) and the share of them
    whose weight is left float (not read through a DequantizeLinear of an integer initializer)."""
    import onnx

    m = onnx.load(str(qpath))
    inits = {t.name: t for t in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}

    def constant(t: str) -> bool:
        node = producers.get(t)
        return t in inits or (node is not None and node.op_type in ("DequantizeLinear", "Cast", "Constant")
                              and (not node.input or constant(node.input[0])))

    def integer(t: str) -> bool:
        node = producers.get(t)
        return (node is not None and node.op_type == "DequantizeLinear" and node.input[0] in inits
                and inits[node.input[0]].data_type != onnx.TensorProto.FLOAT)

    weighted = [n for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
                and len(n.input) > 1 and constant(n.input[1])]
    left = [n.name for n in weighted if not integer(n.input[1])]
    return {"weighted_layers": len(weighted), "float_weighted_layers": len(left),
            "float_weighted_share": len(left) / len(weighted) if weighted else 0.0}


def _evaluate_or_error(qpath: Path, ref: dict[str, np.ndarray], data: dict[str, np.ndarray], batch: int
                       ) -> dict[str, Any]:
    try:
        return {**evaluate(qpath, ref, data, batch), **float_weighted_share(qpath)}
    except Exception as e:  # e.g. a quantized model onnxruntime itself cannot load
        log(f"  evaluating {qpath.name} failed: {e}")
        return {"error": f"evaluating the quantized model failed: {error_tail(e, 1)}"}


def _ort(src: Path, out: Path, method: str, tmp: Path, batch: int, ref: dict[str, np.ndarray],
         held: dict[str, np.ndarray]) -> dict[str, Any]:
    """onnxruntime ``quantize_static`` in a capped child, then the evaluation of its model."""
    r = _child(["--ort", str(src), str(out), method, str(tmp / "calib.npz"), str(batch)],
               mem_limit_gb=ORT_CAP_GB, timeout=1200, cwd=tmp)
    q: dict[str, Any] = {"time_s": r.get("time_s"), "peak_rss_mb": r.get("child_peak_rss_mb")}
    if "error" in r:
        q["error"] = r["error"]
        if r.get("returncode") == -9 or any(m in r["error"] for m in _OOM):
            q["exceeded"] = f"{ORT_CAP_GB:g} GB cap"
        return q
    return {**q, **_evaluate_or_error(out, ref, held, batch)}


def _nncf(src: Path, out: Path, tmp: Path, ref: dict[str, np.ndarray], held: dict[str, np.ndarray],
          batch: int) -> dict[str, Any]:
    """NNCF's defaults in the peers' environment (a capped child), then the evaluation of its model."""
    if not PEERS_PYTHON.is_file():
        return {"skipped": f"{PEERS_PYTHON} missing: run `make bench-peers` (NNCF lives in its own environment)"}
    r = run_child([str(NNCF_SCRIPT), str(src), str(tmp / "calib.npz"), str(out), "1"], python=PEERS_PYTHON,
                  mem_limit_gb=ORT_CAP_GB, timeout=1800, cwd=tmp)
    log(f"  nncf {src.name} -> {r.get('wall_s')} s, peak {r.get('child_peak_rss_mb')} MB"
        + (f"  ERROR {r['error'][-400:]}" if "error" in r else ""))
    q: dict[str, Any] = {"time_s": r.get("time_s"), "peak_rss_mb": r.get("child_peak_rss_mb"),
                         "version": r.get("nncf")}
    if "error" in r or not out.is_file():
        q["error"] = r.get("error", "NNCF wrote no model")
        return q
    return {**q, **_evaluate_or_error(out, ref, held, batch)}


# -- per model ----------------------------------------------------------------------------------------------
def _child(args: list[str], **kw: Any) -> dict[str, Any]:
    r = run_child([str(Path(__file__).resolve()), *args], cwd=kw.pop("cwd", tempfile.gettempdir()), **kw)
    log(f"  {args[0]} {' '.join(Path(a).name for a in args[1:3])} -> {r.get('wall_s')} s, "
        f"peak {r.get('child_peak_rss_mb')} MB" + (f"  ERROR {r['error'][-400:]}" if "error" in r else ""))
    return r


def measure(name: str, n_calib: int, n_eval: int, *, original: bool = False, nncf: bool = True) -> dict[str, Any]:
    calib, held = calib_eval(name, n_calib, n_eval)
    with tempfile.TemporaryDirectory(prefix="wb-vs-ort-") as d:
        tmp = Path(d)
        source = onnx_path(name, tmp)  # a .tflite model: its imported ONNX graph
        batch = 32 if has_dynamic_batch(source) else 1
        res: dict[str, Any] = {"calib_samples": n_calib, "eval_samples": n_eval, "batch_size": batch}
        np.savez(tmp / "calib.npz", **calib)

        ours = _child(["--ours", name, str(tmp)], cwd=tmp)
        prepared = tmp / "prepared.onnx"
        if not prepared.is_file():
            return {**res, "error": f"Session could not prepare the model: {ours.get('error')}"}
        ref = {"prepared": run_all_batches(prepared, held, optimize=False, batch=batch),
               "original": run_all_batches(source, held, optimize=False, batch=batch)}
        res["prepared_vs_original_float"] = errors(ref["original"], ref["prepared"])
        quantizers: dict[str, dict[str, Any]] = {}
        q = {"time_s": ours.get("time_s"), "calibrate_s": ours.get("calibrate_s"),
             "quantize_s": ours.get("quantize_s"), "peak_rss_mb": ours.get("child_peak_rss_mb")}
        if "error" in ours:
            q["error"] = ours["error"]
        else:
            q.update(_evaluate_or_error(tmp / "ours.onnx", ref["prepared"], held, batch))
        quantizers["ours"] = q

        res["preprocess"] = {}
        sources = (("prepared", prepared), ("original", source)) if original else (("prepared", prepared),)
        for src_name, src in sources:
            pre = tmp / f"pre_{src_name}.onnx"
            p = _child(["--pre", str(src), str(pre)], cwd=tmp)
            res["preprocess"][src_name] = (p.get("how") if "error" not in p else
                                           f"quant_pre_process failed, raw file used: {p['error'][-300:]}")
            start = pre if "error" not in p else src
            for method in METHODS:
                key = f"ort_{method.lower()}" + ("" if src_name == "prepared" else "_original")
                q = _ort(start, tmp / f"{key}.onnx", method, tmp, batch, ref[src_name], held)
                q["preprocess_s"] = p.get("time_s")
                if start != src and "error" in q and "exceeded" not in q:
                    log(f"  {key}: retrying on the file without quant_pre_process")
                    q = {**_ort(src, tmp / f"{key}.onnx", method, tmp, batch, ref[src_name], held),
                         "preprocessed_failed": q["error"][-400:],
                         "preprocess": "none (pre-processed model failed)"}
                quantizers[key] = q
        if nncf:
            quantizers["nncf"] = _nncf(prepared, tmp / "nncf.onnx", tmp, ref["prepared"], held, batch)
    res["quantizers"] = quantizers
    scores = {k: v.get("sqnr_db") for k, v in quantizers.items()}
    valid = {k: v for k, v in scores.items() if v is not None}
    ort_prepared = [v for k, v in valid.items() if k.startswith("ort_") and not k.endswith("_original")]
    ort_any = [v for k, v in valid.items() if k.startswith("ort_")]
    if "ours" in valid and ort_prepared:
        res["ours_highest"] = valid["ours"] >= max(ort_prepared)
        res["ours_highest_incl_original"] = valid["ours"] >= max(ort_any)
        res["ours_minus_best_ort_db"] = valid["ours"] - max(ort_prepared)
    return summarize(res)


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """Flat per-quantizer fields and the acceptance check: ours vs the best W8A8 peer (every weighted
    layer quantized; a peer that leaves layers in float is reported but is not the bar), exact and
    deployed, with the paired-bootstrap 90 % interval of the margin over the held-out samples."""
    quantizers = res.get("quantizers", {})
    err2 = {k: v.pop("_err2", {}) for k, v in quantizers.items()}
    for k, v in quantizers.items():
        for field in ("sqnr_db", "cosine", "deployed_sqnr_db", "time_s", "peak_rss_mb", "float_weighted_share"):
            res[f"{k}_{field}"] = v.get(field)
    for field in ("sqnr_db", "deployed_sqnr_db"):
        peer = {k: quantizers[k].get(field) for k in PEERS if quantizers.get(k, {}).get(field) is not None
                and not quantizers[k].get("float_weighted_share")}
        mine = quantizers.get("ours", {}).get(field)
        if peer and mine is not None:
            best = max(peer, key=peer.__getitem__)
            res[f"best_peer_{field}"] = peer[best]
            res[f"best_peer_{field}_by"] = best
            res[f"ours_minus_best_peer_{field}"] = mine - peer[best]
            res[f"ours_ge_best_peer_{field}"] = mine >= peer[best]
            if field in err2["ours"] and field in err2[best]:
                res[f"ours_minus_best_peer_{field}_ci90"] = margin_interval(err2["ours"][field], err2[best][field])
    return res


QUANTIZERS = ("ours", "ort_minmax", "ort_percentile", "ort_entropy", "nncf")


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """Exact and deployed output SQNR per model and quantizer (the README table), then cosine, the share of
    weighted layers left float, time and peak RSS."""
    from benchmarks.common import table

    def cell(r: dict[str, Any], q: str, field: str) -> Any:
        v = r.get(f"{q}_{field}")
        share = r.get(f"{q}_float_weighted_share")
        if v is None:
            err = r.get("quantizers", {}).get(q, {})
            return "failed" if "error" in err or (field == "deployed_sqnr_db" and "deployed_error" in err) else None
        return f"{v:.3g} ({100 * share:.0f} % float)" if share else v

    def margin(r: dict[str, Any], field: str) -> str | None:
        d, ci = r.get(f"ours_minus_best_peer_{field}"), r.get(f"ours_minus_best_peer_{field}_ci90")
        if d is None:
            return None
        return f"{d:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")

    ge, gap = "ours ≥ best W8A8 peer", "ours − best W8A8 peer [90 % interval]"
    sq = [{"model": r["model"], **{q: cell(r, q, "sqnr_db") for q in QUANTIZERS},
           ge: r.get("ours_ge_best_peer_sqnr_db"), gap: margin(r, "sqnr_db")} for r in rows]
    dep = [{"model": r["model"], **{q: cell(r, q, "deployed_sqnr_db") for q in QUANTIZERS},
            ge: r.get("ours_ge_best_peer_deployed_sqnr_db"), gap: margin(r, "deployed_sqnr_db")} for r in rows]
    cols = ["model", *QUANTIZERS, ge, gap]
    other = [{"model": r["model"], "quantizer": q, "cosine": r.get(f"{q}_cosine"),
              "float_weighted_share": r.get(f"{q}_float_weighted_share"), "time_s": r.get(f"{q}_time_s"),
              "peak_rss_mb": r.get(f"{q}_peak_rss_mb")} for r in rows for q in QUANTIZERS]
    return "\n\n".join([
        table(sq, cols, title="output SQNR (dB) on held-out data, exact Q/DQ arithmetic"),
        table(dep, cols, title="output SQNR (dB), deployed: onnxruntime's default kernels on this CPU"),
        table(other, ["model", "quantizer", "cosine", "float_weighted_share", "time_s", "peak_rss_mb"],
              title="cosine, weighted layers left float, quantize time and peak RSS")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(ALL_MODELS), help="comma-separated subset of "
                    + ",".join(ALL_MODELS))
    ap.add_argument("--calib", type=int, default=None, help="calibration samples (default: per model)")
    ap.add_argument("--eval", type=int, default=None, help="held-out samples (default: per model)")
    ap.add_argument("--original", action="store_true", help="also run onnxruntime on the original file")
    ap.add_argument("--no-nncf", action="store_true", help="skip NNCF (the peers' environment)")
    ap.add_argument("--ours", nargs=2, metavar=("MODEL", "TMP"), help=argparse.SUPPRESS)
    ap.add_argument("--pre", nargs=2, metavar=("SRC", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--ort", nargs=5, metavar=("SRC", "OUT", "METHOD", "CALIB", "BATCH"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ours:
        emit(child_ours(args.ours[0], Path(args.ours[1])))
        return
    if args.pre:
        emit(child_pre(Path(args.pre[0]), Path(args.pre[1])))
        return
    if args.ort:
        src, out, method, calib, batch = args.ort
        emit(child_ort(Path(src), Path(out), method, Path(calib), int(batch)))
        return

    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for name in args.models.split(","):
        n_calib = args.calib or DEFAULT_CALIB[name]
        n_eval = args.eval or DEFAULT_EVAL.get(name, EVAL_SAMPLES)
        log(f"[vs_onnxruntime] {name}: {n_calib} calibration / {n_eval} held-out samples")
        try:
            results[name] = measure(name, n_calib, n_eval, original=args.original, nncf=not args.no_nncf)
        except Unavailable as e:
            results[name] = {"skipped": str(e)}
        except Exception as e:
            results[name] = {"error": error_tail(e)}
    rows = [{"model": k, **v} for k, v in results.items()]
    log(markdown_tables(rows))
    emit({"benchmark": "vs_onnxruntime", "ort_settings": {
        "quant_format": "QDQ", "per_channel": True, "activation_type": "QUInt8", "weight_type": "QInt8",
        "calibrate_methods": list(METHODS),
        "preprocess": "quant_pre_process (defaults; skip_symbolic_shape=True where that fails; per model)",
        "other": "quantize_static defaults"}, "total_s": time.perf_counter() - t0, "models": results})


if __name__ == "__main__":
    main()
