"""Validated, re-iterable model feeds from arrays, .npz files, iterables and torch DataLoaders."""

from __future__ import annotations

import collections.abc as cabc
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.models.onnx_model import LoadedModel
from workbench.models.tensors import TensorInfo, dtype_name, format_shape
from workbench.runtime.arrays import is_array, to_numpy
from workbench.runtime.batching import Chunk, count, rebatch
from workbench.runtime.npz import DeflatedArray, LazyArray, open_arrays

_CASTS = {(np.dtype(np.float64), np.dtype(np.float32))}  # (data dtype, model dtype) converted silently


class Feeds:
    """A re-iterable source of feed dicts (input name → array), one per batch, stacked along axis 0.

    ``data`` may be: a path to a ``.npz`` (arrays keyed by input name; ``.npy`` for one input), a
    dict name → array or one array (the first axis stacks samples, so a ``[1,3,48,320]`` input takes
    ``[N,3,48,320]``), a list/iterable/torch DataLoader of batches (dicts, arrays or tensors, or
    ``(inputs..., labels...)`` tuples; an array one rank short is one sample), or a callable returning
    such an iterable. Batches hold the model's fixed batch size if it has one, else ``batch_size``;
    ``limit`` caps the number of samples. Bad data raises WorkbenchError saying what the model expects.
    """

    def __init__(self, data: Any, inputs: Sequence[TensorInfo], *, batch_size: int = 32,
                 limit: int | None = None) -> None:
        self.inputs = list(inputs)
        if not self.inputs:
            raise WorkbenchError("Feeds: the model has no inputs to feed")
        _check_count("batch_size", batch_size)
        if limit is not None:
            _check_count("limit", limit)
        for info in self.inputs:
            if info.rank == 0:
                raise WorkbenchError(f"input {info.name!r} is a scalar (rank 0), which Feeds cannot batch; "
                                     "call Runner.run with a feed dict instead")
        self.batch_size, self._exact = _batch_size(self.inputs, batch_size)
        self.limit = limit
        self._by_name = {i.name: i for i in self.inputs}
        self._arrays: dict[str, LazyArray] | None = None
        self._chunks: list[Chunk] | None = None
        self._source: Callable[[], Iterable[Any]] | None = None
        self._one_shot = self._used = False
        self.num_samples: int | None = None
        self._classify(data)
        self.num_batches: int | None = (None if self.num_samples is None
                                        else math.ceil(self.num_samples / self.batch_size))

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if self._one_shot:
            if self._used:
                raise WorkbenchError("the data is a one-shot iterator (e.g. a generator) that was already "
                                     "consumed; pass a list, or a callable that returns a fresh iterator")
            self._used = True
        return rebatch(self._stream(), self.batch_size, exact=self._exact, limit=self.limit)

    def __repr__(self) -> str:
        return (f"Feeds(inputs={[i.name for i in self.inputs]}, batch_size={self.batch_size}, "
                f"num_samples={self.num_samples}, num_batches={self.num_batches})")

    @property
    def expected(self) -> str:
        """What the model takes, as error messages show it: ``x float32 [N,3,32,32]``."""
        return ", ".join(i.describe() for i in self.inputs)

    # -- sources --------------------------------------------------------------------------------

    def _classify(self, data: Any) -> None:
        if isinstance(data, str | os.PathLike):
            path = os.fspath(data)
            arrays = open_arrays(path)
            self._set_arrays(self._single(arrays[""], path) if "" in arrays else arrays, f" in {path}")
        elif isinstance(data, Mapping):
            lazy = (np.ndarray, DeflatedArray)
            self._set_arrays({k: v if isinstance(v, lazy) else to_numpy(v, f"input {k!r}")
                              for k, v in data.items()}, "")
        elif is_array(data):
            self._set_arrays(self._single(to_numpy(data, "data"), "the array"), "")
        elif isinstance(data, list | tuple):
            self._chunks = [self._conform(self._item(x, i)) for i, x in enumerate(data)]
            total = sum(count(c) for c in self._chunks)
            self.num_samples = total if self.limit is None else min(total, self.limit)
            if self.num_samples == 0:
                raise WorkbenchError("the data holds no samples; pass at least one batch")
        elif isinstance(data, cabc.Iterator):
            self._one_shot = True
            self._source = lambda: data
        elif isinstance(data, Iterable):
            self._source = lambda: data
            self.num_samples = _loader_samples(data, self.limit)
        elif callable(data):
            self._source = lambda: _call_source(data)
        else:
            raise WorkbenchError(f"cannot feed a {type(data).__name__} to the model; pass a .npz path, a "
                                 "dict input name → array, an array, or an iterable/DataLoader of batches")

    def _single(self, arr: LazyArray, what: str) -> dict[str, LazyArray]:
        if len(self.inputs) != 1:
            raise WorkbenchError(f"{what} is one array but the model takes {len(self.inputs)} inputs "
                                 f"({self.expected}); pass a dict input name → array")
        return {self.inputs[0].name: arr}

    def _set_arrays(self, arrays: dict[str, LazyArray], where: str) -> None:
        self._check_keys(arrays, where)
        counts = {}
        for name, arr in arrays.items():
            self._check_array(self._by_name[name], arr, sample_ok=False)
            counts[name] = int(arr.shape[0])
        if len(set(counts.values())) > 1:
            raise WorkbenchError(f"inputs have different sample counts{where}: "
                                 + ", ".join(f"{k} has {v}" for k, v in counts.items())
                                 + "; every input needs one entry per sample")
        total = next(iter(counts.values()))
        if total == 0:
            raise WorkbenchError(f"the data{where} holds no samples (the arrays' first axis is 0)")
        self.num_samples = total if self.limit is None else min(total, self.limit)
        if self._exact and self.num_samples % self.batch_size:
            raise WorkbenchError(f"{self.num_samples} samples do not fill batches of {self.batch_size}, the "
                                 f"model's fixed batch size; pass a multiple of {self.batch_size} samples "
                                 f"(e.g. limit={self.num_samples - self.num_samples % self.batch_size or 1})")
        self._arrays = arrays

    def _stream(self) -> Iterator[Chunk]:
        if self._arrays is not None:
            arrays = {k: v.load() if isinstance(v, DeflatedArray) else v for k, v in self._arrays.items()}
            total = count(arrays)
            for start in range(0, total, self.batch_size):
                yield {k: self._cast(self._by_name[k], v[start:start + self.batch_size])
                       for k, v in arrays.items()}
        elif self._chunks is not None:
            yield from self._chunks
        else:
            assert self._source is not None
            for index, item in enumerate(self._source()):
                yield self._conform(self._item(item, index))

    # -- validation -----------------------------------------------------------------------------

    def _item(self, item: Any, index: int) -> dict[str, Any]:
        """One yielded batch as a dict: dicts as they are, ``(inputs..., labels...)`` by input order."""
        if isinstance(item, Mapping):
            return dict(item)
        if isinstance(item, list | tuple):
            if len(item) < len(self.inputs):
                raise WorkbenchError(f"batch {index} is a {type(item).__name__} of {len(item)} item(s) but "
                                     f"the model takes {len(self.inputs)} inputs ({self.expected})")
            return {info.name: x for info, x in zip(self.inputs, item, strict=False)}
        if is_array(item):
            return self._single(item, f"batch {index}")
        raise WorkbenchError(f"batch {index} is a {type(item).__name__}; yield dicts input name → array, "
                             "arrays/tensors, or (inputs..., labels...) tuples")

    def _conform(self, batch: dict[str, Any]) -> Chunk:
        self._check_keys(batch, "")
        chunk = {}
        for name, value in batch.items():
            info = self._by_name[name]
            arr = self._check_array(info, to_numpy(value, f"input {name!r}"), sample_ok=True)
            chunk[name] = self._cast(info, arr)
        counts = {k: v.shape[0] for k, v in chunk.items()}
        if len(set(counts.values())) > 1:
            raise WorkbenchError("inputs have different sample counts in one batch: "
                                 + ", ".join(f"{k} has {v}" for k, v in counts.items()))
        return chunk

    def _check_keys(self, data: Mapping[str, Any], where: str) -> None:
        unknown = [k for k in data if k not in self._by_name]
        for info in self.inputs:
            if info.name not in data:
                found = f" (found {', '.join(repr(k) for k in unknown[:3])})" if unknown else ""
                raise WorkbenchError(f"input {info.name!r} is missing{where}{found}; "
                                     f"the model takes: {self.expected}")
        if unknown:
            raise WorkbenchError(f"unknown input {unknown[0]!r}{where}; the model takes: {self.expected}")

    def _check_array(self, info: TensorInfo, arr: Any, *, sample_ok: bool) -> Any:
        """``arr`` checked against ``info`` (dtype, rank, fixed non-batch dims); a sample gains axis 0."""
        got = tuple(int(d) for d in arr.shape)
        if info.shape is None:
            if not got:
                raise WorkbenchError(f"input {info.name!r}: got a scalar; the first axis must stack samples")
        else:
            shape = got
            if sample_ok and len(got) == len(info.shape) - 1:
                arr, shape = arr[None], (1, *got)
            fixed = [(d, g) for d, g in zip(info.shape[1:], shape[1:], strict=False) if isinstance(d, int)]
            if len(shape) != len(info.shape) or any(d != g for d, g in fixed):
                hint = ("; the first axis stacks samples, so add one for a single sample (arr[None])"
                        if not sample_ok and len(got) == len(info.shape) - 1 else "")
                raise WorkbenchError(f"input {info.name!r}: expected {format_shape(info.shape)}, "
                                     f"got {format_shape(got)}{hint}")
        want = info.dtype
        if want != np.dtype(object) and arr.dtype != want and (arr.dtype, want) not in _CASTS:
            raise WorkbenchError(f"input {info.name!r}: expected dtype {dtype_name(want)}, got {arr.dtype}; "
                                 f"convert with .astype(np.{want.name})")
        return arr

    @staticmethod
    def _cast(info: TensorInfo, arr: np.ndarray) -> np.ndarray:
        if info.dtype != np.dtype(object) and arr.dtype != info.dtype:
            return arr.astype(info.dtype)
        return np.ascontiguousarray(arr)


