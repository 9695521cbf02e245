"""Open .npz / .npy files lazily: uncompressed arrays are memory-mapped, compressed ones load on demand."""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

from workbench.errors import WorkbenchError


@dataclass(frozen=True)
class DeflatedArray:
    """A compressed .npz member: shape and dtype from its header; :meth:`load` reads the data."""

    path: str
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def load(self) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as npz:
            return npz[self.key]


LazyArray = np.ndarray | DeflatedArray


def open_arrays(path: str | os.PathLike) -> dict[str, LazyArray]:
    """Arrays of a .npz (by key) or .npy (key ``""``) file, without reading their data."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WorkbenchError(f"data file not found: {path}")
    if not os.path.isfile(path):
        raise WorkbenchError(f"{path} is not a file; pass a .npz written by np.savez(path, input_name=array)")
    if path.lower().endswith(".npy"):
        try:
            return {"": np.load(path, mmap_mode="r", allow_pickle=False)}
        except (ValueError, OSError) as e:
            raise WorkbenchError(f"{path} is not a readable .npy file ({e}); write it with np.save") from None
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if m.filename.endswith(".npy")]
            return {m.filename[:-4]: _member(path, zf, m) for m in members}
    except (zipfile.BadZipFile, ValueError, OSError, struct.error) as e:
        raise WorkbenchError(f"{path} is not a .npz file ({e}); write it with "
                             "np.savez(path, input_name=array)") from None


def _member(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> LazyArray:
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return DeflatedArray(path, info.filename[:-4], *_header_by_loading(path, info))
        header_len = f.tell()
    if info.compress_type != zipfile.ZIP_STORED or dtype.hasobject or 0 in shape:
        return DeflatedArray(path, info.filename[:-4], tuple(shape), np.dtype(dtype))
    with open(path, "rb") as raw:  # the local header's extra field can differ from the central one
        raw.seek(info.header_offset)
        local = raw.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_len + extra_len + header_len
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape),
                     order="F" if fortran else "C")


def _header_by_loading(path: str, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    with np.load(path, allow_pickle=False) as npz:
        arr = npz[info.filename[:-4]]
    return tuple(arr.shape), arr.dtype
