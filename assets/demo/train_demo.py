"""Train the embedded demo: a small MobileNet-style CNN on 5000 real MNIST digits, exported to ONNX.

Run from the repository root after ``workbench zoo fetch --only mnist5k``::

    python assets/demo/train_demo.py            # writes assets/demo/{mnist_dsconv.onnx,calib.npz,eval*.np*}

Deterministic (seeded, deterministic torch kernels, 2 threads); ~20 s on 2 idle CPU cores. Two channels start
dead (BN shift -8 before a ReLU), as dead channels appear in real MobileNets: the depthwise BN after them sees
~zero variance, so BN folding blows their filters up ~100x and per-tensor int8 weights lose the other
channels. The script ends by measuring exactly that: BN-folded weights fake-quantized to int8 per-tensor vs
per-channel (activations left float), evaluated with onnxruntime on the 1000 held-out digits.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from workbench.zoo import load_mnist5k  # noqa: E402

MEAN, STD = 0.1307, 0.3081
SEED = 0


# --------------------------------------------------------------------------------------------------- model


class DSBlock(nn.Sequential):
    """Depthwise 3x3 conv + BN + ReLU6, then pointwise 1x1 conv + BN + ReLU6 (MobileNet v1 block)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(),
        )


class DSConvNet(nn.Module):
    """image [N,1,28,28] in [0,1] -> normalise -> stem -> 4 DS blocks -> global avg pool -> logits [N,10]."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        strides = (2, 2, 1, 1)
        self.blocks = nn.Sequential(
            *(DSBlock(a, b, s) for a, b, s in zip(widths[:-1], widths[1:], strides, strict=True))
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - MEAN) / STD
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


# ---------------------------------------------------------------------------------------------------- data


def split(images: np.ndarray, labels: np.ndarray, n_eval_per_class: int = 100):
    """Stratified split: 100 eval digits per class, the rest for training (both shuffled)."""
    rng = np.random.default_rng(SEED)
    ev, tr = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        ev.append(idx[:n_eval_per_class])
        tr.append(idx[n_eval_per_class:])
    ev, tr = rng.permutation(np.concatenate(ev)), rng.permutation(np.concatenate(tr))
    x = (images.astype(np.float32) / 255.0)[:, None]
    return x[tr], labels[tr], x[ev], labels[ev]


def shift_batch(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (zero padding), one offset per image."""
    n = x.shape[0]
    padded = nn.functional.pad(x[:, 0], (max_shift,) * 4)
    off = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=g)
    ar = torch.arange(28)
    rows, cols = (off[:, 0, None] + ar)[:, :, None], (off[:, 1, None] + ar)[:, None, :]
    return padded[torch.arange(n)[:, None, None], rows, cols][:, None]


# ------------------------------------------------------------------------------------------------ training


def kill_channels(model: DSConvNet, layers: list[str], per_layer: int = 1, beta: float = -8.0) -> list[tuple[str, int]]:
    """Start ``per_layer`` channels of each BN in ``layers`` (all feed a depthwise conv) with shift ``beta``.

    Their ReLU never fires, so the depthwise BN downstream sees (almost) zero variance and BN folding scales
    those depthwise filters by 1/sqrt(eps) ~ 316: the outlier channels that break per-tensor int8 weights.
    """
    g = torch.Generator().manual_seed(SEED)
    feeders = {"stem.1": model.stem[1], **{f"blocks.{i}.4": b[4] for i, b in enumerate(model.blocks[:-1])}}
    dead = []
    for name in layers:
        bn = feeders[name]
        for c in torch.randperm(bn.num_features, generator=g)[:per_layer].tolist():
            with torch.no_grad():
                bn.bias[c] = beta
            dead.append((name, c))
    return dead


def train(model: DSConvNet, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    """SGD, nesterov momentum, one-cycle LR, batch 64, random shifts of up to 2 pixels."""
    g = torch.Generator().manual_seed(SEED)
    # MobileNet recipe: weight decay on full convs and the classifier, none on depthwise filters, BN, biases
    dw = [p for p in model.parameters() if p.ndim == 4 and p.shape[1] == 1 and p.shape[0] > 1]
    decay = [p for p in model.parameters() if p.ndim > 1 and all(p is not q for q in dw)]
    rest = [p for p in model.parameters() if all(p is not q for q in decay)]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}],
        lr=0.05,
        momentum=0.9,
        nesterov=True,
    )
    bs = 64
    steps = epochs * (len(x) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.4, total_steps=steps, pct_start=0.2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(len(x) // bs):
            idx = perm[i * bs : (i + 1) * bs]
            loss = nn.functional.cross_entropy(model(shift_batch(xt[idx], g)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"epoch {ep + 1:2d}/{epochs}  loss {total / (len(x) // bs):.4f}", flush=True)
    model.eval()


# -------------------------------------------------------------------------------------------------- export


def export(model: DSConvNet, path: Path) -> onnx.ModelProto:
    """ONNX opset 17, input 'image' [N,1,28,28], output 'logits' [N,10]; BatchNormalization nodes kept."""
    import io
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 28, 28),),
            buf,
            dynamo=False,
            opset_version=17,
            do_constant_folding=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        )
    m = tidy(onnx.load_from_string(buf.getvalue()))
    m.producer_name = "workbench assets/demo/train_demo.py"
    m.doc_string = "MNIST depthwise-separable CNN; 'image' = pixels/255 in [0,1], normalised inside the model"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    return m


