"""PyTorch importer: an ``nn.Module`` with example inputs, or a ``torch.export`` program (.pt2), as a LoadedModel.

    model = load_torch(net, (torch.randn(2, 3, 32, 32),))      # or load_model(net, example_inputs=...)
    model = load_torch("net.pt2")                              # torch.export.save(...) keeps example inputs

torch.export traces the model (non-strict; axis 0 of every tensor input dynamic where the code allows), and
torch.onnx's dynamo exporter converts the program in memory (opset 20; BatchNorm folded into Conv, constants
folded). Nodes take the module path they came from, read from the exporter's ``pkg.torch.onnx.name_scopes``
metadata: a module's main node (the one using its weight, or its only node) is ``layer1.0.conv1``, its other
nodes ``layer1.0/Add``, ``layer1.0/Add_1``; a module called again is ``fc@1``. Initializers are named after the
parameters they hold (``parameter_map``/``parameter_transform`` on the LoadedModel say which and how).

Parity with torch is measured on the example inputs at load (``parity_sqnr_db``, plus max |onnx − torch| /
max |torch| per output in ``notes``); above :data:`MAX_REL_ERROR` the export is taken as broken and raises.
torch is imported only when a model is loaded.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import io
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.errors import WorkbenchError
from workbench.models.files import model_file
from workbench.models.naming import unique_name
from workbench.models.onnx_model import LoadedModel, load_onnx
from workbench.models.opset import clean_message

__all__ = ["MAX_REL_ERROR", "OPSET", "load_torch"]

#: ONNX opset the exporter writes.
OPSET = 20
#: Parity worse than this (max |onnx − torch| / max |torch| on the example inputs) fails the import.
MAX_REL_ERROR = 1e-2
#: Parity worse than this is reported in the notes.
WARN_REL_ERROR = 1e-4

_SCOPES = "pkg.torch.onnx.name_scopes"
_RULES = "pkg.onnxscript.rewriter.rule_name"
_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "torch.fx", "torch._subclasses")


def load_torch(source: Any, example_inputs: Any = None, *, dynamic_batch: bool = True) -> LoadedModel:
    """An ``nn.Module``, a ``torch.export.ExportedProgram`` or a saved one (.pt2/.ep path) as a LoadedModel.

    ``example_inputs``: a tensor/array, a tuple of positional arguments, a dict of keyword arguments, or
    ``(args_tuple, kwargs_dict)``; numpy arrays become tensors. Programs bring their own (pass some to override).
    ``dynamic_batch=False`` keeps every axis at its example size (nn.Module only; a program keeps its shapes).
    """
    import torch

    if isinstance(source, str | os.PathLike):
        program, label = _load_program(os.fspath(source)), os.fspath(source)
    elif isinstance(source, torch.export.ExportedProgram):
        program, label = source, "ExportedProgram"
    elif isinstance(source, torch.nn.Module):
        program, label = None, type(source).__name__
    else:
        raise WorkbenchError(f"cannot import a {type(source).__name__} as a PyTorch model; pass an nn.Module "
                             "with example_inputs, a torch.export.ExportedProgram, or a .pt2 path")
    if program is not None:
        args, kwargs = _example(program.example_inputs if example_inputs is None else example_inputs, label)
        return _build(program, program.module(), args, kwargs, label, traced=False)
    args, kwargs = _example(example_inputs, label)
    program = _export(source, args, kwargs, dynamic_batch, label)
    return _build(program, source, args, kwargs, label, traced=True if dynamic_batch else None)


# -- tracing and conversion ----------------------------------------------------------------------------------


def _load_program(path: str) -> Any:
    import torch

    model_file(path, "a .pt2")
    if Path(path).suffix.lower() in (".pt", ".pth"):
        raise WorkbenchError(f"{path}: a .pt/.pth file holds a state dict or a pickled module, not a graph; save "
                             "the model with torch.export.save(torch.export.export(model, args), 'model.pt2') "
                             "or pass the nn.Module with example_inputs")
    try:
        with _quiet():
            return torch.export.load(path)
    except Exception as e:
        raise WorkbenchError(f"{path} is not a torch.export program ({_first_line(e)}); save one with "
                             "torch.export.save(torch.export.export(model, args), 'model.pt2')") from None


def _example(example: Any, label: str) -> tuple[tuple, dict]:
    """``example`` as (args, kwargs) of tensors (numpy arrays converted)."""
    import torch

    if example is None:
        raise WorkbenchError(f"{label}: no example inputs; pass example_inputs (a tensor, a tuple of arguments, "
                             "or a dict of keyword arguments) so torch.export can trace the model")
    if (isinstance(example, tuple) and len(example) == 2 and isinstance(example[0], tuple | list)
            and isinstance(example[1], dict)):
        args, kwargs = tuple(example[0]), dict(example[1])
    elif isinstance(example, dict):
        args, kwargs = (), dict(example)
    elif isinstance(example, tuple | list):
        args, kwargs = tuple(example), {}
    else:
        args, kwargs = (example,), {}

    def tensor(x: Any) -> Any:
        return torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x

    return torch.utils._pytree.tree_map(tensor, (args, kwargs))


def _export(module: Any, args: tuple, kwargs: dict, dynamic_batch: bool, label: str) -> Any:
    """torch.export of ``module`` in eval mode, axis 0 of each tensor input ``Dim.AUTO`` when ``dynamic_batch``."""
    import torch

    shapes = None
    if dynamic_batch:
        def spec(x: Any) -> Any:
            return {0: torch.export.Dim.AUTO} if isinstance(x, torch.Tensor) and x.ndim else None

        try:
            bound = inspect.signature(module.forward).bind(*args, **kwargs).arguments
        except TypeError as e:
            raise WorkbenchError(f"{label}: example_inputs do not fit forward{inspect.signature(module.forward)} "
                                 f"({e}); pass a tuple of positional and/or a dict of keyword arguments") from None
        shapes = {k: torch.utils._pytree.tree_map(spec, v) for k, v in bound.items()}
    try:
        with _quiet(), _eval(module):
            return torch.export.export(module, args, kwargs, dynamic_shapes=shapes, strict=False)
    except WorkbenchError:
        raise
    except Exception as e:
        raise WorkbenchError(f"{label}: torch.export cannot trace the model: {_first_line(e)}{_where(e)}; "
                             f"{_hint(e)}") from None


def _to_onnx(program: Any, label: str) -> onnx.ModelProto:
    import torch

    try:
        with _quiet():
            onnx_program = torch.onnx.export(program, (), dynamo=True, external_data=False, optimize=True,
                                             opset_version=OPSET, verbose=False)
            return onnx_program.model_proto
    except Exception as e:
        raise WorkbenchError(f"{label}: torch.onnx cannot convert the exported program: {_conversion_error(e)}; "
                             "replace that op with supported ones, or export with "
                             "torch.onnx.export(custom_translation_table=...) and load the .onnx") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.export / torch.onnx chatter: warnings, logs, progress prints, partial graphs on errors."""
    loggers = [logging.getLogger(n) for n in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        sink = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _eval(module: Any) -> Iterator[None]:
    """``module`` in eval mode for the duration; its training flag restored after. (An ExportedProgram's
    module() refuses eval(): its graph keeps the mode it was exported in.)"""
    training = getattr(module, "training", False)
    try:
        if training:
            module.eval()
    except NotImplementedError:
        training = False
    try:
        yield
    finally:
        if training:
            module.train(True)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in clean_message(e).splitlines() if ln.strip()]
    line = lines[0].rstrip(".") if lines else type(e).__name__
    return line if len(line) <= 240 else line[:237] + "..."


