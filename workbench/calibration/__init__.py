"""One streaming pass over calibration data -> statistics per tensor."""

from workbench.calibration.collector import (
    Calibration,
    ChannelStats,
    WeightStats,
    calibrate,
    input_channel_axes,
    weight_stats,
)

__all__ = ["Calibration", "ChannelStats", "WeightStats", "calibrate", "input_channel_axes", "weight_stats"]
