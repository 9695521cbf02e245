"""BokehJS from the installed package (INLINE), never a CDN: the notebook may be offline.

``jupyter_bokeh.BokehModel`` renders only after BokehJS is in the page; the default
``output_notebook()`` loads it from cdn.bokeh.org, which fails offline and leaves an error widget.
"""

from __future__ import annotations

from bokeh.models import LayoutDOM
from jupyter_bokeh import BokehModel

_loaded = False


def load_bokehjs() -> None:
    """Put BokehJS (inline, no banner) into the notebook once per kernel; a no-op outside IPython."""
    global _loaded
    if _loaded:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is None:
        return
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(INLINE, hide_banner=True)
    _loaded = True


def bokeh_widget(model: LayoutDOM) -> BokehModel:
    """A bokeh layout as an ipywidget whose changes sync both ways (drags come back to Python)."""
    load_bokehjs()
    return BokehModel(model)
