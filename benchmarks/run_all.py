"""Run the calibration speed, calibration memory and onnxruntime comparison benchmarks (one subprocess
each), print their merged JSON to stdout and write it to ``benchmarks/results.json`` plus a markdown
summary to ``benchmarks/RESULTS.md`` (both atomically).

    python benchmarks/run_all.py [--models demo,ocr_rec] [--only speed,memory,vs_ort]
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

from benchmarks.common import ROOT, clean, fmt, log, table
from workbench.export.atomic import write_text

HERE = Path(__file__).resolve().parent
SCRIPTS = {"speed": ("calibration_speed", "calibration_speed.py"),
           "memory": ("calibration_memory", "calibration_memory.py"),
           "vs_ort": ("vs_onnxruntime", "vs_onnxruntime.py")}


def _cpu() -> str:
    """CPU model name and whether it has VNNI (int8 dot products), from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                platform.machine())
    flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    return f"{name} ({'VNNI' if 'vnni' in flags else 'no VNNI'})"


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
    parts = [f"# Benchmark results\n\n{res['meta']['date']} · {res['meta']['machine']} · "
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
        rows = [{"model": k, **v} for k, v in vs["models"].items()]
        parts.append(table(rows, ["model", "calib_samples", "eval_samples", "ours_sqnr_db",
                                  "ort_minmax_sqnr_db", "ort_percentile_sqnr_db",
                                  "ort_minmax_original_sqnr_db", "ort_percentile_original_sqnr_db",
                                  "ours_highest"],
                           title="(c) Output SQNR (dB) vs float on held-out data, exact Q/DQ arithmetic "
                                 "(ORT on our prepared graph; *_original: on the original file)"))
        parts.append(table(rows, ["model", "ours_cosine", "ort_minmax_cosine", "ort_percentile_cosine",
                                  "ours_deployed_sqnr_db", "ort_minmax_deployed_sqnr_db",
                                  "ort_percentile_deployed_sqnr_db", "ours_time_s", "ort_minmax_time_s",
                                  "ort_percentile_time_s"],
                           title="(c) Cosine, deployed SQNR (optimisations on, this CPU) and quantizer "
                                 "time (s)"))
        notes += _notes("vs_ort", vs["models"])
    if "models" in vs:
        notes += [f"vs_ort/{k}: onnxruntime pre-processing — " + "; ".join(f"{s}: {h}" for s, h in
                                                                          v.get("preprocess", {}).items())
                  for k, v in vs["models"].items() if "preprocess" in v]
    for key in ("calibration_speed", "calibration_memory", "vs_onnxruntime"):
        if "error" in res.get(key, {}):
            notes.append(f"{key}: ERROR — {res[key]['error']}")
    if notes:
        parts.append("**Notes and errors**\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None, help="comma-separated subset of demo,ocr_det,ocr_rec,minilm")
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
    for key in args.only.split(","):
        section, script = SCRIPTS[key]
        log(f"== {script}")
        res[section] = run_script(script, extra)
    res["meta"]["total_s"] = round(time.perf_counter() - t0, 1)
    res = clean(res)
    text = json.dumps(res, indent=1)
    write_atomic(Path(args.out), text + "\n")
    write_atomic(Path(args.md), markdown(res))
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
