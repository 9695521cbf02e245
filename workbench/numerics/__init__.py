"""Numerics of quantization: grids, bit-exact fake quantization, histograms, clip ranges, the
expected-error model and error metrics. Pure numpy."""

from workbench.numerics.error_model import ErrorEstimate, expected_error
from workbench.numerics.fakequant import dequantize, fake_quantize, quantize
from workbench.numerics.histogram import Histogram
from workbench.numerics.metrics import (
    ErrorAccumulator,
    cosine,
    margin_interval,
    max_abs,
    mse,
    sample_err2,
    sqnr_db,
)
from workbench.numerics.qparams import QParams, compute_qparams
from workbench.numerics.ranges import array_clip_range, candidate_ranges, clip_range

__all__ = [
    "ErrorAccumulator",
    "ErrorEstimate",
    "Histogram",
    "QParams",
    "array_clip_range",
    "candidate_ranges",
    "clip_range",
    "compute_qparams",
    "cosine",
    "dequantize",
    "expected_error",
    "fake_quantize",
    "margin_interval",
    "max_abs",
    "mse",
    "quantize",
    "sample_err2",
    "sqnr_db",
]
