"""Run a model on onnxruntime's CPU provider, reading graph outputs and/or intermediate tensors."""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.models import large
from workbench.models.opset import clean_message
from workbench.models.tensors import TensorInfo, dtype_name, from_value_info

#: Session config key that makes the x64 quantized kernels (e.g. int8 MatMul/Conv) use exact precision.
EXACT_QUANT_KEY = "session.x64quantprecision"


class Runner:
    """An onnxruntime CPU session whose outputs are ``outputs``: any mix of graph outputs and tensors
    inside the graph (default: the graph outputs).

    ``optimize=False`` disables graph optimisation, so Q/DQ pairs run as float maths: the exact
    reference. ``optimize=True`` applies every optimisation (fused integer kernels, as deployed);
    ``exact_quant=True`` also asks the x64 quantized kernels for exact precision.
    """

    def __init__(self, proto: onnx.ModelProto, *, outputs: Sequence[str] | None = None,
                 optimize: bool = False, exact_quant: bool = False) -> None:
        proto = getattr(proto, "proto", proto)  # accept a LoadedModel too
        graph = proto.graph
        init_names = {t.name for t in graph.initializer}
        self._inputs = [from_value_info(vi) for vi in graph.input if vi.name not in init_names]
        graph_outputs = [vi.name for vi in graph.output]
        if isinstance(outputs, str):
            outputs = [outputs]
        names = list(dict.fromkeys(graph_outputs if outputs is None else outputs))
        if not names:
            raise WorkbenchError("Runner: outputs is empty; pass tensor names, or None for the graph outputs")
        _check_names(names, graph)
        self._output_names = names
        self._tmp: tempfile.TemporaryDirectory | None = None
        extra = [n for n in names if n not in set(graph_outputs)]
        options = _options(optimize, exact_quant)
        try:
            self._session = self._build(proto, extra, options, typed=True)
        except Exception:  # a wrong onnx-inferred type on an exposed tensor: let onnxruntime infer it
            if not extra:
                raise
            self._session = self._build(proto, extra, options, typed=False)

    @property
    def output_names(self) -> list[str]:
        """The tensors :meth:`run` returns, in order."""
        return list(self._output_names)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._inputs]

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; returns output name → array for every name in :attr:`output_names`."""
        self._check_feed(feed)
        try:
            results = self._session.run(self._output_names, {k: np.asarray(v) for k, v in feed.items()})
        except Exception as e:  # onnxruntime raises its own exception types (InvalidArgument, Fail, ...)
            raise WorkbenchError(f"onnxruntime could not run the model on this feed: {clean_message(e)}") \
                from None
        return dict(zip(self._output_names, results, strict=True))

    def _check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        if not isinstance(feed, Mapping):
            raise WorkbenchError(f"Runner.run takes a dict input name → array, got a {type(feed).__name__}")
        expected = ", ".join(i.describe() for i in self._inputs)
        for info in self._inputs:
            if info.name not in feed:
                raise WorkbenchError(f"input {info.name!r} is missing; the model takes: {expected}")
            got = np.asarray(feed[info.name]).dtype
            if info.dtype != np.dtype(object) and got != info.dtype:
                raise WorkbenchError(f"input {info.name!r}: expected dtype {dtype_name(info.dtype)}, "
                                     f"got {got}; convert with .astype(np.{info.dtype.name})")
        unknown = sorted(set(feed) - {i.name for i in self._inputs})
        if unknown:
            raise WorkbenchError(f"unknown input {unknown[0]!r}; the model takes: {expected}")

    def _build(self, proto: onnx.ModelProto, extra: list[str], options: ort.SessionOptions, *,
               typed: bool) -> ort.InferenceSession:
        """Session with ``extra`` appended to the graph outputs (``proto`` is restored afterwards)."""
        graph = proto.graph
        types = {vi.name: vi for vi in graph.value_info} if typed else {}
        n_outputs = len(graph.output)
        for name in extra:  # untyped outputs get their type from onnxruntime's own inference
            vi = graph.output.add()
            if name in types:
                vi.CopyFrom(types[name])
            else:
                vi.name = name
        try:
            if large.is_large(proto):
                self._tmp = tempfile.TemporaryDirectory(prefix="workbench-run-", ignore_cleanup_errors=True)
                model: str | bytes = large.save_with_external_data(proto, self._tmp.name)
            else:
                model = proto.SerializeToString()
        finally:
            del graph.output[n_outputs:]
        try:
            return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise WorkbenchError(f"onnxruntime cannot build a session for the model: {clean_message(e)}") \
                from None


def _options(optimize: bool, exact_quant: bool) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    level = ort.GraphOptimizationLevel
    opts.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    if exact_quant:
        opts.add_session_config_entry(EXACT_QUANT_KEY, "1")
    return opts


def _check_names(names: list[str], graph: onnx.GraphProto) -> None:
    known: list[str] = [vi.name for vi in graph.input]
    known += [t.name for t in graph.initializer]
    known += [o for node in graph.node for o in node.output if o]
    known_set = set(known)
    unknown = [n for n in names if n not in known_set]
    if not unknown:
        return
    bad = unknown[0]
    node = next((n for n in graph.node if n.name == bad), None)
    if node is not None:
        raise WorkbenchError(f"{bad!r} is a node, not a tensor; pass its output tensor name(s): "
                             f"{', '.join(o for o in node.output if o)}")
    close = difflib.get_close_matches(str(bad), known, n=5, cutoff=0.5)
    sample = list(dict.fromkeys(close + [o for n in graph.node for o in n.output if o]))[:5]
    more = f" ({len(unknown)} unknown in all)" if len(unknown) > 1 else ""
    raise WorkbenchError(f"no tensor named {bad!r} in the model{more}; valid names include: "
                         f"{', '.join(sample)}")


def run_batches(runner: Runner, feeds: Iterable[dict[str, np.ndarray]], *, total: int | None = None,
                desc: str = "", progress: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Run ``runner`` on each feed and yield its outputs, with a progress bar (``tqdm.auto``).

    ``total`` defaults to ``feeds.num_batches`` or ``len(feeds)`` when known. A KeyboardInterrupt
    stops the loop and propagates; the bar is closed either way.
    """
    if total is None:
        total = getattr(feeds, "num_batches", None)
        if total is None and hasattr(feeds, "__len__"):
            total = len(feeds)  # type: ignore[arg-type]
    bar = tqdm(total=total, desc=desc or None, unit="batch", disable=not progress, leave=False)
    try:
        for feed in feeds:
            outputs = runner.run(feed)
            bar.update(1)
            yield outputs
    finally:
        bar.close()


__all__ = ["EXACT_QUANT_KEY", "Runner", "TensorInfo", "run_batches"]
