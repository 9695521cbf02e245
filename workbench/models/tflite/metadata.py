"""What the TFLite model metadata (``TFLITE_METADATA``, schema ``M001``) says about image inputs.

Only the fields needed to preprocess real inputs are read, straight from the flatbuffer tables:
``ModelMetadata.subgraph_metadata[0].input_tensor_metadata[i]`` → ``process_units`` →
``NormalizationOptions {mean, std}`` (``x_model = (pixel − mean) / std`` per channel) and
``stats {max, min}`` (the input's value range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.models.tflite.reader import TfliteModel

__all__ = ["InputMetadata", "input_metadata"]

_NORMALIZATION = 1  # ProcessUnitOptions union member


@dataclass(frozen=True)
class InputMetadata:
    """Normalization (per channel, on 0-255 pixels) and value range declared for one input."""

    name: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    min: tuple[float, ...] | None
    max: tuple[float, ...] | None


def input_metadata(model: TfliteModel) -> list[InputMetadata]:
    """One entry per input tensor described in the metadata (empty when there is none or it is unreadable)."""
    blob = model.metadata.get("TFLITE_METADATA")
    if not blob:
        return []
    try:
        return _read(bytearray(blob))
    except Exception:  # malformed or a schema we do not know: no metadata, not an import failure
        return []


def _read(buf: bytearray) -> list[InputMetadata]:
    import flatbuffers
    from flatbuffers.table import Table

    def root() -> Table:
        return Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))

    def table(t: Table, slot: int) -> Table | None:
        o = t.Offset(4 + 2 * slot)
        return Table(buf, t.Indirect(t.Pos + o)) if o else None

    def tables(t: Table, slot: int) -> list[Table]:
        o = t.Offset(4 + 2 * slot)
        if not o:
            return []
        start = t.Vector(o)
        return [Table(buf, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(o))]

    def floats(t: Table | None, slot: int) -> tuple[float, ...] | None:
        o = t.Offset(4 + 2 * slot) if t is not None else 0
        if not o:
            return None
        return tuple(float(v) for v in np.frombuffer(bytes(buf), np.float32, t.VectorLen(o), t.Vector(o)))

    def string(t: Table, slot: int) -> str:
        o = t.Offset(4 + 2 * slot)
        return t.String(t.Pos + o).decode("utf-8", "replace") if o else ""

    subgraphs = tables(root(), 3)  # ModelMetadata.subgraph_metadata
    if not subgraphs:
        return []
    out = []
    for tm in tables(subgraphs[0], 2):  # SubGraphMetadata.input_tensor_metadata
        mean = std = None
        for unit in tables(tm, 4):  # TensorMetadata.process_units
            o = unit.Offset(4)  # ProcessUnit.options_type
            if o and unit.Get(flatbuffers.number_types.Uint8Flags, unit.Pos + o) == _NORMALIZATION:
                options = table(unit, 1)
                mean, std = floats(options, 0), floats(options, 1)
        stats = table(tm, 5)  # TensorMetadata.stats {max, min}
        out.append(InputMetadata(string(tm, 0), mean, std, floats(stats, 1), floats(stats, 0)))
    return out
