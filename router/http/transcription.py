"""POST /v1/audio/transcriptions in OpenAI's shape (multipart/form-data).

Fields: `file` (required; any format FFmpeg reads), `model` (required: the local name or an alias such as
whisper-1; or `transcription.fallback_model`), `response_format` json | text | verbose_json | srt | vtt,
`language` (ISO-639-1), `temperature` (0: the model raises it by itself on windows that decode badly, as OpenAI
does), `prompt`, `timestamp_granularities[]` (segment only). Errors are OpenAI error bodies naming the field.

Routing like rerank: the local model answers; the fallback model's name goes to `fallback_base_url`, and so does
a request the local model cannot answer when a fallback is configured (`x-router-tier`, `x-router-fallback`).
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from router.config import TranscriptionSettings
from router.engines.whisper import Options, Transcript, TranscriptionService
from router.errors import EngineError, InvalidRequest, NotFound, Overloaded, PayloadTooLarge, UpstreamError
from router.http import local_services
from router.http.errors import JSON

TRANSCRIPTION = web.AppKey("transcription", TranscriptionService)
TRANSCRIPTION_HTTP = web.AppKey("transcription_http", aiohttp.ClientSession)

FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
_MAX_FIELD_BYTES = 64 * 1024
# OpenAI names the language in verbose_json; the codes Whisper detects most often, else the code itself.
_LANGUAGES = {
    "en": "english",
    "de": "german",
    "es": "spanish",
    "fr": "french",
    "it": "italian",
    "ja": "japanese",
    "nl": "dutch",
    "pt": "portuguese",
    "ru": "russian",
    "zh": "chinese",
}


@dataclass(slots=True)
class TranscriptionRequest:
    model: str
    audio: bytes
    filename: str
    response_format: str = "json"
    options: Options = field(default_factory=Options)
    remote: bool = False


async def read_form(request: web.Request, max_file_bytes: int) -> tuple[dict[str, str], bytes | None, str]:
    """The text fields, the file's bytes and its name. The file is read in pieces, up to its own limit."""
    if request.content_type != "multipart/form-data":
        raise InvalidRequest(
            f"expected a multipart/form-data body with a file, got {request.content_type or 'no content type'}",
            param="file",
        )
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):
        raise InvalidRequest("the multipart body has no boundary", param="file") from None
    fields: dict[str, str] = {}
    audio: bytes | None = None
    filename = ""
    while True:
        try:
            part = await reader.next()
        except ValueError as exc:
            raise InvalidRequest(f"the multipart body is malformed: {exc}", param="file") from None
        if part is None:
            break
        if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
            raise InvalidRequest("nested or unnamed multipart parts are not supported", param="file")
        limit = max_file_bytes if part.name == "file" else _MAX_FIELD_BYTES
        data = bytearray()
        while chunk := await part.read_chunk(256 * 1024):
            data += chunk
            if len(data) > limit:
                if part.name == "file":
                    raise PayloadTooLarge(f"file exceeds the limit of {limit} bytes")
                raise InvalidRequest(f"form field {part.name} is too long", param=part.name)
        if part.name == "file":
            audio, filename = bytes(data), part.filename or "audio"
        else:
            try:
                fields[part.name] = data.decode()
            except UnicodeDecodeError:
                raise InvalidRequest(f"form field {part.name} is not UTF-8 text", param=part.name) from None
    return fields, audio, filename


def parse_transcription_form(
    fields: dict[str, str], audio: bytes | None, filename: str, settings: TranscriptionSettings
) -> TranscriptionRequest:
    model = fields.get("model")
    if not model:
        raise InvalidRequest("missing required field: model", param="model")
    if model in (settings.name, *settings.aliases):
        remote = False
    elif settings.fallback_model is not None and model == settings.fallback_model:
        remote = True
    else:
        served = [settings.name, *settings.aliases, *([settings.fallback_model] if settings.fallback_model else [])]
        raise NotFound(
            f"The model {model!r} does not exist or is not a transcription model. Models: {', '.join(served)}",
            param="model",
            code="model_not_found",
        )
    if audio is None:
        raise InvalidRequest("missing required field: file", param="file")
    if not audio:
        raise InvalidRequest("file is empty", param="file")
    response_format = fields.get("response_format") or "json"
    if response_format not in FORMATS:
        raise InvalidRequest(
            f"response_format must be one of {', '.join(FORMATS)}, got {response_format!r}", param="response_format"
        )
    raw_temperature = fields.get("temperature") or "0"
    try:
        temperature = float(raw_temperature)
    except ValueError:
        raise InvalidRequest("temperature must be a number", param="temperature") from None
    if not 0 <= temperature <= 1:
        raise InvalidRequest("temperature must lie between 0 and 1", param="temperature")
    language = fields.get("language") or None
    if language is not None and not (2 <= len(language) <= 3 and language.isascii() and language.isalpha()):
        raise InvalidRequest("language must be an ISO-639-1 code such as 'en'", param="language")
    granularities = [v for k, v in fields.items() if k.startswith("timestamp_granularities")]
    if any(g != "segment" for g in granularities):
        raise InvalidRequest(
            "only segment timestamps are supported (timestamp_granularities: ['segment'])",
            param="timestamp_granularities",
        )
    if fields.get("stream") in ("true", "True", "1"):
        raise InvalidRequest("streaming transcription is not supported by this model", param="stream")
    options = Options(language=language.lower() if language else None, temperature=temperature)
    options.prompt = fields.get("prompt") or None
    return TranscriptionRequest(model, audio, filename, response_format, options, remote)


