"""Semantic cache quality on a paraphrase / near-miss corpus: hit rate and wrong-hit rate per threshold.

The corpus (benchmarks/workloads/cache_corpus.jsonl) has 70 groups: a base prompt, paraphrases that deserve the
base's answer, and near misses that must not get it (changed numbers, names, negation, another subject). Every
base is stored in one namespace (the same hard key, the hardest case: all candidates compete); then every
paraphrase and near miss is looked up through the real ResponseCache, real embedding model, real hnswlib.

    hit rate        paraphrases served their own base's answer / paraphrases
    wrong-hit rate  hits that served a wrong answer (a near miss hit, or a paraphrase got another base) / hits

Each text is embedded once and reused across the sweep (the model is deterministic), so the sweep is quick.

    python benchmarks/cache_corpus_quality.py [--thresholds 0.85 0.9 0.95]

(This project's own corpus. The public paraphrase sets are measured by benchmarks/cache_quality.py.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from pathlib import Path

from router.cache import Embedded, EmbeddingService, ResponseCache
from router.config import CacheSettings, EmbeddingSettings, Settings
from router.routing.policy import RoutingPolicy
from router.types import ChatRequest, Chunk, Message, SamplingParams, Usage

CORPUS = Path(__file__).parent / "workloads" / "cache_corpus.jsonl"


class MemoEmbeddings(EmbeddingService):
    """The real service, remembering each text's embedding so a sweep embeds it once."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings)
        self.memo: dict[str, Embedded] = {}

    async def embed(self, texts):  # type: ignore[override]
        missing = [t for t in texts if t not in self.memo]
        if missing:
            got = await super().embed(missing)
            for i, t in enumerate(missing):
                self.memo[t] = got.rows(i, i + 1)
        return Embedded.concat([self.memo[t] for t in texts])


def request(prompt: str) -> ChatRequest:
    return ChatRequest(model="auto", messages=[Message("user", prompt)], sampling=SamplingParams(temperature=0.0))


async def answer(answer_text: str):
    yield Chunk(finish_reason="stop", usage=Usage(1, 1))


async def run(embeddings: MemoEmbeddings, groups: list[dict], threshold: float, guard: bool) -> dict:
    # Learning off: this measures the guard and a static threshold (cache_quality.py measures the learned ones).
    settings = CacheSettings(similarity_threshold=threshold, guard=guard, learn=False, candidates=4)
    cache = ResponseCache(settings, embeddings)
    await cache.start()
    policy = RoutingPolicy(Settings())
    decision = policy.decide(request("x"))  # one decision for all: every prompt lands in the same namespace
    for i, group in enumerate(groups):
        lookup = await cache.lookup(request(group["base"]), decision)
        async for _ in cache.recording(Chunk(text=str(i)), answer(str(i)), lookup, "m"):
            pass
    await cache.flush()
    counts: Counter[str] = Counter()
    wrong_kinds: Counter[str] = Counter()
    examples: list[str] = []
    for i, group in enumerate(groups):
        for text in group["paraphrases"]:
            found = await cache.lookup(request(text), decision)
            counts["paraphrases"] += 1
            if found.hit:
                good = found.completion().text == str(i)
                counts["hits"] += 1
                counts["correct" if good else "wrong"] += 1
                if not good:
                    wrong_kinds["paraphrase→other"] += 1
                    examples.append(f"{text!r} → {groups[int(found.completion().text)]['base']!r}")
        for kind, text in group["near_misses"]:
            found = await cache.lookup(request(text), decision)
            counts["near_misses"] += 1
            if found.hit:
                counts["hits"] += 1
                counts["wrong"] += 1
                wrong_kinds[kind] += 1
                examples.append(f"{text!r} → {groups[int(found.completion().text)]['base']!r} ({found.similarity:.3f})")
    await cache.aclose()
    return {
        "threshold": threshold,
        "guard": guard,
        "hit_rate": counts["correct"] / counts["paraphrases"],
        "wrong_hit_rate": counts["wrong"] / counts["hits"] if counts["hits"] else 0.0,
        "hits": counts["hits"],
        "wrong": counts["wrong"],
        "wrong_kinds": dict(wrong_kinds),
        "examples": examples,
        "guard_rejections": cache.stats.guard_rejections,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.8, 0.85, 0.88, 0.9, 0.92, 0.95, 0.97])
    parser.add_argument("--no-unguarded", action="store_true", help="skip the runs without the guard")
    parser.add_argument("--examples", action="store_true", help="print the wrong hits")
    args = parser.parse_args()
    groups = [json.loads(line) for line in args.corpus.read_text().splitlines() if line.strip()]
    n_para = sum(len(g["paraphrases"]) for g in groups)
    n_near = sum(len(g["near_misses"]) for g in groups)
    print(f"corpus: {len(groups)} bases, {n_para} paraphrases, {n_near} near misses (one namespace)")
    embeddings = MemoEmbeddings(Settings().embeddings)
    await embeddings.start()
    header = f"{'threshold':>9} {'guard':>7} {'hit rate':>9} {'hits':>5} {'wrong':>6} {'wrong-hit rate':>15}"
    print(header + "  wrong by kind")
    for guard in [True] + ([] if args.no_unguarded else [False]):
        for threshold in args.thresholds:
            r = await run(embeddings, groups, threshold, guard)
            label = "on" if guard else "off"
            print(
                f"{threshold:9.2f} {label:>7} {r['hit_rate']:9.1%} {r['hits']:5d} {r['wrong']:6d} "
                f"{r['wrong_hit_rate']:15.2%}  {r['wrong_kinds'] or ''}"
            )
            if args.examples:
                for line in r["examples"]:
                    print("          ", line)
    await embeddings.aclose()


if __name__ == "__main__":
    asyncio.run(main())
