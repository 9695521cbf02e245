"""Remembered outputs of a model that does not change (the float model), so re-evaluating a
changed recipe on the same data runs onnxruntime only for the quantized model.

Keyed by a BLAKE2 digest of the feed's arrays (names, dtypes, shapes, bytes); bounded by a
byte budget: once full, new results are computed and not stored, so memory never exceeds
the budget whatever the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

from workbench.runtime.runner import Runner

__all__ = ["CachedRunner", "feed_digest"]


def feed_digest(feed: Mapping[str, np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(feed):
        a = np.ascontiguousarray(feed[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.digest()


class CachedRunner:
    """A :class:`Runner` whose results are kept (up to ``max_bytes``) per distinct feed."""

    def __init__(self, runner: Runner, max_bytes: int) -> None:
        self.runner = runner
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self._store: dict[bytes, dict[str, np.ndarray]] = {}

    @property
    def output_names(self) -> list[str]:
        return self.runner.output_names

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = feed_digest(feed)
        if key in self._store:
            self.hits += 1
            return self._store[key]
        out = self.runner.run(feed)
        size = sum(a.nbytes for a in out.values())
        if self.nbytes + size <= self.max_bytes:
            for a in out.values():
                a.setflags(write=False)  # shared across evaluations: nobody may change them
            self._store[key] = out
            self.nbytes += size
        return out
