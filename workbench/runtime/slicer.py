"""Keep memory flat when many tensors are exposed: a batch is run in slices small enough
that all exposed outputs of all runners together stay under a byte budget.

Exposing every intermediate tensor makes onnxruntime return them all at once, so peak
memory grows with batch size × number of tensors (hundreds of feature maps for an OCR
network). The first run measures bytes per sample on a one-sample slice; later batches
are cut to ``max_bytes // bytes_per_sample`` samples (at least one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from workbench.runtime.runner import Runner

DEFAULT_MAX_BYTES = 256 << 20
Feed = dict[str, np.ndarray]


class Slicer:
    def __init__(self, runners: Sequence[Runner], *, max_bytes: int = DEFAULT_MAX_BYTES,
                 splittable: bool = True) -> None:
        self.runners = list(runners)
        self.max_bytes = max_bytes
        self.splittable = splittable
        self.step: int | None = None

    def run(self, feed: Mapping[str, np.ndarray]) -> Iterator[tuple[Feed, list[Feed]]]:
        """Yield (slice of ``feed``, outputs of each runner on it) until the batch is done."""
        n = len(next(iter(feed.values())))
        if not self.splittable:
            yield dict(feed), [r.run(feed) for r in self.runners]
            return
        start = 0
        while start < n:
            step = self.step or 1
            part = {k: v[start:start + step] for k, v in feed.items()}
            outs = [r.run(part) for r in self.runners]
            if self.step is None:
                per_sample = sum(a.nbytes for o in outs for a in o.values()) or 1
                self.step = max(1, int(self.max_bytes // per_sample))
            start += step
            yield part, outs
