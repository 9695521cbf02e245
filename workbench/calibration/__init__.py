"""One streaming pass over calibration data -> statistics per tensor."""

from workbench.calibration.collector import Calibration, WeightStats, calibrate, weight_stats

__all__ = ["Calibration", "WeightStats", "calibrate", "weight_stats"]