def _conversion_error(e: BaseException) -> str:
    """The cause in torch.onnx's ConversionError ("No ONNX function found for aten.x.default ...")."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if "## Exception summary" in text:
        summary = [ln.strip() for ln in text.split("## Exception summary", 1)[1].splitlines() if ln.strip()]
        if summary:
            line = re.sub(r"^<class '[^']+'>: ", "", summary[0])
            line = re.sub(r"<OpOverload\(op='([^']+)', overload='([^']+)'\)>", r"\1.\2", line).rstrip(".")
            return line if len(line) <= 240 else line[:237] + "..."
    return _first_line(e)


def _where(e: BaseException) -> str:
    """`` at file.py:12 (`code`)``: the user's line torch.export reports, if any."""
    text = str(e)
    tail = text.split("The following call raised this error:", 1)[-1]
    found = re.findall(r'File "([^"]+)", line (\d+), in \w+\n\s*(.+)', tail)
    if not found:
        return ""
    file, line, code = found[0] if "The following call raised" in text else found[-1]
    return f" at {Path(file).name}:{line} (`{code.strip()}`)"


def _hint(e: BaseException) -> str:
    text = str(e)
    if "data-dependent" in text or "data dependent" in text:
        return "rewrite Python control flow on tensor values with torch.cond (or torch._check for sizes)"
    return ("make the model traceable by torch.export (torch.export.export(model, args, strict=False) shows "
            "the full error), then pass it or its saved .pt2")


