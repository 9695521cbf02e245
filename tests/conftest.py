"""Suite-wide: autosaves go to a temp folder, never beside the repository's models."""

import os
import tempfile

os.environ.setdefault("WORKBENCH_AUTOSAVE_DIR", tempfile.mkdtemp(prefix="workbench-autosave-"))
