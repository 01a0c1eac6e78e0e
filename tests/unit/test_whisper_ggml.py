"""The CTranslate2 → ggml converter: the mel filters, the header and the vocabulary of the file it writes.

Reference values are read from whisper.cpp's own models/for-tests-ggml-tiny.en.bin (ggml-org/whisper.cpp at
233fe1fc), whose filters are OpenAI's mel_filters.npz; the whisper.cpp engine test transcribes with the result."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from router.engines.whisper_ggml import _byte_decoder, ggml_from_ct2, mel_filters, read_ct2

pytestmark = pytest.mark.model


def test_mel_filters_equal_whisper_cpps() -> None:
    f = mel_filters()
    assert f.shape == (80, 201) and f.dtype == np.float32 and (f >= 0).all()
    assert float(f.sum()) == pytest.approx(1.9990241527557373, rel=1e-6)
    assert float(f[0, 1]) == pytest.approx(0.02486259490251541, rel=1e-6)
    assert int(f[40].argmax()) == 43 and float(f[40].max()) == pytest.approx(0.014735566452145576, rel=1e-6)
    assert int(f[79].argmax()) == 192 and float(f[79].max()) == pytest.approx(0.0031647118739783764, rel=1e-6)


def test_byte_decoder_covers_every_byte() -> None:
    decoder = _byte_decoder()
    assert sorted(decoder.values()) == list(range(256))
    assert decoder["Ġ"] == ord(" ") and decoder["!"] == ord("!")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path]:
    from router.engines.whisper import default_model_dir

    model_dir = default_model_dir()
    return model_dir, ggml_from_ct2(model_dir, tmp_path_factory.mktemp("ggml"))


def test_header_and_vocabulary(converted) -> None:
    model_dir, path = converted
    data = path.read_bytes()
    magic, *hparams = struct.unpack("<I11i", data[:48])
    assert magic == 0x67676D6C
    # tiny.en: vocab, audio ctx/state/heads/layers, text ctx/state/heads/layers, mels, f16
    assert hparams == [51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1]
    filters = np.frombuffer(data[56 : 56 + 4 * 80 * 201], dtype=np.float32).reshape(80, 201)
    assert np.array_equal(filters, mel_filters())
    offset = 56 + 4 * 80 * 201
    (n,) = struct.unpack("<i", data[offset : offset + 4])
    assert n == 50257  # text tokens and <|endoftext|>, as whisper.cpp's own files
    tokens, offset = [], offset + 4
    for _ in range(n):
        (size,) = struct.unpack("<I", data[offset : offset + 4])
        tokens.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    assert tokens[0] == b"!" and tokens[220] == b" " and tokens[50256] == b"<|endoftext|>"
    assert tokens[94] == b"\xa1"  # true bytes (whisper.cpp's test file has U+FFFD here)
    assert len(read_ct2(model_dir / "model.bin")) > 100


def test_conversion_is_cached(converted) -> None:
    model_dir, path = converted
    before = path.stat().st_mtime_ns
    assert ggml_from_ct2(model_dir, path.parent) == path and path.stat().st_mtime_ns == before