# -- building the LoadedModel -------------------------------------------------------------------------------


def _build(program: Any, module: Any, args: tuple, kwargs: dict, label: str, *, traced: bool | None) -> LoadedModel:
    """``program`` → ONNX → LoadedModel. ``traced``: True if we exported ``module`` with a dynamic batch, False
    for a given program, None for a static export (no note on fixed batch axes)."""
    import torch

    proto = _to_onnx(program, label)
    _fix_dims(proto)
    notes = ["exported with torch.export + torch.onnx (dynamo exporter)"]
    _rename_outputs(proto, program)
    params = {**dict(module.named_parameters(remove_duplicate=False)),
              **dict(module.named_buffers(remove_duplicate=False))}
    parameter_map, transform, folded = _map_parameters(proto, params)
    if folded:
        notes.append("BatchNorm folded into Conv by the exporter: "
                     + ", ".join(f"{conv} ← {bn}" for conv, bn in folded.items()))
    _name_nodes(proto.graph, {k: v.removesuffix(".weight") for k, v in parameter_map.items()
                              if v.endswith(".weight")})
    try:
        model = load_onnx(proto)
    except WorkbenchError as e:
        raise WorkbenchError(f"{label}: the exported ONNX model does not load: "
                             f"{str(e).removeprefix('<ModelProto>: ')}") from None
    model.source, model.format = label, "torch"
    model.module, model.example_inputs = module, (args, kwargs)
    model.parameter_map, model.parameter_transform = parameter_map, transform
    model.notes = [*notes, *model.notes, *_batch_notes(model, traced)]
    leaves, spec = torch.utils._pytree.tree_flatten((args, kwargs))
    slots = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor)]
    if len(slots) != len(model.inputs):
        raise WorkbenchError(f"{label}: {len(slots)} tensor example input(s) but the ONNX model has "
                             f"{len(model.inputs)} input(s); pass every tensor the model reads as an input")
    model.source_runtime = _source_runtime(module, leaves, spec, slots, model)
    feed = {info.name: leaves[i].detach().cpu().numpy() for info, i in zip(model.inputs, slots, strict=True)}
    _check_parity(model, feed, label)
    return model


