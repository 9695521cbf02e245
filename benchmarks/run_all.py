"""Run the calibration speed, calibration memory, peer comparison (onnxruntime + NNCF) and deployed
speed benchmarks (one subprocess each), print their merged JSON to stdout and write it to
``benchmarks/results.json`` plus a markdown summary to ``benchmarks/RESULTS.md`` (both atomically).
With ``--only``, the sections not run are kept from the existing ``results.json``; with ``--models``, the
rows of the models not run are kept in the sections that are (``meta.merged`` says what came from when).

    python benchmarks/run_all.py [--models demo,ocr_rec] [--only speed,memory,vs_ort,deployed]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ALL_MODELS, ROOT, clean, fmt, log, table
from workbench.export.atomic import write_text

HERE = Path(__file__).resolve().parent
SCRIPTS = {"speed": ("calibration_speed", "calibration_speed.py"),
           "memory": ("calibration_memory", "calibration_memory.py"),
           "vs_ort": ("vs_onnxruntime", "vs_onnxruntime.py"),
           "deployed": ("deployed_speed", "deployed_speed.py"),
           "ui": ("ui_latency", "ui_latency.py")}


def _cpu() -> str:
    """CPU model name and whether it has VNNI (int8 dot products): workbench.runtime.cpu."""
    from workbench.runtime.cpu import cpu_features

    f = cpu_features()
    vnni = {True: "VNNI", False: "no VNNI", None: "VNNI unknown"}[f.vnni]
    return f"{f.model_name or platform.machine()} ({f.isa}, {vnni})"


def run_script(script: str, extra: list[str]) -> dict[str, Any]:
    """Run one benchmark script (stderr passes through); its JSON, or an error record."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / script), *extra], cwd=ROOT, stdout=subprocess.PIPE,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        out = {"error": f"{script} exited with {proc.returncode} and printed no JSON"}
    out["wall_s"] = round(wall, 1)
    if proc.returncode:
        out.setdefault("error", f"{script} exited with {proc.returncode}")
    return out


def write_atomic(path: Path, text: str) -> None:
    write_text(path, text, "benchmark results")


def _notes(section: str, models: dict[str, Any]) -> list[str]:
    out = []
    for name, r in models.items():
        if "skipped" in r:
            out.append(f"{section}/{name}: skipped — {r['skipped']}")
        if "error" in r:
            out.append(f"{section}/{name}: ERROR — {r['error']}")
        for k, v in r.get("quantizers", {}).items():
            if isinstance(v, dict) and "error" in v:
                out.append(f"{section}/{name}/{k}: ERROR — {str(v['error'])[-400:]}")
            if isinstance(v, dict) and v.get("deployed_error"):
                out.append(f"{section}/{name}/{k}: its file does not run with onnxruntime's default "
                           f"optimisations — {str(v['deployed_error'])[-300:]}")
            if isinstance(v, dict) and v.get("float_weighted_share"):
                out.append(f"{section}/{name}/{k}: left {v.get('float_weighted_layers')} of "
                           f"{v.get('weighted_layers')} weighted layers in float (not W8A8, not the bar)")
            if isinstance(v, dict) and "preprocessed_failed" in v:
                out.append(f"{section}/{name}/{k}: quantizing the quant_pre_process'ed file gave a model "
                           "onnxruntime cannot load, so the raw file was used — "
                           f"{v['preprocessed_failed'][-300:]}")
        for k in ("small", "large"):
            v = r.get(k)
            if isinstance(v, dict) and "error" in v:
                out.append(f"{section}/{name}/{k}: ERROR — {str(v['error'])[-400:]}")
    return out


