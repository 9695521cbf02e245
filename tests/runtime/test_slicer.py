import numpy as np

from tests.builders import conv_net, conv_net_data
from workbench.calibration import calibrate
from workbench.graph.layers import find_layers
from workbench.graph.prepare import prepare
from workbench.runtime import Runner, Slicer


def test_slices_respect_the_byte_budget_and_cover_the_batch():
    model, _ = prepare(conv_net())
    tensors = find_layers(model).activation_tensors()
    runner = Runner(model, outputs=tensors)
    one = sum(a.nbytes for a in runner.run({"x": conv_net_data(1)}).values())
    slicer = Slicer([runner], max_bytes=3 * one)
    x = conv_net_data(10)
    parts = list(slicer.run({"x": x}))
    assert [len(p["x"]) for p, _ in parts] == [1, 3, 3, 3]
    assert all(sum(a.nbytes for a in outs[0].values()) <= 3 * one for _, outs in parts)
    np.testing.assert_array_equal(np.concatenate([p["x"] for p, _ in parts]), x)


def test_sliced_calibration_equals_unsliced():
    model, _ = prepare(conv_net())
    tensors = find_layers(model).activation_tensors()
    feeds = [{"x": conv_net_data(16, seed=s)} for s in range(3)]
    big = calibrate(model, tensors, feeds, progress=False)
    small = calibrate(model, tensors, feeds, progress=False, max_bytes=1)
    assert big.num_samples == small.num_samples == 48
    for t in tensors:
        np.testing.assert_array_equal(big.histograms[t].counts, small.histograms[t].counts)
        assert big.histograms[t].max == small.histograms[t].max