def _source_runtime(module: Any, leaves: list, spec: Any, slots: list[int],
                    model: LoadedModel) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Runs ``module`` (eval mode, no grad) on one feed; outputs keyed by ONNX output name."""
    import torch

    in_names = [i.name for i in model.inputs]
    out_names = [o.name for o in model.outputs]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = list(leaves)
        for slot, name in zip(slots, in_names, strict=True):
            values[slot] = torch.from_numpy(np.array(feed[name]))
        args, kwargs = torch.utils._pytree.tree_unflatten(values, spec)
        with torch.no_grad(), _eval(module):
            out = module(*args, **kwargs)
        tensors = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        if len(tensors) != len(out_names):
            raise WorkbenchError(f"{model.source}: torch returned {len(tensors)} tensor(s) but the ONNX model "
                                 f"has {len(out_names)} output(s); return tensors only from forward")
        return {n: t.detach().cpu().numpy() for n, t in zip(out_names, tensors, strict=True)}

    return run


def _check_parity(model: LoadedModel, feed: dict[str, np.ndarray], label: str) -> None:
    """SQNR (``parity_sqnr_db``) and max relative error per output on ``feed``; raise above MAX_REL_ERROR."""
    from workbench.models.parity import measure_parity
    from workbench.runtime import Runner

    sqnr = measure_parity(model, [feed])
    ours, theirs = Runner(model.proto).run(feed), model.source_runtime(feed)
    rel = {}
    for name, ref in theirs.items():
        ref64 = np.asarray(ref, np.float64)
        scale = float(np.abs(ref64).max()) if ref64.size else 0.0
        err = float(np.abs(np.asarray(ours[name], np.float64) - ref64).max()) if ref64.size else 0.0
        rel[name] = err / scale if scale > 0 else err
    worst = max(rel, key=rel.__getitem__)
    summary = ", ".join(f"{k} {rel[k]:.1e} ({sqnr[k]:.1f} dB)" for k in rel)
    if rel[worst] > MAX_REL_ERROR:
        raise WorkbenchError(f"{label}: onnxruntime differs from torch on output {worst!r} by {rel[worst]:.2e} "
                             f"of its largest magnitude (> {MAX_REL_ERROR:g}); the export is wrong, report it "
                             "with the module")
    flag = f" (above {WARN_REL_ERROR:g}: check the outputs)" if rel[worst] > WARN_REL_ERROR else ""
    model.notes.append(f"parity with torch on the example inputs, max relative error (SQNR): {summary}{flag}")


def _batch_notes(model: LoadedModel, traced: bool | None) -> list[str]:
    """Why axis 0 is fixed, where it is (``traced`` as in :func:`_build`)."""
    static = [i for i in model.inputs if i.shape and not i.batch_dynamic]
    if not static or traced is None:
        return []
    if not traced:
        why = "the program was exported so; export it with dynamic_shapes for a dynamic batch"
    elif all(i.shape[0] == 1 for i in static):
        why = "torch.export fixes size-1 axes; pass example inputs with a batch of 2 or more"
    else:
        why = "the model's code fixes it (e.g. a reshape to a constant size)"
    return [f"batch axis of {', '.join(repr(i.name) for i in static)} is fixed at {static[0].shape[0]}: {why}"]


# -- names ---------------------------------------------------------------------------------------------------


def _fix_dims(proto: onnx.ModelProto) -> None:
    """Integer-valued symbolic dims (``"2"``) become fixed; one shared, generated (``s17``) symbolic batch axis
    is named ``batch``."""
    g = proto.graph
    infos = [*g.input, *g.output, *g.value_info]
    for vi in infos:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param.isdigit():
                d.dim_value = int(d.dim_param)
    first = {vi.type.tensor_type.shape.dim[0].dim_param for vi in g.input
             if vi.type.tensor_type.shape.dim and vi.type.tensor_type.shape.dim[0].HasField("dim_param")}
    used = {d.dim_param for vi in infos for d in vi.type.tensor_type.shape.dim}
    if len(first) == 1 and re.fullmatch(r"s\d+", sym := first.pop()) and "batch" not in used:
        for vi in infos:
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param == sym:
                    d.dim_param = "batch"


def _rename_outputs(proto: onnx.ModelProto, program: Any) -> None:
    """Graph outputs named after forward's return structure: ``output``, ``output_0``…, or dict keys."""
    import torch
    from torch.export.graph_signature import TensorArgument

    specs = program.graph_signature.output_specs
    user = [s for s in specs if s.kind.name == "USER_OUTPUT"]
    try:
        paths = [p for p, _ in torch.utils._pytree.tree_flatten_with_path(
            torch.utils._pytree.tree_unflatten(list(range(len(user))), program.call_spec.out_spec))[0]]
    except Exception:
        return
    names = [_path_name(p) for p, s in zip(paths, user, strict=False) if isinstance(s.arg, TensorArgument)]
    g = proto.graph
    if len(names) != len(g.output) or len(set(names)) != len(names):
        return
    taken = {v for n in g.node for v in (*n.input, *n.output)} | {i.name for i in g.input} \
        | {t.name for t in g.initializer}
    renames = {}
    for out, new in zip(g.output, names, strict=True):
        if out.name != new and new not in taken and out.name not in {i.name for i in g.input}:
            renames[out.name] = new
    _rename_values(g, renames)


def _path_name(path: tuple) -> str:
    parts = []
    for k in path:
        key = getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))
        parts.append(str(key))
    if not parts:
        return "output"
    if hasattr(path[0], "idx"):
        parts[0] = f"output_{parts[0]}"
    return ".".join(parts)


