"""Densify a TFLite sparse tensor (TACO format: per-level DENSE or SPARSE_CSR, optional blocks).

Levels follow ``traversal_order`` (the original dims, then one level per block dim). Walking the
levels in order enumerates the stored values: a DENSE level of size ``d`` expands each position
``p`` into ``p·d + i`` (``i < d``); a SPARSE_CSR level expands ``p`` into the positions
``segments[p] ≤ j < segments[p+1]`` with coordinate ``indices[j]``. Expanding level by level keeps
the depth-first order of TFLite's ``FormatConverter``, so the k-th leaf takes the k-th value.
Block coordinates fold back as ``orig[block_map[b]] = orig[block_map[b]]·block_size[b] + coord``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DimLevel", "densify"]


@dataclass(frozen=True)
class DimLevel:
    """One level of the sparse format: ``dense_size`` for DENSE, ``segments``/``indices`` for CSR."""

    dense: bool
    dense_size: int = 0
    segments: np.ndarray | None = None
    indices: np.ndarray | None = None


def densify(values: np.ndarray, shape: tuple[int, ...], traversal_order: tuple[int, ...],
            block_map: tuple[int, ...], levels: list[DimLevel]) -> np.ndarray:
    """The dense array of ``shape`` whose non-zeros ``values`` are stored in the given sparse format."""
    rank = len(shape)
    positions = np.zeros(1, np.int64)
    coords: list[np.ndarray] = []
    for level in levels:
        if level.dense:
            d = level.dense_size
            coords = [np.repeat(c, d) for c in coords]
            coords.append(np.tile(np.arange(d, dtype=np.int64), len(positions)))
            positions = (positions[:, None] * d + np.arange(d, dtype=np.int64)[None, :]).ravel()
        else:
            seg = np.asarray(level.segments, np.int64)
            idx = np.asarray(level.indices, np.int64)
            counts = seg[positions + 1] - seg[positions]
            coords = [np.repeat(c, counts) for c in coords]
            starts = np.repeat(seg[positions], counts)
            offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            positions = starts + offsets
            coords.append(idx[positions])
    if len(positions) != values.size:
        raise ValueError(f"sparse format enumerates {len(positions)} values, the buffer holds {values.size}")
    orig = [np.zeros(len(positions), np.int64) for _ in range(rank)]
    for level, dim in enumerate(traversal_order[:rank]):
        orig[dim] = coords[level]
    block_sizes = {dim - rank: levels[k].dense_size for k, dim in enumerate(traversal_order) if dim >= rank}
    for level in range(rank, len(traversal_order)):
        b = traversal_order[level] - rank
        dim = block_map[b]
        orig[dim] = orig[dim] * block_sizes[b] + coords[level]
    out = np.zeros(shape, values.dtype)
    out[tuple(orig)] = values.ravel()
    return out