def tidy(m: onnx.ModelProto) -> onnx.ModelProto:
    """Turn Identity(initializer) and Constant nodes (exporter artefacts) into plain initializers."""
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    keep = []
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            t = copy.deepcopy(inits[node.input[0]])
            t.name = node.output[0]
            g.initializer.append(t)
        elif node.op_type == "Constant" and node.attribute[0].name == "value":
            t = copy.deepcopy(node.attribute[0].t)
            t.name = node.output[0]
            g.initializer.append(t)
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    return onnx.shape_inference.infer_shapes(m)


# --------------------------------------------------------------------------------------- quantization check


def fold_bn(m: onnx.ModelProto) -> onnx.ModelProto:
    """Fold every BatchNormalization that follows a Conv into the Conv's weight and bias (numpy)."""
    m = copy.deepcopy(m)
    g = m.graph
    arr = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    dead = []
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        conv = producer[bn.input[0]]
        assert conv.op_type == "Conv"
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (arr[n] for n in bn.input[1:5])
        s = gamma / np.sqrt(var + eps)
        w = arr[conv.input[1]] * s[:, None, None, None]
        b = (arr[conv.input[2]] if len(conv.input) > 2 else 0.0) - mean
        b = b * s + beta
        wn, bnm = conv.output[0] + "_W_folded", conv.output[0] + "_B_folded"
        g.initializer.extend(
            [numpy_helper.from_array(w.astype(np.float32), wn), numpy_helper.from_array(b.astype(np.float32), bnm)]
        )
        del conv.input[1:]
        conv.input.extend([wn, bnm])
        conv.output[0] = bn.output[0]
        dead.append(bn)
    for n in dead:
        g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    live = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    return m


def fake_quant_weights(m: onnx.ModelProto, per_channel: bool, bits: int = 8) -> onnx.ModelProto:
    """Symmetric fake-quant of every Conv/Gemm weight (axis 0 = output channel); biases stay float."""
    m = copy.deepcopy(m)
    qmax = 2 ** (bits - 1) - 1
    names = {n.input[1] for n in m.graph.node if n.op_type in ("Conv", "Gemm")}
    for init in m.graph.initializer:
        if init.name not in names:
            continue
        w = numpy_helper.to_array(init)
        axes = tuple(range(1, w.ndim)) if per_channel else None
        amax = np.abs(w).max(axis=axes, keepdims=per_channel)
        scale = np.where(amax > 0, amax / qmax, 1.0)
        init.CopyFrom(
            numpy_helper.from_array((np.clip(np.round(w / scale), -qmax, qmax) * scale).astype(np.float32), init.name)
        )
    return m


def accuracy(m: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy (%) of an ONNX model in onnxruntime (CPU)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"image": x})[0]
    return float((logits.argmax(1) == y).mean() * 100)


def weight_ranges(m: onnx.ModelProto) -> list[str]:
    """One line per folded Conv/Gemm: channels, max|w| over the tensor, and max/median of per-channel max|w|."""
    arr = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    out = []
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            w = arr[n.input[1]]
            ch = np.abs(w).reshape(w.shape[0], -1).max(1)
            kind = "dw" if any(a.name == "group" and a.i > 1 for a in n.attribute) else n.op_type
            out.append(
                f"  {n.output[0]:40s} {kind:4s} C={w.shape[0]:3d} max|w|={ch.max():8.3f} "
                f"max/median={ch.max() / np.median(ch):7.1f}  ch<1/127*max: {(ch < ch.max() / 127).sum()}"
            )
    return out


def check(m: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy of the float model and of BN-folded weight-only fake-quant variants; prints a table."""
    folded = fold_bn(m)
    res = {
        "float": accuracy(m, x, y),
        "float_folded": accuracy(folded, x, y),
        "int8_per_tensor": accuracy(fake_quant_weights(folded, per_channel=False), x, y),
        "int8_per_channel": accuracy(fake_quant_weights(folded, per_channel=True), x, y),
        "int16_per_tensor": accuracy(fake_quant_weights(folded, per_channel=False, bits=16), x, y),
    }
    print("BN-folded weight ranges:")
    print("\n".join(weight_ranges(folded)))
    for k, v in res.items():
        print(f"{k:18s} {v:6.2f} %")
    return res


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--dead", nargs="*", default=["stem.1", "blocks.0.4"], help="BNs given one dead channel each")
    args = ap.parse_args(argv)

    t0 = time.time()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    images, labels = load_mnist5k()
    xtr, ytr, xev, yev = split(images, labels)
    model = DSConvNet()
    print("dead channels (BN, channel):", kill_channels(model, args.dead))
    train(model, xtr, ytr, args.epochs)

    args.out.mkdir(parents=True, exist_ok=True)
    m = export(model, args.out / "mnist_dsconv.onnx")
    calib = xtr[np.random.default_rng(SEED + 1).choice(len(xtr), 256, replace=False)]
    np.savez_compressed(args.out / "calib.npz", image=calib)
    np.savez_compressed(args.out / "eval.npz", image=xev)
    np.save(args.out / "eval_labels.npy", yev.astype(np.int64))
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(xev)).argmax(1).numpy() == yev).mean() * 100)
    print(f"torch eval accuracy {torch_acc:.2f} %")
    check(m, xev, yev)
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
