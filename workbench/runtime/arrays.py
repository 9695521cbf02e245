"""User data items (numpy arrays, torch tensors, array-likes) as numpy arrays; torch is never imported."""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.errors import WorkbenchError


def is_torch_tensor(x: Any) -> bool:
    """True for a torch.Tensor (or subclass), checked without importing torch."""
    return any(c.__name__ == "Tensor" and c.__module__.startswith("torch") for c in type(x).__mro__)


def is_array(x: Any) -> bool:
    """True for the things treated as one tensor: numpy arrays and torch tensors."""
    return isinstance(x, np.ndarray) or is_torch_tensor(x)


def to_numpy(x: Any, what: str) -> np.ndarray:
    """``x`` as a numpy array (torch tensors via ``.detach().cpu().numpy()``); ``what`` names it in errors."""
    if isinstance(x, np.ndarray):
        return x
    try:
        if is_torch_tensor(x):
            return x.detach().cpu().numpy()
        arr = np.asarray(x)
    except Exception as e:  # torch dtypes numpy lacks (bfloat16), ragged lists, ...
        raise WorkbenchError(f"{what}: cannot convert a {type(x).__name__} to a numpy array ({e})") from None
    if arr.dtype == np.dtype(object):
        raise WorkbenchError(f"{what}: a {type(x).__name__} is not numeric data; "
                             "pass numpy arrays or tensors")
    return arr
