"""A model exported from a tiny torch module, fed by torch DataLoaders (skipped without torch)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from workbench.models import load_onnx
from workbench.runtime import Runner, as_feeds, run_batches

torch = pytest.importorskip("torch")


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class DictDataset(torch.utils.data.Dataset):
    def __init__(self, x) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i]}


def _export(net, path, dynamic: bool) -> None:
    x = torch.randn(1, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the TorchScript exporter is fast; newer torch may only have the dynamo one
            axes = {"x": {0: "N"}, "y": {0: "N"}} if dynamic else None
            torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False,
                              opset_version=17, dynamic_axes=axes)
        except Exception:
            shapes = ({0: torch.export.Dim("N")},) if dynamic else None
            torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=True,
                              opset_version=17, dynamic_shapes=shapes)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Net().eval()


@pytest.mark.parametrize("dynamic", [True, False])
def test_dataloader_feeds_match_torch(net, tmp_path, dynamic):
    _export(net, tmp_path / "net.onnx", dynamic)
    model = load_onnx(tmp_path / "net.onnx")
    assert model.inputs[0].batch_dynamic is dynamic
    x = torch.randn(20, 1, 8, 8)
    labels = torch.arange(20)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, labels), batch_size=8)
    feeds = as_feeds(loader, model, batch_size=16)
    assert feeds.num_samples == 20 and feeds.num_batches == (2 if dynamic else 20)
    outs = list(run_batches(Runner(model.proto), feeds, progress=False))
    assert len(outs) == feeds.num_batches
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(np.concatenate([o["y"] for o in outs]), want, rtol=1e-4, atol=1e-5)


def test_dict_dataloader_with_limit_and_drop_last(net, tmp_path):
    _export(net, tmp_path / "net.onnx", True)
    model = load_onnx(tmp_path / "net.onnx")
    x = torch.randn(21, 1, 8, 8)
    loader = torch.utils.data.DataLoader(DictDataset(x), batch_size=4, drop_last=True)
    assert as_feeds(loader, model).num_samples == 20
    feeds = as_feeds(loader, model, batch_size=5, limit=7)
    batches = list(feeds)
    assert feeds.num_samples == 7 and [b["x"].shape[0] for b in batches] == [5, 2]
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), x[:7].numpy())
