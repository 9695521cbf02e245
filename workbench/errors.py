"""The one exception type users see: it names the thing that is wrong and how to fix it."""

from __future__ import annotations


class WorkbenchError(ValueError):
    """A problem with the user's input (model, data, recipe, path), stated in one line.

    Raise it with a message that names the offending thing and the fix, e.g.
    ``WorkbenchError("input 'x': expected shape [N,3,32,32], got [8,32,32,3]; "
    "transpose the array to NCHW")``. The CLI prints it as a single line and exits 2.
    """
