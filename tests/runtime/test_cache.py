"""The float-output cache behind repeated comparisons: same results, fewer runs, bounded memory."""

import numpy as np
import pytest

from tests.builders import conv_net, conv_net_data
from workbench.runtime import Runner
from workbench.runtime.cache import CachedRunner, feed_digest
from workbench.session import Session


class Counting(Runner):
    calls = 0

    def run(self, feed):
        Counting.calls += 1
        return super().run(feed)


def test_digest_tells_feeds_apart():
    x = conv_net_data(4)
    assert feed_digest({"x": x}) == feed_digest({"x": x.copy()})
    assert feed_digest({"x": x}) != feed_digest({"x": x[:3]})
    y = x.copy()
    y[0, 0, 0, 0] += 1e-6
    assert feed_digest({"x": x}) != feed_digest({"x": y})
    assert feed_digest({"x": x}) != feed_digest({"y": x})


def test_cached_runner_reuses_results_within_its_budget():
    model = conv_net()
    x = conv_net_data(8)
    Counting.calls = 0
    runner = Counting(model)
    cached = CachedRunner(runner, max_bytes=1 << 20)
    first = cached.run({"x": x})
    second = cached.run({"x": x})
    assert Counting.calls == 1 and cached.hits == 1
    assert all(np.array_equal(first[k], second[k]) for k in first)
    with pytest.raises(ValueError):
        next(iter(second.values()))[...] = 0  # shared results are read-only
    tiny = CachedRunner(Counting(model), max_bytes=16)
    tiny.run({"x": x})
    tiny.run({"x": x})
    assert tiny.hits == 0 and tiny.nbytes == 0  # over budget: computed, not kept


def test_second_comparison_on_the_same_data_skips_the_float_run(tmp_path):
    s = Session(conv_net(), progress=False, autosave=False)
    data = conv_net_data(32)
    s.calibrate(data)
    a = s.compare(data, batch_size=8)
    hits = s._float_run.hits
    b = s.compare(data, batch_size=8)
    assert s._float_run.hits > hits
    assert a.layers.sqnr_db.tolist() == b.layers.sqnr_db.tolist()
    s.set(s.layer_names()[0], precision="int16")
    c = s.compare(data, batch_size=8)
    assert c.outputs.sqnr_db.iloc[0] != b.outputs.sqnr_db.iloc[0]
