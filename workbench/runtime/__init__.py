"""Running models: onnxruntime sessions and validated feeds of user data."""

from workbench.runtime.feeds import Feeds, as_feeds
from workbench.runtime.runner import Runner, run_batches
from workbench.runtime.slicer import Slicer

__all__ = ["Feeds", "Runner", "Slicer", "as_feeds", "run_batches"]
