"""Where a semantic hit's time goes, in process: embed, ANN search, guard, verifier, the whole lookup.

The cache runs on the real embedding model (all-MiniLM-L6-v2 int8, onnxruntime) and real hnswlib, filled with
`--entries` real-sounding prompts; each figure is a median over `--repeat` lookups of rewordings, measured in the
same run as its peers (timings on this shared machine are noisy: read the ratios). The verifier runs at
error_bound 0.2, the least bound its shipped calibration certifies. Also: the query embedding with
other onnxruntime session options (graph optimisation level, threads), on the same texts.

    python benchmarks/cache_hit_path.py [--entries 2000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

from router.cache import EmbeddingService, ResponseCache
from router.cache.embed import OnnxEmbedder, default_model_files
from router.cache.guard import agree, anchors, hard_agree
from router.cache.keys import embedding_text
from router.cache.verifier import Verifier
from router.config import DEFAULT_MODEL_NAME, CacheSettings, EmbeddingSettings
from router.routing.policy import RoutingPolicy
from router.types import ChatRequest, Chunk, Message, SamplingParams, Usage

TOPICS = [
    "volcanoes", "glaciers", "honeybees", "lighthouses", "submarines", "coral reefs", "black holes", "penguins",
    "solar panels", "octopuses", "bamboo", "sundials", "the compass", "tidal energy", "rainbows", "earthquakes",
]  # fmt: skip
FORMS = ["How do {} work?", "What are {} made of?", "Why are {} important?", "Where can I see {}?"]


def chat(prompt: str) -> ChatRequest:
    return ChatRequest(
        model=DEFAULT_MODEL_NAME, messages=[Message("user", prompt)], sampling=SamplingParams(temperature=0.0)
    )


def us(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e6:9.1f} µs"


async def fill(cache: ResponseCache, policy: RoutingPolicy, prompts: list[str]) -> None:
    async def rest():
        yield Chunk(finish_reason="stop", usage=Usage(5, 3))

    for prompt in prompts:
        request = chat(prompt)
        lookup = await cache.lookup(request, policy.decide(request))
        if lookup.store:
            async for _ in cache.recording(Chunk(text="An answer."), rest(), lookup, "m"):
                pass
    await cache.flush()


async def lookups(cache: ResponseCache, policy: RoutingPolicy, prompts: list[str], repeat: int) -> tuple:
    times, statuses = [], []
    for i in range(repeat):
        request = chat(prompts[i % len(prompts)])
        decision = policy.decide(request)
        started = time.perf_counter()
        got = await cache.lookup(request, decision)
        times.append(time.perf_counter() - started)
        statuses.append(got.status)
    return times, statuses


async def main_async(args: argparse.Namespace) -> None:
    from router.config import Settings

    policy = RoutingPolicy(Settings())
    embeddings = EmbeddingService(EmbeddingSettings())
    await embeddings.start()
    base = [f.format(t) for t in TOPICS for f in FORMS]
    stored = base + [
        f"Filler question number {i} about {TOPICS[i % len(TOPICS)]} and more" for i in range(args.entries)
    ]
    reworded = ["please tell me, " + p.lower().rstrip("?") for p in base]
    for mode in ("auto", "off"):
        settings = CacheSettings(verifier=mode, learn=False, similarity_threshold=0.85, error_bound=0.2)
        cache = ResponseCache(settings, embeddings)
        await cache.start()
        await fill(cache, policy, stored)
        exact, _ = await lookups(cache, policy, base, args.repeat)
        semantic, s2 = await lookups(cache, policy, reworded, args.repeat)
        hits = sum(s == "hit-semantic" for s in s2)
        print(f"verifier {mode:<4}: exact lookup {us(exact)}, semantic lookup {us(semantic)} ({hits}/{len(s2)} hit)")
        await cache.aclose()
    # The parts, on the same texts.
    embed = []
    for i in range(args.repeat):
        started = time.perf_counter()
        await embeddings.embed([embedding_text(reworded[i % len(reworded)])])
        embed.append(time.perf_counter() - started)
    q = (await embeddings.embed([embedding_text(reworded[0])])).vectors[0]
    e = (await embeddings.embed([embedding_text(base[0])])).vectors[0]
    a, b = anchors(reworded[0]), anchors(base[0])
    verifier = Verifier.load()
    parts = {
        "guard (agree)": lambda: agree(a, b),
        "hard checks": lambda: hard_agree(a, b),
        "anchors": lambda: anchors(reworded[0]),
    }
    parts["verifier score"] = lambda: verifier.score(q, e, a, b)
    print(f"embed (service, 1 text) {us(embed)}")
    for name, fn in parts.items():
        samples = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        print(f"{name:<23} {us(samples)}")
    await embeddings.aclose()
    session_options(reworded, args.repeat)


def session_options(texts: list[str], repeat: int) -> None:
    """The same one-text encode under other onnxruntime options (a fresh session each)."""
    import onnxruntime as ort

    model, tokenizer = default_model_files()
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    for threads in (1, 2):
        for name, level in levels.items():
            embedder = OnnxEmbedder(model, tokenizer, 256, threads)
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.graph_optimization_level = level
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            embedder._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            samples = []
            for i in range(repeat):
                started = time.perf_counter()
                embedder.encode([embedding_text(texts[i % len(texts)])])
                samples.append(time.perf_counter() - started)
            p90 = np.percentile(samples, 90) * 1e6
            print(f"encode threads {threads} optimisation {name:<5} {us(samples)}  (p90 {p90:.0f} µs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=200)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
