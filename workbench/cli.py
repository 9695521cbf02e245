"""The ``workbench`` command: the session's verbs from a terminal.

    workbench quantize MODEL --data CALIB.npz --out OUT.onnx [--eval EVAL.npz]
              [--recipe RECIPE.json] [--target ort-cpu] [--report REPORT.html] [--json]
    workbench inspect MODEL --data CALIB.npz [--eval EVAL.npz] [--json]
    workbench zoo fetch [--root DIR] [--only NAME ...] | workbench zoo list

Bad input exits with status 2 and one line on stderr; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from workbench.errors import WorkbenchError


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def _session(args: argparse.Namespace):
    from workbench.session import Session

    recipe = None
    if getattr(args, "recipe", None):
        from pathlib import Path

        from workbench.recipe import Recipe

        p = Path(args.recipe)
        if not p.is_file():
            raise WorkbenchError(f"recipe file {args.recipe!r} does not exist")
        recipe = Recipe.from_json(p.read_text())
        if args.target and recipe.target != args.target:
            raise WorkbenchError(f"--recipe is for target {recipe.target!r} but --target {args.target!r} was "
                                 "given; drop --target or edit the recipe")
    progress = not args.quiet
    session = Session(args.model, target=args.target if recipe is None else None, recipe=recipe,
                      progress=progress)
    session.calibrate(args.data, batch_size=args.batch_size, limit=args.limit)
    if recipe is None and not args.no_search:
        session.search_ranges(batch_size=args.batch_size)
    return session


def _summary(session, comparison) -> dict[str, Any]:
    d = comparison.to_dict()
    outputs = {row.pop("output"): row for row in d["outputs"]}
    layers = [{"name": r["layer"], "op_type": r["op_type"], "precision": r["precision"],
               "tensor": r["tensor"], "sqnr_db": r["sqnr_db"], "cosine": r["cosine"], "mse": r["mse"],
               "max_abs": r["max_abs"]} for r in d["layers"]]
    from workbench.runtime.cpu import cpu_features

    cpu = d["cpu"] or {**cpu_features().to_dict(), "describe": cpu_features().describe()}
    warning = comparison.deployed_warning
    return {"target": session.target.name, "num_samples": d["num_samples"], "outputs": outputs,
            "cpu": cpu, "deployed_gap_db": d["deployed_gap_db"], "deployed_warning": warning,
            "activation_range": session.recipe.activations.to_dict()["range"],
            "bias_correction": session.recipe.bias_correction,
            "depthwise_equalization": session.recipe.depthwise_equalization,
            "fold_affine_chains": session.recipe.fold_affine_chains,
            "layers": layers, "notes": session.notes + session.plan.notes + ([warning] if warning else [])}


def cmd_quantize(args: argparse.Namespace) -> int:
    from workbench.export.atomic import writable_path

    writable_path(args.out, "--out")
    if args.report:
        writable_path(args.report, "--report")
    session = _session(args)
    comparison = session.compare(args.eval or args.data, batch_size=args.batch_size, limit=args.limit)
    written = session.export(args.out, report=args.report)
    result = {"out": written["model"], "recipe": written["recipe"], "report": written.get("report"),
              **_summary(session, comparison)}
    if args.json:
        print(json.dumps(_clean(result)))
    else:
        import pandas as pd

        print(f"wrote {written['model']} (target {session.target.name}) and {written['recipe']}")
        cols = [c for c in ("sqnr_db", "deployed_sqnr_db", "cosine") if c in comparison.outputs]
        print(comparison.outputs[cols].to_string())
        print(f"cpu: {result['cpu'].get('describe', '')}")
        if result["deployed_warning"]:
            print(f"warning: {result['deployed_warning']}")
        worst = pd.DataFrame(result["layers"]).sort_values("sqnr_db").head(10)
        print("\nlowest-SQNR layers:\n" + worst[["name", "op_type", "precision", "sqnr_db"]].to_string(index=False))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    session = _session(args)
    comparison = session.compare(args.eval or args.data, batch_size=args.batch_size, limit=args.limit)
    stats = session.stats()
    converted = _import_parity(session, args)
    if args.json:
        summary = _summary(session, comparison)
        summary["tensors"] = stats.to_dict(orient="records")
        if converted:
            summary["import"] = converted
        print(json.dumps(_clean(summary)))
    else:
        print(stats.to_string(index=False))
        print()
        print(comparison.layers.to_string(index=False))
        print()
        print(comparison.outputs.to_string())
        if converted:
            print(f"\nimported from {converted['format']}: output SQNR vs its own runtime (dB) "
                  f"{converted['parity_sqnr_db']}")
    return 0


def _import_parity(session, args: argparse.Namespace) -> dict[str, Any] | None:
    """For a converted model (TFLite, PyTorch): its outputs in onnxruntime vs in its own runtime
    on the evaluation data, as output name → SQNR dB."""
    model = session.model
    if model.source_runtime is None:
        return None
    from workbench.models.parity import measure_parity

    feeds = session.feeds(args.eval or args.data, batch_size=args.batch_size, limit=args.limit)
    return {"format": model.format, "parity_sqnr_db": measure_parity(model, feeds)}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file: .onnx, .tflite, or a torch.export program .pt2")
    p.add_argument("--data", required=True, help="calibration data: .npz keyed by input name")
    p.add_argument("--eval", help="evaluation data (default: the calibration data)")
    p.add_argument("--target", default=None, help="target profile: ort-cpu, tensorrt, int16-npu, pow2")
    p.add_argument("--recipe", help="recipe JSON (default: the target's default recipe)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="use at most this many samples")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-search", action="store_true",
                   help="keep the target's default activation range rule instead of choosing the best of "
                        "auto/minmax/percentile/entropy/mse by output SQNR on the calibration data")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="workbench", description="Interactive quantization workbench")
    sub = ap.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quantize", help="calibrate, quantize, compare and export a QDQ model")
    _common(q)
    q.add_argument("--out", required=True, help="the QDQ .onnx to write")
    q.add_argument("--report", help="also write a self-contained HTML report here")
    q.set_defaults(func=cmd_quantize)
    i = sub.add_parser("inspect", help="per-tensor statistics and the per-layer error table")
    _common(i)
    i.set_defaults(func=cmd_inspect)
    z = sub.add_parser("zoo", help="fetch the real models and data the tests and notebooks use",
                       add_help=False)
    z.add_argument("rest", nargs=argparse.REMAINDER)
    z.set_defaults(func=lambda a: __import__("workbench.zoo", fromlist=["main"]).main(a.rest))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    if getattr(args, "target", None) is None and hasattr(args, "target") and not getattr(args, "recipe", None):
        args.target = "ort-cpu"
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
