"""Notebook views over a :class:`~workbench.session.Session` (ipywidgets, bokeh through
jupyter_bokeh). Views hold no numerics: they call session verbs and draw what comes back."""

from workbench.ui.workbench import Workbench

__all__ = ["Workbench"]
