"""Context compression on a public long-document QA set: tokens saved against what the answer needs.

Data: SQuALITY v1.3 dev (nyu-mll/SQuALITY, CC BY 4.0; stories from Project Gutenberg): 25 science-fiction stories
of ~5,000 words, 4-6 questions each, 4 human reference answers per question (see benchmarks/COMPRESSION_DATA_CARD.md).
Each request is the common long-document shape: one user message, the story, a blank line, the question.

The frontier cannot be reached from here, so answer quality is measured by proxies:
- `words`: of the reference answers' content words that occur in the story, the share still in the context sent;
- `evidence`: each sentence of each reference answer is matched to the story sentence sharing most content words
  with it (at least 3); the share of those evidence sentences that survive verbatim.
The local model's accuracy with full vs compressed context is not reported: SmolLM2-135M cannot read a 6,500-token
story (n_ctx 2048 by default) and its free-form answers to "what is the plot" are not gradable here.

Contenders at each budget, same chunks, same tokenizer (SmolLM2's own), same run: `minilm` (the router:
router/frontier/compression.py with the MiniLM embedder), `lexical` (its fallback ranking by word overlap), `head`
(keep the first chunks: plain truncation), `random` (seeded random chunks). `--summary-n N` also runs strategy
extractive+summary with the real local model on the first N requests at one budget.

    python benchmarks/compression.py                        # the table
    python benchmarks/compression.py --summary-n 4          # plus the abstractive variant
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.cache import EmbeddingService  # noqa: E402
from router.config import DEFAULT_MODEL_NAME, EmbeddingSettings, ModelSettings, Settings  # noqa: E402
from router.frontier.compression import SUMMARY_INSTRUCTIONS, Compressor  # noqa: E402
from router.types import ChatRequest, Completion, Message, SamplingParams  # noqa: E402

MIRROR = Path("/work/.mirror/nyu-mll+SQuALITY/repo")
COMMIT = "dc08d4f574639d773bc64ef3ab3527043108fb4e"
PATH = "data/v1-3/txt/dev.jsonl"
_STOP = (
    "the and for that with was were had his her him she they them their this from have has not but are you what who "
    "how why when where which into out about there then than also its been would could will can did does one all any "
    "more most other some such only own same very just over after before because while story"
)
STOP = set(_STOP.split())


def load(path: str | None) -> list[tuple[str, str, list[str]]]:
    if path:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = subprocess.run(
            ["git", "--git-dir", str(MIRROR), "show", f"{COMMIT}:{PATH}"], capture_output=True, check=True, text=True
        ).stdout
    out = []
    for line in text.splitlines():
        d = json.loads(line)
        doc = d["document"].strip()
        for q in d["questions"]:
            out.append((doc, q["question_text"].strip(), [r["response_text"] for r in q["responses"]]))
    return out


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in STOP}


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])[\"')\]]*\s+", text) if len(s.strip()) > 20]


def evidence(doc: str, answers: list[str]) -> tuple[set[str], set[str]]:
    """(answer content words found in the story, the story sentences that back the answers)."""
    doc_words = words(doc)
    wanted = set().union(*(words(a) for a in answers)) & doc_words
    doc_sents = [(s, words(s)) for s in sentences(doc)]
    backing = set()
    for a in answers:
        for s in sentences(a):
            w = words(s)
            best, shared = max(((d, len(w & dw)) for d, dw in doc_sents), key=lambda x: x[1], default=("", 0))
            if shared >= 3:
                backing.add(best)
    return wanted, backing


class CachedEmbeddings:
    """The real embedding service, each distinct text embedded once (the same story serves 5 questions x 4
    budgets); `misses` counts texts really embedded: a call that embedded a whole story is the latency reported."""

    def __init__(self, service: EmbeddingService) -> None:
        self.service = service
        self.vectors: dict[str, np.ndarray] = {}
        self.misses = 0

    async def embed(self, texts: Sequence[str]):  # type: ignore[no-untyped-def]
        todo = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if todo:
            self.misses += len(todo)
            for t, v in zip(todo, (await self.service.embed(todo)).vectors, strict=True):
                self.vectors[t] = v

        class _Out:
            vectors = np.stack([self.vectors[t] for t in texts])

        return _Out


class Ranked(Compressor):
    """The router's compressor with another ranking of the same chunks (the peers)."""

    def __init__(self, *args, how: str, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.how = how
        self.rng = np.random.default_rng(0)

    async def _scores(self, query: str, texts: list[str], tenant: str | None = None) -> tuple[np.ndarray, str]:
        if self.how == "head":
            return -np.arange(len(texts), dtype=np.float32), "head"
        if self.how == "random":
            return self.rng.random(len(texts)).astype(np.float32), "random"
        if self.how == "lexical":
            embed, self.embed = self.embed, None
            try:
                return await super()._scores(query, texts, tenant)
            finally:
                self.embed = embed
        return await super()._scores(query, texts, tenant)


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", help="a SQuALITY jsonl file (default: the fetched mirror at the recorded commit)")
    ap.add_argument("--budgets", default="1000,2000,4000")
    ap.add_argument("--limit", type=int, default=0, help="first N requests only (0: all)")
    ap.add_argument("--summary-n", type=int, default=0, help="extractive+summary on the first N requests")
    ap.add_argument("--summary-budget", type=int, default=2000)
    ap.add_argument("--warm-n", type=int, default=5, help="stories timed cold, then warm (a second question)")
    args = ap.parse_args()
    items = load(args.data)
    if args.limit:
        items = items[: args.limit]
    targets = [evidence(doc, answers) for doc, _, answers in items]
    real = EmbeddingService(EmbeddingSettings())
    await real.start()
    service = CachedEmbeddings(real)
    model = ModelSettings(name=DEFAULT_MODEL_NAME)

    def compressor(budget: int, how: str, strategy: str = "extractive", summarise=None) -> Ranked:  # type: ignore[no-untyped-def]
        s = Settings.model_validate(
            {
                "frontier": {
                    "compression": {
                        "budget_tokens": budget,
                        "min_tokens": min(1000, budget),
                        "chunk_tokens": 200,
                        "keep_first": 1,
                        "strategy": strategy,
                    }
                }
            }
        )
        c = Ranked(s.frontier.compression, counter, summarise=summarise, how=how)
        c.embed_with(service)
        return c

    from router.frontier.compress_tokens import counter_for

    counter = counter_for(model)

    async def run(c: Compressor, subset: Sequence[int]) -> dict[str, float]:
        before, after, secs, kept_words, kept_sents, specific = [], [], [], [], [], []
        for i in subset:
            doc, question, _ = items[i]
            request = ChatRequest(model="m", messages=[Message("user", f"{doc}\n\n{question}")])
            misses = service.misses
            out, report = await c.compress(request)
            cold = service.misses > misses + 1 or getattr(c, "how", "") != "minilm" or c.summarise is not None
            if report and cold:
                secs.append(report.seconds)  # MiniLM: only calls that really embedded (not the benchmark's cache)
            sent = out.messages[0].content
            if c.summarise is not None and i == subset[0] and "in short: " in sent:  # one sample, to judge by eye
                print("  sample summary:", sent[sent.index("in short: ") :][:300].replace("\n", " "))
            n = c.prompt_tokens(request.messages)
            before.append(n)
            after.append(report.tokens_after if report else n)
            wanted, backing = targets[i]
            kept_words.append(len(wanted & words(sent)) / max(1, len(wanted)))
            kept_sents.append(sum(s in sent for s in backing) / max(1, len(backing)))
            if not question.lower().startswith("what is the plot"):
                specific.append(kept_sents[-1])
        return {
            "before": statistics.mean(before),
            "after": statistics.mean(after),
            "saved": 1 - sum(after) / sum(before),
            "words": statistics.mean(kept_words),
            "evidence": statistics.mean(kept_sents),
            "specific": statistics.mean(specific) if specific else float("nan"),
            "p50_ms": pct(secs, 50) * 1000,
            "p95_ms": pct(secs, 95) * 1000,
        }

    everything = range(len(items))
    print(f"{len(items)} requests (SQuALITY v1.3 dev @ {COMMIT[:7]}), SmolLM2 tokenizer, chunk_tokens 200\n")
    print(
        "| budget | ranking | tokens before | tokens after | saved | answer words kept | evidence sentences kept "
        "| evidence, specific questions | compress p50 ms | p95 ms |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    full = await run(compressor(10**7, "minilm"), everything)
    print(
        f"| none | full story | {full['before']:.0f} | {full['after']:.0f} | 0% | {full['words']:.1%} "
        f"| {full['evidence']:.1%} | {full['specific']:.1%} | – | – |"
    )
    for budget in (int(b) for b in args.budgets.split(",")):
        for how in ("minilm", "lexical", "head", "random"):
            r = await run(compressor(budget, how), everything)
            print(
                f"| {budget} | {how} | {r['before']:.0f} | {r['after']:.0f} | {r['saved']:.0%} | {r['words']:.1%} "
                f"| {r['evidence']:.1%} | {r['specific']:.1%} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} |"
            )
    await warm_vs_cold(items, real, counter, args.warm_n)
    if args.summary_n:
        await summaries(args, model, compressor, run)
    await real.aclose()


async def warm_vs_cold(items, service, counter, n: int) -> None:  # type: ignore[no-untyped-def]
    """The router's own chunk-vector memory: a story's first question embeds it, a second one only the question."""
    s = Settings.model_validate({"frontier": {"compression": {"budget_tokens": 2000}}})
    c = Compressor(s.frontier.compression, counter)
    c.embed_with(service)
    stories: dict[str, list[str]] = {}
    for doc, question, _ in items:
        stories.setdefault(doc, []).append(question)
    cold, warm = [], []
    for doc, questions in list(stories.items())[:n]:
        for q, times in zip(questions[:2], (cold, warm), strict=False):
            _, report = await c.compress(ChatRequest(model="m", messages=[Message("user", f"{doc}\n\n{q}")]))
            times.append(report.seconds * 1000 if report else 0.0)
    if cold and warm:
        print(
            f"\nbudget 2000, {len(cold)} stories, the router's chunk-vector memory: first question p50 "
            f"{statistics.median(cold):.0f} ms, second question on the same story p50 {statistics.median(warm):.0f} "
            f"ms ({statistics.median(cold) / max(statistics.median(warm), 1e-9):.0f}x)"
        )


async def summaries(args, model, compressor, run) -> None:  # type: ignore[no-untyped-def]
    from router.engines.llamacpp_batched import BatchedLlamaCppEngine

    engine = BatchedLlamaCppEngine(model)
    await engine.start()

    async def summarise(text: str, max_tokens: int) -> str:
        request = ChatRequest(
            model=model.name,
            messages=[Message("system", SUMMARY_INSTRUCTIONS), Message("user", text)],
            sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens),
        )
        return (await Completion.gather(engine.generate(request))).text

    subset = range(args.summary_n)
    b = args.summary_budget
    print(f"\nAbstractive variant, first {args.summary_n} requests, budget {b} (local SmolLM2 summaries, 64 tokens):\n")
    print("| strategy | tokens after | answer words kept | evidence sentences kept | compress p50 ms | p95 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, c in (
        ("extractive", compressor(b, "minilm")),
        ("extractive+summary", compressor(b, "minilm", "extractive+summary", summarise)),
    ):
        r = await run(c, subset)
        print(
            f"| {name} | {r['after']:.0f} | {r['words']:.1%} | {r['evidence']:.1%} | {r['p50_ms']:.0f} "
            f"| {r['p95_ms']:.0f} |"
        )
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
