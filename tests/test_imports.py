import subprocess
import sys


def test_import_workbench_is_light():
    """A headless ONNX user pays only for onnx + onnxruntime + numpy: no torch, bokeh, ipywidgets."""
    code = ("import sys, workbench, workbench.session, workbench.cli; "
            "heavy = [m for m in ('torch', 'bokeh', 'ipywidgets', 'jupyter_bokeh', 'netron') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing workbench loaded {out}"
