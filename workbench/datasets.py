"""Real, deterministic inputs for the zoo models, preprocessed exactly as each model's own pipeline does.

Every function returns ``{input name: array}`` stacked along axis 0, ready for :func:`save_npz`:

* :func:`ocr_det_inputs`: crops of the document scan ``page.png``, the handwriting photo ``text.png`` and
  photos, as rapidocr 1.4.4 feeds PP-OCRv4's detector: BGR, ``(x/255 - 0.5) / 0.5``, NCHW float32.
* :func:`ocr_rec_inputs`: English text lines rendered with the DejaVu fonts, as rapidocr feeds the
  recogniser: BGR, bilinear resize to height 48 keeping the aspect ratio, ``(x/255 - 0.5) / 0.5``, then
  zero-padded on the right to width 320. :func:`ocr_rec_decode` reads the recogniser's output back.
* :func:`minilm_inputs`: English sentences through BERT's uncased WordPiece tokenizer over MiniLM's own
  ``vocab.txt``: int64 ``input_ids``, ``attention_mask``, ``token_type_ids``.

The same ``(n, seed)`` always gives the same arrays. Nothing here needs torch, OpenCV or the network.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import math
import os
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from workbench import zoo
from workbench.errors import WorkbenchError
from workbench.export.atomic import write_bytes

__all__ = [
    "OCR_DET_MEAN",
    "OCR_DET_STD",
    "OCR_REC_SHAPE",
    "WordPieceTokenizer",
    "minilm_inputs",
    "minilm_tokenizer",
    "ocr_det_inputs",
    "ocr_det_sources",
    "ocr_rec_decode",
    "ocr_rec_inputs",
    "ocr_rec_texts",
    "save_npz",
    "sentences",
    "tflite_image_inputs",
]

Root = Path | str | None

# rapidocr_onnxruntime 1.4.4 config.yaml, Det: mean/std 0.5 on x/255 of a BGR image (PaddleOCR's own
# det config uses ImageNet mean/std; the model gives near-identical maps with either).
OCR_DET_MEAN = (0.5, 0.5, 0.5)
OCR_DET_STD = (0.5, 0.5, 0.5)
OCR_REC_SHAPE = (3, 48, 320)  # rapidocr Rec.rec_img_shape

_PHOTOS = ("china", "flower", "grace_hopper", "camera", "astronaut.png", "coffee.png", "chelsea.png",
           "motorcycle_left.png", "rocket.jpg", "logo.png")
# One cycle of detector crop sources: mostly text (the page scan, the handwriting photo), some photos.
_DET_CYCLE = ("page", "page", "photo", "page", "text", "page", "photo", "page")

# Plain English sentences (written for this project) used with the Zen of Python as the text corpus.
_SENTENCES = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing the violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awful.",
    "The new movie is so great.",
    "The weather forecast says it will rain tomorrow afternoon.",
    "She bought three apples and a loaf of bread at the market.",
    "The train to the city leaves every twenty minutes.",
    "Please close the window before you leave the office.",
    "Our team finished the project two days ahead of schedule.",
    "The museum opens at nine in the morning on weekdays.",
    "He forgot his umbrella and got soaked on the way home.",
    "The children built a sandcastle near the water.",
    "A quick brown fox jumps over the lazy dog.",
    "The library will be closed for repairs next week.",
    "My grandmother grows tomatoes and beans in her garden.",
    "The engineer measured the voltage across the resistor.",
    "Quantization maps floating point values to small integers.",
    "The recipe calls for two cups of flour and one egg.",
    "Heavy traffic delayed the bus by almost an hour.",
    "The cat slept in a patch of warm sunlight.",
    "We watched the sunset from the top of the hill.",
    "The doctor asked him to rest for a few days.",
    "A large ship sailed slowly into the harbour.",
    "The price of coffee has risen sharply this year.",
    "Students must submit their essays by Friday at noon.",
    "The old bridge was replaced by a modern steel structure.",
    "She plays the piano every evening after dinner.",
    "The committee approved the budget for the new school.",
    "Birds were singing in the trees outside my window.",
    "The software update fixed several security problems.",
    "He read the letter twice before he understood it.",
    "The river flooded the fields after the storm.",
    "Fresh snow covered the mountains overnight.",
    "A small dog barked at the delivery van.",
    "The hotel room had a beautiful view of the sea.",
    "They planted forty trees along the new road.",
    "The orchestra rehearsed the symphony for three hours.",
    "Remember to back up your files before the upgrade.",
    "The bakery on the corner sells excellent croissants.",
    "The football match was cancelled because of the rain.",
    "A farmer is feeding his chickens in the yard.",
    "The scientist published her results in a journal.",
    "Our neighbours painted their front door bright red.",
)


# ------------------------------------------------------------------------------------------------ corpus
@lru_cache(maxsize=1)
def sentences() -> tuple[str, ...]:
    """The text corpus: the 19 aphorisms of the Zen of Python (``this``), then 50 plain sentences."""
    with contextlib.redirect_stdout(io.StringIO()):  # ``this`` prints the Zen on first import
        import this
    zen = codecs.decode(this.s, "rot13").splitlines()[2:]
    return tuple(s.strip() for s in zen if s.strip()) + _SENTENCES


# ------------------------------------------------------------------------------------------- image tools
def _resize_linear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """``cv2.resize(img, (w, h))`` with INTER_LINEAR (half-pixel centres, edge clamp, no antialiasing)."""

    def axis(dst: int, src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = np.maximum((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0)
        i0 = np.minimum(np.floor(f).astype(np.int64), src - 1)
        return i0, np.minimum(i0 + 1, src - 1), (f - i0).astype(np.float32)

    y0, y1, ty = axis(h, img.shape[0])
    x0, x1, tx = axis(w, img.shape[1])
    a = img.astype(np.float32)
    ty = ty.reshape(-1, *([1] * (a.ndim - 1)))
    rows = a[y0] * (1 - ty) + a[y1] * ty
    tx = tx.reshape(1, -1, *([1] * (a.ndim - 2)))
    out = rows[:, x0] * (1 - tx) + rows[:, x1] * tx
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _load_bgr(p: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 BGR, as rapidocr's LoadImage gives it (gray is replicated)."""
    from PIL import Image

    with Image.open(p) as im:
        rgb = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _image_path(name: str, root: Root) -> Path:
    if "." not in name:
        return zoo.path(name, root)
    p = zoo.path("page", root).parent / name  # other skimage images sit next to page.png
    if not p.is_file():
        raise WorkbenchError(f"zoo image {name!r} is missing; run `workbench zoo fetch`")
    return p


