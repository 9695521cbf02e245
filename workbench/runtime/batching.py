"""Cut a stream of sample chunks (dicts of arrays with equal first axes) into fixed-size batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from workbench.errors import WorkbenchError

Chunk = dict[str, np.ndarray]


def count(chunk: Chunk) -> int:
    """Number of samples in ``chunk`` (length of its arrays' first axis)."""
    return int(next(iter(chunk.values())).shape[0])


def rebatch(chunks: Iterable[Chunk], size: int, *, exact: bool, limit: int | None = None) -> Iterator[Chunk]:
    """Yield batches of ``size`` samples from ``chunks``, stopping after ``limit`` samples.

    Larger chunks are split (views), smaller ones concatenated. The last batch may be short, unless
    ``exact`` (a model with a fixed batch size), where a remainder is a WorkbenchError.
    """
    pending: list[Chunk] = []
    have = seen = 0
    for chunk in chunks:
        n = count(chunk)
        if limit is not None and seen + n > limit:
            n = limit - seen
            chunk = {k: v[:n] for k, v in chunk.items()}
        if n > 0:
            seen += n
            pending.append(chunk)
            have += n
            while have >= size:
                batch, pending = _take(pending, size)
                have -= size
                yield batch
        if limit is not None and seen >= limit:
            break
    if seen == 0:
        raise WorkbenchError("the data holds no samples; pass at least one sample per model input")
    if have and exact:
        raise WorkbenchError(f"{seen} samples do not fill batches of {size}, the model's fixed batch size; "
                             f"pass a multiple of {size} samples (e.g. limit={seen - have or size})")
    if have:
        yield _take(pending, have)[0]


def _take(pending: list[Chunk], size: int) -> tuple[Chunk, list[Chunk]]:
    parts: list[Chunk] = []
    rest: list[Chunk] = []
    need = size
    for chunk in pending:
        n = count(chunk)
        if need == 0:
            rest.append(chunk)
        elif n <= need:
            parts.append(chunk)
            need -= n
        else:
            parts.append({k: v[:need] for k, v in chunk.items()})
            rest.append({k: v[need:] for k, v in chunk.items()})
            need = 0
    if len(parts) == 1:
        return parts[0], rest
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, rest