def _clock(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def render(request: TranscriptionRequest, transcript: Transcript) -> tuple[bytes, str]:
    """The body and its content type in the asked response_format."""
    fmt = request.response_format
    if fmt == "text":
        return (transcript.text + "\n").encode(), "text/plain"
    if fmt in ("srt", "vtt"):
        sep = "," if fmt == "srt" else "."
        cues = []
        for i, s in enumerate(transcript.segments, 1):
            timing = f"{_clock(s.start, sep)} --> {_clock(s.end, sep)}"
            cues.append(f"{i}\n{timing}\n{s.text.strip()}\n" if fmt == "srt" else f"{timing}\n{s.text.strip()}\n")
        text = "\n".join(cues)
        return (("WEBVTT\n\n" + text) if fmt == "vtt" else text).encode(), "text/plain"
    usage = {"type": "duration", "seconds": math.ceil(transcript.duration)}
    body: dict[str, Any] = {"text": transcript.text, "usage": usage}
    if fmt == "verbose_json":
        body = {
            "task": "transcribe",
            "language": _LANGUAGES.get(transcript.language, transcript.language),
            "duration": transcript.duration,
            "text": transcript.text,
            "segments": [
                {
                    "id": s.id,
                    "seek": s.seek,
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "tokens": s.tokens,
                    "temperature": s.temperature,
                    "avg_logprob": s.avg_logprob,
                    "compression_ratio": s.compression_ratio,
                    "no_speech_prob": s.no_speech_prob,
                }
                for s in transcript.segments
            ],
            "usage": usage,
        }
    return orjson.dumps(body), JSON


async def _remote(app: web.Application, request: TranscriptionRequest) -> tuple[bytes, str]:
    settings = app[TRANSCRIPTION].settings
    assert settings.fallback_base_url is not None and settings.fallback_model is not None
    form = aiohttp.FormData()
    form.add_field("file", request.audio, filename=request.filename, content_type="application/octet-stream")
    form.add_field("model", settings.fallback_model)
    form.add_field("response_format", request.response_format)
    form.add_field("temperature", str(request.options.temperature))
    if request.options.language:
        form.add_field("language", request.options.language)
    if request.options.prompt:
        form.add_field("prompt", request.options.prompt)
    headers = {}
    if settings.fallback_api_key_env:
        headers["Authorization"] = f"Bearer {os.environ.get(settings.fallback_api_key_env, '')}"
    url = settings.fallback_base_url.rstrip("/") + "/audio/transcriptions"
    try:
        async with app[TRANSCRIPTION_HTTP].post(
            url, data=form, headers=headers, timeout=aiohttp.ClientTimeout(total=settings.fallback_timeout_s)
        ) as response:
            body, status = await response.read(), response.status
            content_type = response.content_type
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamError(f"the fallback transcription API could not be reached: {type(exc).__name__}") from None
    if status != 200:
        raise UpstreamError(f"the fallback transcription API answered {status}")
    return body, content_type


async def transcriptions(request: web.Request) -> web.Response:
    app = request.app
    service = app.get(TRANSCRIPTION)
    if service is None:
        raise NotFound("transcription is disabled on this server (transcription.enabled: false)", code="unknown_url")
    settings = service.settings
    fields, audio, filename = await read_form(request, settings.max_file_bytes)
    parsed = parse_transcription_form(fields, audio, filename, settings)
    headers = {"x-router-tier": "frontier" if parsed.remote else "local"}
    if parsed.remote:
        body, content_type = await _remote(app, parsed)
    else:
        try:
            transcript = await service.transcribe(parsed.audio, parsed.options)
        except (EngineError, Overloaded) as exc:
            if settings.fallback_base_url is None:
                raise
            headers = {"x-router-tier": "frontier", "x-router-fallback": exc.code or exc.type}
            body, content_type = await _remote(app, parsed)
        else:
            body, content_type = render(parsed, transcript)
            headers["x-router-audio-seconds"] = f"{transcript.duration:.2f}"
    return web.Response(body=body, content_type=content_type, headers=headers)


async def _transcription_ctx(app: web.Application) -> AsyncIterator[None]:
    from router.app import SETTINGS  # imported here: app.py imports this module

    settings = app[SETTINGS].transcription
    if not settings.enabled:
        yield
        return
    service = app[TRANSCRIPTION] = TranscriptionService(settings)
    session = app[TRANSCRIPTION_HTTP] = aiohttp.ClientSession()
    await service.start()  # tiny.en: about half a second
    try:
        yield
    finally:
        await service.aclose()
        await session.close()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_transcription_ctx)
    # aiohttp's client_max_size does not bind a multipart reader: read_form enforces max_file_bytes itself.
    local_services.register(app, "transcription", TRANSCRIPTION, "/v1/audio/transcriptions", transcriptions)