def _check_n(n: int) -> None:
    if not isinstance(n, int | np.integer) or n < 1:
        raise WorkbenchError(f"n={n!r}: ask for at least one sample (a positive int)")


# ------------------------------------------------------------------------------------------ OCR detector
def ocr_det_sources(n: int) -> list[str]:
    """Which source each of the first ``n`` detector crops comes from: 'page', 'text' or 'photo'."""
    return [_DET_CYCLE[i % len(_DET_CYCLE)] for i in range(n)]


def ocr_det_inputs(n: int, *, size: int = 320, seed: int = 0, root: Root = None) -> dict[str, np.ndarray]:
    """``{'x': float32 [n,3,size,size]}``: crops at varied positions and scales, as the detector sees them.

    Sources follow :func:`ocr_det_sources` (5 of every 8 are the document scan, 1 the handwriting photo,
    2 photos). Each image is scaled (bilinear, as cv2) so its short side covers ``size`` and cropped; the
    page is enlarged 1-1.6x past that so text lines are 20-35 px tall, as in rapidocr's resized inputs.
    ``size`` must be a multiple of 32 (the DB network's stride). rapidocr would also rescale each image to
    a short side of 736 (``limit_type: min``); the network is fully convolutional, so the crops go in as
    they are.
    """
    _check_n(n)
    if size < 32 or size % 32:
        raise WorkbenchError(f"size={size}: the OCR detector needs a multiple of 32, e.g. 320 or 640")
    rng = np.random.default_rng([seed, 0xDE7])
    cache: dict[str, np.ndarray] = {}
    mean = np.array(OCR_DET_MEAN, np.float32) * 255
    std = np.array(OCR_DET_STD, np.float32) * 255
    out = np.empty((n, 3, size, size), np.float32)
    for i, src in enumerate(ocr_det_sources(n)):
        name = str(rng.choice(_PHOTOS)) if src == "photo" else src
        if name not in cache:
            cache[name] = _load_bgr(_image_path(name, root))
        img = cache[name]
        h, w = img.shape[:2]
        cover = size / min(h, w)
        scale = cover * rng.uniform(1.0, 1.6) if src != "photo" else max(cover, rng.uniform(0.6, 1.2))
        sh, sw = max(size, round(h * scale)), max(size, round(w * scale))
        big = _resize_linear(img, sh, sw)
        y = int(rng.integers(0, sh - size + 1))
        x = int(rng.integers(0, sw - size + 1))
        crop = big[y : y + size, x : x + size].astype(np.float32)
        out[i] = ((crop - mean) / std).transpose(2, 0, 1)
    return {"x": out}