def as_feeds(data: Any, model: LoadedModel, *, batch_size: int = 32, limit: int | None = None) -> Feeds:
    """``data`` as :class:`Feeds` for ``model`` (returned as is when it already is one)."""
    if isinstance(data, Feeds):
        return data
    return Feeds(data, model.inputs, batch_size=batch_size, limit=limit)


def _check_count(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise WorkbenchError(f"{what} must be a positive integer, got {value!r}")


def _batch_size(inputs: list[TensorInfo], requested: int) -> tuple[int, bool]:
    """The batch size to feed and whether the model fixes it (then it must be met exactly)."""
    fixed = {i.name: i.shape[0] for i in inputs if i.shape and isinstance(i.shape[0], int)}
    sizes = set(fixed.values())
    if len(sizes) > 1:
        raise WorkbenchError("inputs fix different batch sizes ("
                             + ", ".join(f"{k}: {v}" for k, v in fixed.items())
                             + "); workbench batches all inputs along axis 0 together")
    if not sizes:
        return int(requested), False
    size = sizes.pop()
    if size < 1:
        raise WorkbenchError(f"the model fixes the batch axis at {size}; re-export it with a batch axis ≥ 1")
    return size, size > 1


def _call_source(factory: Callable[[], Any]) -> Iterable[Any]:
    produced = factory()
    if not isinstance(produced, Iterable):
        raise WorkbenchError(f"the data callable returned a {type(produced).__name__}; "
                             "it must return an iterable of batches")
    return produced


def _loader_samples(data: Any, limit: int | None) -> int | None:
    """Sample count of a torch DataLoader with automatic batching (len of its sampler), else None."""
    if not type(data).__module__.startswith("torch.utils.data"):
        return None
    batch, sampler = getattr(data, "batch_size", None), getattr(data, "sampler", None)
    if not isinstance(batch, int) or sampler is None:
        return None
    try:
        n = len(sampler)
    except TypeError:
        return None
    if getattr(data, "drop_last", False):
        n -= n % batch
    return n if limit is None else min(n, limit)
