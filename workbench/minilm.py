"""all-MiniLM-L6-v2 as ONNX without transformers: safetensors read with numpy, a plain-torch BERT encoder.

    from workbench.minilm import export_minilm_onnx
    export_minilm_onnx("minilm.onnx")  # inputs input_ids/attention_mask/token_type_ids [N,S] int64,
                                       # output last_hidden_state [N,S,384] float32

The encoder is BertModel's: word + position + token-type embeddings and LayerNorm, then 6 layers of
12-head self-attention (padding masked with -10000 added to the scores, as the original BERT) and a
GELU (erf) feed-forward, each followed by residual + LayerNorm (eps from config.json). Sentence
embeddings (:func:`embed`) are the attention-masked mean of ``last_hidden_state``, L2-normalised, as
sentence-transformers does for this model. Importing this module imports torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench import zoo
from workbench.datasets import minilm_inputs, minilm_tokenizer
from workbench.errors import WorkbenchError

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAME",
    "MiniLM",
    "embed",
    "export_minilm_onnx",
    "load_minilm",
    "onnx_parity",
    "read_safetensors",
]

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file: u64 little-endian header size, JSON header, raw little-endian data."""
    p = Path(path)
    data = bytearray(p.read_bytes())
    if len(data) < 8:
        raise WorkbenchError(f"{p.name} is not a safetensors file (too short); re-fetch it")
    n = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(bytes(data[8 : 8 + n]))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WorkbenchError(f"{p.name}: unreadable safetensors header ({e}); re-fetch the file") from e
    base, out = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise WorkbenchError(f"{p.name}: tensor {name!r} is {info['dtype']}; convert it to F32 or F16")
        start, end = info["data_offsets"]
        dt = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(data, dt, (end - start) // dt.itemsize, base + start).reshape(info["shape"])
    return out


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, inter: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.inter = nn.Linear(hidden, inter)
        self.out = nn.Linear(inter, hidden)
        self.out_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, s, h = x.shape
        d = h // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, s, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + bias
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(n, s, h)
        x = self.attn_norm(x + self.attn_out(ctx))
        return self.out_norm(x + self.out(nn.functional.gelu(self.inter(x))))


class MiniLM(nn.Module):
    """BertModel without pooler: ``(input_ids, attention_mask, token_type_ids) -> last_hidden_state``."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, eps = config["hidden_size"], config["layer_norm_eps"]
        self.word = nn.Embedding(config["vocab_size"], hidden)
        self.position = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type = nn.Embedding(config["type_vocab_size"], hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(hidden, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        )

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.norm(self.word(input_ids) + self.position(pos) + self.token_type(token_type_ids))
        bias = (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def load_bert_weights(self, tensors: dict[str, np.ndarray]) -> None:
        """Copy BertModel weights (safetensors names, with or without a ``bert.`` prefix) into this module."""
        t = {k.removeprefix("bert."): v for k, v in tensors.items()}
        names = {
            "word.weight": "embeddings.word_embeddings.weight",
            "position.weight": "embeddings.position_embeddings.weight",
            "token_type.weight": "embeddings.token_type_embeddings.weight",
            "norm.weight": "embeddings.LayerNorm.weight",
            "norm.bias": "embeddings.LayerNorm.bias",
        }
        parts = {
            "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
            "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
            "inter": "intermediate.dense", "out": "output.dense", "out_norm": "output.LayerNorm",
        }
        for i in range(len(self.layers)):
            for mine, theirs in parts.items():
                for w in ("weight", "bias"):
                    names[f"layers.{i}.{mine}.{w}"] = f"encoder.layer.{i}.{theirs}.{w}"
        state = {}
        for mine, theirs in names.items():
            if theirs not in t:
                raise WorkbenchError(f"MiniLM weights lack {theirs!r}; point root at a BertModel checkpoint")
            state[mine] = torch.from_numpy(t[theirs].astype(np.float32))
        self.load_state_dict(state, strict=True)


def load_minilm(root: Path | str | None = None) -> MiniLM:
    """The zoo's all-MiniLM-L6-v2 as a float32 :class:`MiniLM` in eval mode."""
    folder = zoo.path("minilm", root)
    config = json.loads((folder / "config.json").read_text())
    act, pos = config.get("hidden_act", "gelu"), config.get("position_embedding_type", "absolute")
    if act != "gelu" or pos != "absolute":
        raise WorkbenchError(f"{folder}/config.json: {act}/{pos}; need gelu with absolute positions")
    model = MiniLM(config)
    model.load_bert_weights(read_safetensors(folder / "model.safetensors"))
    return model.eval()


def _run(model: MiniLM, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model(*(torch.from_numpy(np.asarray(inputs[k], np.int64)) for k in INPUT_NAMES)).numpy()


def embed(model: MiniLM, texts: list[str], root: Path | str | None = None, seq_len: int = 128) -> np.ndarray:
    """Sentence embeddings [len(texts),384]: masked mean of last_hidden_state, L2-normalised."""
    feeds = minilm_tokenizer(root).encode(texts, seq_len)
    hidden = _run(model, feeds)
    mask = feeds["attention_mask"][:, :, None].astype(np.float32)
    mean = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def onnx_parity(onnx_path: str | os.PathLike, model: MiniLM, inputs: dict[str, np.ndarray]) -> float:
    """max |onnxruntime - torch| / max |torch| of last_hidden_state on ``inputs``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {k: inputs[k] for k in INPUT_NAMES})[0]
    ref = _run(model, inputs)
    if got.shape != ref.shape:
        raise WorkbenchError(f"{Path(onnx_path).name}: output shape {got.shape} != torch {ref.shape}")
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the dynamo exporter's chatter (torchvision not installed, axis renames, deprecations)."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        log.setLevel(level)


def export_minilm_onnx(
    out_path: str | os.PathLike, root: Path | str | None = None, seq_len: int | None = None
) -> Path:
    """Export MiniLM to one self-contained ONNX file (opset 18) and check it against torch.

    Batch is dynamic; the sequence axis is dynamic too unless ``seq_len`` fixes it (for targets that need
    static shapes). Uses torch's dynamo exporter; LayerNorm becomes ONNX LayerNormalization and GELU
    the Erf form. Raises if onnxruntime's output differs from torch's by more than 1e-4 (relative to
    the output's largest magnitude) on real tokenised sentences. Written atomically.
    """
    import onnx

    out = Path(out_path)
    if out.is_dir() or not out.parent.exists():
        raise WorkbenchError(f"cannot write {str(out)!r}; give a file name in an existing folder")
    if seq_len is not None and not 2 <= seq_len <= 512:
        raise WorkbenchError(f"seq_len={seq_len}: choose 2..512, or None for a dynamic sequence axis")
    model = load_minilm(root)
    s = seq_len or 16
    example = tuple(torch.from_numpy(v) for v in minilm_inputs(2, seq_len=s, root=root).values())
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("sequence", min=2, max=512) if seq_len is None else None
    axes = {0: batch, 1: seq} if seq is not None else {0: batch}
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        with _quiet_exporter():
            torch.onnx.export(
                model, example, tmp, dynamo=True, external_data=False, opset_version=18, optimize=True,
                input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                dynamic_shapes={k: axes for k in INPUT_NAMES}, verbose=False,
            )
        proto = onnx.load(tmp)
        onnx.checker.check_model(proto)
        check = minilm_inputs(8, seq_len=seq_len or 32, seed=1, root=root)
        err = onnx_parity(tmp, model, check)
        if err > 1e-4:
            raise WorkbenchError(f"MiniLM ONNX export differs from torch by {err:.2e} (> 1e-4); report this")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def minilm_onnx(root: Path | str | None = None) -> Path:
    """MiniLM as ONNX, exported once into ``<zoo root>/derived/minilm.onnx`` and reused."""
    from workbench import zoo

    base = Path(root) if root is not None else zoo.default_root()
    out = base / "derived" / "minilm.onnx"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        export_minilm_onnx(out, root=root)
    return out