# ---------------------------------------------------------------------------------------- OCR recogniser
def _rec_chunks(n: int, seed: int) -> list[tuple[str, int]]:
    """(sentence index, start word) of each line; the text is cut to fit when rendered."""
    rng = np.random.default_rng([seed, 0x7E7])
    corpus = sentences()
    picks = []
    for _ in range(n):
        k = int(rng.integers(len(corpus)))
        words = corpus[k].split()
        picks.append((k, int(rng.integers(0, max(1, len(words) - 2)))))
    return picks


def _font_files(root: Root) -> list[Path]:
    folder = zoo.path("dejavu_sans", root).parent
    fonts = sorted(folder.glob("DejaVu*.ttf"))
    if not fonts:
        raise WorkbenchError(f"no DejaVu fonts in {folder}; run `workbench zoo fetch`")
    return fonts


def _rec_samples(n: int, seed: int, root: Root, render: bool) -> tuple[list[str], np.ndarray]:
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    _check_n(n)
    c, th, tw = OCR_REC_SHAPE
    corpus = sentences()
    fonts = _font_files(root)
    rng = np.random.default_rng([seed, 0xF0E])
    texts: list[str] = []
    out = np.zeros((n, c, th, tw) if render else (0, c, th, tw), np.float32)
    for i, (k, start) in enumerate(_rec_chunks(n, seed)):
        font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), int(rng.integers(18, 41)))
        pad_x, pad_y = int(rng.integers(2, 11)), int(rng.integers(2, 8))
        bg = np.clip(int(rng.integers(185, 256)) + rng.integers(-12, 13, size=3), 0, 255)
        fg = int(rng.integers(0, 90))
        blur, noise = float(rng.uniform(0.0, 0.8)), float(rng.uniform(0.0, 6.0))
        noise_seed = int(rng.integers(2**31))
        # Take words while the line fits the recogniser's 320/48 aspect, so it is never squeezed.
        ascent, descent = font.getmetrics()
        hgt = ascent + descent + 2 * pad_y
        words = corpus[k].split()[start:]
        text = words[0]
        for word in words[1:]:
            if (font.getlength(f"{text} {word}") + 2 * pad_x) / hgt > tw / th:
                break
            text = f"{text} {word}"
        texts.append(text)
        if not render:
            continue
        wid = math.ceil(font.getlength(text)) + 2 * pad_x
        im = Image.new("RGB", (wid, hgt), tuple(int(v) for v in bg))
        ImageDraw.Draw(im).text((pad_x, pad_y), text, font=font, fill=(fg, fg, fg))
        if blur > 0.3:
            im = im.filter(ImageFilter.GaussianBlur(blur))
        a = np.asarray(im, np.float32) + np.random.default_rng(noise_seed).normal(0.0, noise, (hgt, wid, 3))
        bgr = np.clip(np.rint(a), 0, 255).astype(np.uint8)[:, :, ::-1]
        # rapidocr TextRecognizer.resize_norm_img with max_wh_ratio = 320/48: resize, normalise, pad 0
        rw = min(tw, math.ceil(th * wid / hgt))
        line = _resize_linear(bgr, th, rw).astype(np.float32).transpose(2, 0, 1) / 255
        out[i, :, :, :rw] = (line - 0.5) / 0.5
    return texts, out


def ocr_rec_inputs(n: int, *, seed: int = 0, root: Root = None) -> dict[str, np.ndarray]:
    """``{'x': float32 [n,3,48,320]}``: rendered English text lines, as the recogniser sees them.

    Each line is a run of words from :func:`sentences` that fits 320x48 when scaled to height 48, drawn in
    one of the 12 DejaVu fonts at 18-40 px, dark on a light tinted background, slightly blurred and noisy.
    Its text is ``ocr_rec_texts(n, seed=seed, root=root)[i]``.
    """
    return {"x": _rec_samples(n, seed, root, render=True)[1]}


def ocr_rec_texts(n: int, *, seed: int = 0, root: Root = None) -> list[str]:
    """The ground-truth strings of ``ocr_rec_inputs(n, seed=seed, root=root)``."""
    return _rec_samples(n, seed, root, render=False)[0]


def _read_ocr_dict(dict_path: str | os.PathLike) -> list[str]:
    p = Path(dict_path)
    if not p.is_file():
        raise WorkbenchError(f"OCR dictionary {str(p)!r} not found; pass zoo.path('ocr_dict')")
    lines = [ln.rstrip("\r\n") for ln in p.read_bytes().decode("utf-8").splitlines(keepends=True)]
    return ["blank", *lines, " "]  # CTC blank first; rapidocr appends the space character last