def markdown(res: dict[str, Any]) -> str:
    """The human summary of the merged results."""
    merged = f" ({res['meta']['merged']})" if res["meta"].get("merged") else ""
    parts = [f"# Benchmark results\n\n{res['meta']['date']}{merged} · {res['meta']['machine']} · "
             f"total {fmt(res['meta']['total_s'])} s. Regenerate with `python benchmarks/run_all.py`.\n"]
    notes: list[str] = []
    sp = res.get("calibration_speed", {})
    if "models" in sp:
        rows = [{"model": k, **v, **v.get("breakdown", {}),
                 "ort %": 100 * v["breakdown"]["ort_exposed_share"] if "breakdown" in v else None,
                 "hist %": 100 * v["breakdown"]["histogram_share"] if "breakdown" in v else None}
                for k, v in sp["models"].items()]
        parts.append(table(rows, ["model", "samples", "batch_size", "float_s", "calibrate_s", "ratio",
                                  "ort %", "hist %", "session_build_s", "ort_runs", "float_noopt_s",
                                  "exposed_mb_per_sample", "histogram_gb_per_s"],
                         title=f"(a) Calibration time ÷ float inference time (goal ≤ {sp.get('goal_ratio')}; "
                               f"median of interleaved reps; OCR det at {sp.get('ocr_det_size')}px)"))
        notes += _notes("speed", sp["models"])
    mem = res.get("calibration_memory", {})
    if "models" in mem:
        rows = [{"model": k, **v} for k, v in mem["models"].items()]
        parts.append(table(rows, ["model", "batch_size", "small_samples", "large_samples", "peak_small_mb",
                                  "peak_large_mb", "rel_diff", "meets_rel_goal", "meets_abs_goal"],
                           title=f"(b) Calibration peak RSS in MB, fresh process each (goal: < "
                                 f"{100 * mem.get('goal_rel_diff', 0):g} % apart; OCR < "
                                 f"{mem.get('goal_abs_mb')} MB)"))
        o = mem.get("onnxruntime_percentile_ocr_rec")
        if o:
            parts.append(f"onnxruntime `quantize_static` (Percentile), ocr_rec, {o['samples']} samples, "
                         f"{o['cap_gb']:g} GB cap: peak **{fmt(o['peak_mb'])} MB** in "
                         f"{fmt(o.get('quantize_s'))} s (ours, same samples: "
                         f"{fmt(o.get('ours_peak_mb_same_samples'))} MB).")
        notes += _notes("memory", mem["models"])
    vs = res.get("vs_onnxruntime", {})
    if "models" in vs:
        from benchmarks.vs_onnxruntime import markdown_tables

        rows = [{"model": k, **v} for k, v in vs["models"].items()]
        parts.append("**(c) Ours (CLI default) vs onnxruntime `quantize_static` (MinMax, Percentile, Entropy) and "
                     "NNCF defaults, all on our prepared float graph, same calibration and held-out data**")
        parts.append(markdown_tables(rows))
        notes += _notes("vs_ort", vs["models"])
    if "models" in vs:
        notes += [f"vs_ort/{k}: onnxruntime pre-processing — " + "; ".join(f"{s}: {h}" for s, h in
                                                                          v.get("preprocess", {}).items())
                  for k, v in vs["models"].items() if "preprocess" in v]
    dep = res.get("deployed_speed", {})
    if "models" in dep:
        rows = [{"model": m, "variant": k, **v} for m, r in dep["models"].items()
                for k, v in r.get("variants", {}).items()]
        parts.append(table(rows, ["model", "variant", "exact_sqnr_db", "deployed_sqnr_db", "gap_db", "time_ms",
                                  "speed_ratio"],
                           title="(d) ort-cpu profile: exact vs deployed output SQNR (dB) and deployed time per "
                                 "batch of 1 (1 thread, interleaved; ratio to onnxruntime's quantize_static "
                                 "output)"))
        notes += _notes("deployed", dep["models"])
    ui = res.get("ui_latency", {})
    if "models" in ui:
        rows = [{"model": m, **r} for m, r in ui["models"].items()]
        parts.append(table(rows, ["model", "layers", "readout_ms", "drag_ms", "apply_s", "eval_samples"],
                           title="(e) Workbench latency in the kernel (goals: readout and drag < 20 ms; Apply "
                                 "on a MobileNet-size model, 32 samples, < 2 s)"))
    for key in ("calibration_speed", "calibration_memory", "vs_onnxruntime", "deployed_speed", "ui_latency"):
        if "error" in res.get(key, {}):
            notes.append(f"{key}: ERROR — {res[key]['error']}")
    if notes:
        parts.append("**Notes and errors**\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None, help="comma-separated subset of " + ",".join(ALL_MODELS)
                    + " (the TFLite models: vs_ort only)")
    ap.add_argument("--only", default=",".join(SCRIPTS),
                    help="comma-separated subset of " + ",".join(SCRIPTS))
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    extra = ["--models", args.models] if args.models else []
    t0 = time.perf_counter()
    import onnxruntime
    import psutil

    res: dict[str, Any] = {"meta": {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB RAM",
        "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}}
    previous = Path(args.out)
    old = json.loads(previous.read_text()) if previous.is_file() else {}
    if args.only != ",".join(SCRIPTS):
        res.update({k: v for k, v in old.items() if k != "meta"})
    for key in args.only.split(","):
        section, script = SCRIPTS[key]
        log(f"== {script}")
        res[section] = run_script(script, extra)
        kept = {m: r for m, r in old.get(section, {}).get("models", {}).items()
                if m not in res[section].get("models", {})}
        if args.models and kept and "models" in res[section]:  # a subset of models: keep the other rows
            res[section]["models"] = {**kept, **res[section]["models"]}
            res["meta"]["merged"] = "; ".join(filter(None, [
                old.get("meta", {}).get("merged"),
                f"{section} rows {args.models} from {res['meta']['date']}, "
                f"{', '.join(kept)} from {old.get('meta', {}).get('date')}"]))
    res["meta"]["total_s"] = round(time.perf_counter() - t0, 1)
    res = clean(res)
    text = json.dumps(res, indent=1)
    write_atomic(Path(args.out), text + "\n")
    write_atomic(Path(args.md), markdown(res))
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
