"""Autosave: the recipe (and the ledger) written beside the model after every change, so a
kernel crash or restart loses no hand-tuning. Reopening the model offers to restore it.

The file is ``<model file>.workbench.json`` (or, when the model's folder is not writable,
``$XDG_CACHE_HOME/workbench/autosave/<name>-<fingerprint>.workbench.json``). It records the
model's SHA-256, so a recipe is only offered back for the exact model it was made on.
Writes are atomic (temp file + rename): a crash mid-write leaves the previous save.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.export.atomic import write_text
from workbench.ledger import LedgerEntry, now
from workbench.recipe import Recipe

__all__ = ["Autosave", "autosave_path", "fingerprint", "read_autosave", "write_autosave"]

SUFFIX = ".workbench.json"


@dataclass(frozen=True)
class Autosave:
    path: Path
    saved_at: str
    recipe: Recipe
    ledger: list[LedgerEntry]


def fingerprint(model_bytes: bytes) -> str:
    return hashlib.sha256(model_bytes).hexdigest()


def autosave_path(source: str, digest: str) -> Path:
    """Beside the model file when its folder is writable, else in the user's cache folder;
    ``$WORKBENCH_AUTOSAVE_DIR`` overrides both (the test suite points it at a temp folder)."""
    model = Path(source)
    stem = model.stem if model.is_file() else "model"
    if os.environ.get("WORKBENCH_AUTOSAVE_DIR"):
        return Path(os.environ["WORKBENCH_AUTOSAVE_DIR"]) / f"{stem}-{digest[:16]}{SUFFIX}"
    if model.is_file() and os.access(model.parent, os.W_OK):
        return model.with_name(model.name + SUFFIX)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workbench" / "autosave"
    return cache / f"{stem}-{digest[:16]}{SUFFIX}"


def write_autosave(path: Path, digest: str, recipe: Recipe, ledger: list[LedgerEntry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"workbench_autosave": 1, "model_sha256": digest, "saved_at": now(),
           "recipe": recipe.to_dict(), "ledger": [e.to_dict() for e in ledger]}
    write_text(path, json.dumps(doc, indent=1), "autosave")


def read_autosave(path: Path, digest: str) -> Autosave | None:
    """The autosave at ``path`` if it exists and was made on this model; None otherwise.
    A damaged file raises WorkbenchError naming it (it may hold hours of work: never ignored)."""
    if not path.is_file():
        return None
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        if doc.get("model_sha256") != digest:
            return None
        return Autosave(path, str(doc["saved_at"]), Recipe.from_dict(doc["recipe"]),
                        [LedgerEntry.from_dict(e) for e in doc.get("ledger", [])])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, WorkbenchError) as e:
        raise WorkbenchError(f"autosave {str(path)!r} is damaged ({e}); move it aside to start afresh, "
                             "or open it to copy the recipe out") from None