def ocr_rec_decode(logits: np.ndarray, dict_path: str | os.PathLike) -> list[str]:
    """CTC greedy decode of recogniser output [N,T,C]: argmax, merge repeats, drop blanks (index 0)."""
    chars = _read_ocr_dict(dict_path)
    logits = np.asarray(logits)
    if logits.ndim != 3 or logits.shape[2] != len(chars):
        raise WorkbenchError(
            f"recogniser output shape {list(logits.shape)} does not match [N,T,{len(chars)}] for "
            f"{Path(dict_path).name}; pass the ocr_rec model's output and its dictionary"
        )
    idx = logits.argmax(axis=2)
    keep = np.ones_like(idx, dtype=bool)
    keep[:, 1:] = idx[:, 1:] != idx[:, :-1]
    keep &= idx != 0
    return ["".join(chars[j] for j in row[m]) for row, m in zip(idx, keep, strict=True)]


# -------------------------------------------------------------------------------------------------- MiniLM
def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(a <= cp <= b for a, b in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


class WordPieceTokenizer:
    """BERT's uncased tokenizer: clean, lowercase, strip accents, split punctuation, then WordPiece.

    Matches ``BertTokenizer(do_lower_case=True, tokenize_chinese_chars=True)``: each word is split
    greedily into the longest vocabulary pieces (continuations prefixed ``##``); a word that cannot be
    split, or is over 100 characters, becomes ``[UNK]``.
    """

    def __init__(self, vocab_path: str | os.PathLike, *, lowercase: bool = True, max_word_chars: int = 100):
        p = Path(vocab_path)
        if not p.is_file():
            raise WorkbenchError(f"vocabulary {str(p)!r} not found; pass the model's vocab.txt")
        tokens = p.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in self.vocab:
                raise WorkbenchError(f"{p.name} has no {special} token; pass a BERT WordPiece vocab.txt")
        self.lowercase = lowercase
        self.max_word_chars = max_word_chars

    def _basic(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            cat = unicodedata.category(ch)
            if ch in " \t\n\r" or cat == "Zs":
                chars.append(" ")
            elif cat in ("Cc", "Cf"):
                continue
            elif _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        words = []
        for word in "".join(chars).split():
            if self.lowercase:
                nfd = unicodedata.normalize("NFD", word.lower())
                word = "".join(c for c in nfd if unicodedata.category(c) != "Mn")
            cur = ""
            for ch in word:
                if _is_punct(ch):
                    if cur:
                        words.append(cur)
                    words.append(ch)
                    cur = ""
                else:
                    cur += ch
            if cur:
                words.append(cur)
        return words

    def _wordpiece(self, word: str) -> list[str]:
        if len(word) > self.max_word_chars:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of ``text`` (no [CLS]/[SEP])."""
        return [p for w in self._basic(text) for p in self._wordpiece(w)]

    def encode(self, texts: Iterable[str], seq_len: int) -> dict[str, np.ndarray]:
        """``[CLS] pieces [SEP]`` cut/padded to ``seq_len``: int64 ids, attention mask, token types."""
        texts = list(texts)
        if seq_len < 2:
            raise WorkbenchError(f"seq_len={seq_len}: need at least 2 for [CLS] and [SEP]")
        ids = np.full((len(texts), seq_len), self.vocab["[PAD]"], np.int64)
        mask = np.zeros((len(texts), seq_len), np.int64)
        for i, t in enumerate(texts):
            toks = ["[CLS]", *self.tokenize(t)[: seq_len - 2], "[SEP]"]
            ids[i, : len(toks)] = [self.vocab[x] for x in toks]
            mask[i, : len(toks)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def minilm_tokenizer(root: Root = None) -> WordPieceTokenizer:
    """The tokenizer of the zoo's all-MiniLM-L6-v2 (its vocab.txt, uncased)."""
    return WordPieceTokenizer(zoo.path("minilm", root) / "vocab.txt")


def minilm_inputs(n: int, *, seq_len: int = 32, seed: int = 0, root: Root = None) -> dict[str, np.ndarray]:
    """``n`` English sentences tokenised for MiniLM: int64 [n,seq_len] ids, attention mask, token types.

    Sentences come from :func:`sentences` in a seeded order; past the corpus size, two sentences are
    joined into one text. Long texts are cut to ``seq_len`` (``[SEP]`` kept last), short ones padded.
    """
    _check_n(n)
    corpus = sentences()
    rng = np.random.default_rng([seed, 0xB17])
    order = rng.permutation(len(corpus))
    texts = []
    for i in range(n):
        if i < len(corpus):
            texts.append(corpus[order[i]])
        else:
            a, b = rng.choice(len(corpus), 2, replace=False)
            texts.append(f"{corpus[a]} {corpus[b]}")
    return minilm_tokenizer(root).encode(texts, seq_len)


# ---------------------------------------------------------------------------------------------------- save
def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """``np.savez`` ``arrays`` to ``path`` atomically (a temp file in the folder, then os.replace)."""
    p = Path(path)
    if not arrays:
        raise WorkbenchError(f"nothing to save to {str(p)!r}; pass a dict of name -> array")
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes(p, buf.getvalue(), "npz output")
    return p


# -------------------------------------------------------------------------------------- TFLite images
# People first (face, pose, selfie and hand models see someone in most crops), then other photos.
_TFLITE_PHOTOS = ("astronaut.png", "grace_hopper", "camera", "coffee.png", "astronaut.png", "grace_hopper",
                  "chelsea.png", "china", "motorcycle_left.png", "flower")
# Input scaling of MediaPipe models that carry no TFLITE_METADATA normalization: the
# ImageToTensorCalculator ``output_tensor_float_range`` of their MediaPipe graphs.
_TFLITE_RANGES = {"palm_detection_lite": (0.0, 1.0), "palm_detection_full": (0.0, 1.0)}


def tflite_image_inputs(model: str | os.PathLike | object, n: int, *, seed: int = 0,
                        value_range: tuple[float, float] | None = None, root: Root = None) -> dict[str, np.ndarray]:
    """``{input name: float32 [n,H,W,C]}``: photo crops as a TFLite image model's pipeline feeds them.

    ``model`` is a ``.tflite`` path or a LoadedModel imported from one. Each sample is a random square
    crop (50-100 % of the short side) of a zoo photo (mostly of people), resized bilinearly (as cv2)
    to the input's H×W, RGB. Pixels ``p`` in 0-255 are scaled by the model's TFLITE_METADATA
    normalization ``(p − mean) / std`` (MediaPipe: [0,1] or [-1,1]), else by ``value_range=(lo, hi)``
    as ``lo + p/255·(hi − lo)``, else by the known range of a MediaPipe model without metadata.
    """
    from workbench.models.tflite.metadata import input_metadata
    from workbench.models.tflite.reader import read_tflite

    _check_n(n)
    path = os.fspath(getattr(model, "source", model))
    tfl = read_tflite(path)
    images = [tfl.tensors[i] for i in tfl.inputs]
    if len(images) != 1 or len(images[0].shape) != 4 or images[0].shape[3] not in (1, 3):
        shapes = ", ".join(f"{t.name} {list(t.shape)}" for t in images)
        raise WorkbenchError(f"{path}: expected one NHWC image input with 1 or 3 channels, got {shapes}; "
                             "build this model's inputs yourself")
    name = model.inputs[0].name if hasattr(model, "inputs") else images[0].name
    _, h, w, c = images[0].shape
    meta = input_metadata(tfl)
    if value_range is not None:
        lo, hi = value_range
        mean, std = np.float32(-lo * 255 / (hi - lo)), np.float32(255 / (hi - lo))
    elif meta and meta[0].mean is not None and meta[0].std is not None:
        mean, std = np.asarray(meta[0].mean, np.float32), np.asarray(meta[0].std, np.float32)
    elif Path(path).stem in _TFLITE_RANGES:
        lo, hi = _TFLITE_RANGES[Path(path).stem]
        mean, std = np.float32(-lo * 255 / (hi - lo)), np.float32(255 / (hi - lo))
    else:
        raise WorkbenchError(f"{path}: the model's metadata does not say how to scale its input; pass "
                             "value_range=(0, 1) or (-1, 1), as the model's own pipeline does")
    rng = np.random.default_rng([seed, 0x7F1])
    cache: dict[str, np.ndarray] = {}
    out = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        photo = _TFLITE_PHOTOS[i % len(_TFLITE_PHOTOS)]
        if photo not in cache:
            cache[photo] = _load_bgr(_image_path(photo, root))[:, :, ::-1]
        img = cache[photo]
        ih, iw = img.shape[:2]
        side = int(min(ih, iw) * rng.uniform(0.5, 1.0))
        y, x = int(rng.integers(0, ih - side + 1)), int(rng.integers(0, iw - side + 1))
        crop = _resize_linear(np.ascontiguousarray(img[y:y + side, x:x + side]), h, w).astype(np.float32)
        if c == 1:
            crop = crop @ np.array([[0.299], [0.587], [0.114]], np.float32)
        out[i] = (crop - mean) / std
    return {name: out}