def _rename_values(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    """Rename values (node inputs/outputs, graph outputs, value_info, initializers) here and in subgraphs."""
    if not renames:
        return
    for node in graph.node:
        node.input[:] = [renames.get(v, v) for v in node.input]
        node.output[:] = [renames.get(v, v) for v in node.output]
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                _rename_values(sub, renames)
    for vi in [*graph.output, *graph.value_info]:
        vi.name = renames.get(vi.name, vi.name)
    for t in graph.initializer:
        t.name = renames.get(t.name, t.name)


def _scope(node: onnx.NodeProto) -> str | None:
    """The module path a node came from ('' for the top module), or None without exporter metadata."""
    for prop in node.metadata_props:
        if prop.key == _SCOPES:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return str(scopes[-2]) if len(scopes) >= 2 else ""
    return None


def _rules(node: onnx.NodeProto) -> str:
    return next((p.value for p in node.metadata_props if p.key == _RULES), "")


def _name_nodes(graph: onnx.GraphProto, weight_of: dict[str, str]) -> None:
    """Name main-graph nodes by module path (see the module docstring); nodes without metadata keep theirs."""
    nodes = list(graph.node)
    scopes = [_scope(n) for n in nodes]
    own = Counter(s for s in scopes if s)
    names: dict[int, str] = {}
    calls: Counter[str] = Counter()
    for i, node in enumerate(nodes):  # the node using a module's weight is the module
        path = next((weight_of[v] for v in node.input if v in weight_of), None)
        if path is not None and (path == scopes[i] or not own[path]):
            names[i] = f"{path}@{calls[path]}" if calls[path] else path
            calls[path] += 1
    for i, path in enumerate(scopes):  # a module's only node is the module
        if i not in names and path and own[path] == 1 and not calls[path]:
            names[i] = path
    used = set(names.values()) | {n.name for i, n in enumerate(nodes) if scopes[i] is None}
    for i, path in enumerate(scopes):
        if i in names or path is None:
            continue
        names[i] = unique_name(f"{path}/{nodes[i].op_type}" if path else nodes[i].op_type, used)
    for i, name in names.items():
        nodes[i].name = name


# -- parameters ----------------------------------------------------------------------------------------------


def _map_parameters(proto: onnx.ModelProto,
                    params: dict[str, Any]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Initializer → parameter/buffer name, how it derives from it, and folded BatchNorms (conv → bn).

    An initializer maps by name when it equals the parameter, by value (equal or 2-D transposed) otherwise;
    a Conv with BatchNorm folded in maps its weight and bias to the conv's (or the bn's bias) as ``fold_bn:<bn>``.
    Initializers with generated names are renamed after their parameter where the name is free."""
    g = proto.graph
    arrays = {t.name: t for t in g.initializer}
    mapping: dict[str, str] = {}
    transform: dict[str, str] = {}
    folded: dict[str, str] = {}
    for node in g.node:
        if node.op_type == "Conv" and "FuseBatchNormIntoConv" in _rules(node) and node.input[1] in params:
            conv, bn = node.input[1].removesuffix(".weight"), _scope(node) or "?"
            folded[conv] = bn
            mapping[node.input[1]], transform[node.input[1]] = node.input[1], f"fold_bn:{bn}"
            if len(node.input) > 2 and node.input[2] in arrays:
                bias = f"{conv}.bias" if f"{conv}.bias" in params else f"{bn}.bias"
                mapping[node.input[2]], transform[node.input[2]] = bias, f"fold_bn:{bn}"
    index: dict[tuple, list[tuple[str, str]]] = {}
    for name, tensor in params.items():
        try:
            arr = tensor.detach().cpu().numpy()
        except (TypeError, RuntimeError):  # dtypes numpy lacks (bfloat16)
            continue
        if arr.size < 2:  # scalars match constants by chance
            continue
        index.setdefault(_key(arr), []).append((name, ""))
        if arr.ndim == 2:
            index.setdefault(_key(arr.T), []).append((name, "transpose"))
    consumers: dict[str, list[str]] = {}
    for node in g.node:
        for v in node.input:
            consumers.setdefault(v, []).append(_scope(node) or "")
    for name, t in arrays.items():
        if name in mapping:
            continue
        found = index.get(_key(numpy_helper.to_array(t)), [])
        exact = [c for c in found if c[0] == name]
        if not exact and len(found) > 1:
            near = [c for c in found if any(c[0].rsplit(".", 1)[0] == s for s in consumers.get(name, []))]
            found = near if len(near) == 1 else []
        if exact or len(found) == 1:
            param, how = (exact or found)[0]
            mapping[name] = param
            if how:
                transform[name] = how
    taken = {v for n in g.node for v in (*n.input, *n.output)} | {i.name for i in g.input} | set(arrays)
    renames = {}
    for name, param in mapping.items():
        if name not in params and param not in taken and param not in renames.values():
            renames[name] = param
    _rename_values(g, renames)
    return ({renames.get(k, k): v for k, v in mapping.items()},
            {renames.get(k, k): v for k, v in transform.items()}, folded)


def _key(arr: np.ndarray) -> tuple:
    data = np.ascontiguousarray(arr)
    return data.dtype.str, data.shape, hashlib.blake2b(data.tobytes(), digest_size=16).digest()
