"""Context compression before a frontier call: a long document is cut down to the passages the question needs.

The common long request is one document plus a question. When a frontier-bound prompt is over
`compression.budget_tokens` (counted with the local model's own tokenizer, router/frontier/compress_tokens.py):

1. Every user or system message of at least `min_tokens` is a document. In the last user message only the part
   before its final paragraph is: that paragraph is the question, and stays verbatim. Tool results, assistant
   turns, code blocks and headings are never cut.
2. Each document is cut into chunks of about `chunk_tokens` (router/frontier/compress_split.py).
3. The chunks and the question are embedded with the router's MiniLM model (the one behind the semantic cache);
   the chunks most similar to the question are kept, plus the first `keep_first` of each document, in their
   original order, until the prompt fits the budget. Each run of dropped chunks becomes "[… N tokens omitted …]".
   Without the embedding model (disabled or still loading) chunks are ranked by word overlap instead.
4. strategy `extractive+summary` also asks the local model for a summary of each omitted run (off by default: on
   the benchmark in benchmarks/RESULTS.md the small local model's summaries were not good enough).

The answer says what was done: `x-router-compressed: BEFORE->AFTER tokens` and `x-router-compression`
(strategy, chunks kept, tokenizer, scorer); /metrics counts requests, tokens before/after and the time taken.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from router.config import CompressionSettings, Settings
from router.errors import RouterError
from router.frontier.compress_split import Chunk, chunk
from router.frontier.compress_tokens import EstimateCounter, TokenCounter, counter_for
from router.types import ChatRequest, Message

SUMMARY_INSTRUCTIONS = (
    "Summarise the following passage in one or two sentences. Keep names, numbers and dates. "
    "Reply with the summary only."
)
PER_MESSAGE = 4  # chat-template tokens around each message (SmolLM2's: <|im_start|>role\n … <|im_end|>\n)
MARKER_TOKENS = 12  # what one "[… N tokens omitted …]" costs, charged per kept chunk (each may open a gap)
CACHED_VECTORS = 8192  # chunk vectors kept (384 float32 each: 12 MiB)
SUMMARY_INPUT_TOKENS = 1200  # a summarised run is read up to here: the local model's window is small

log = logging.getLogger(__name__)

Summarise = Callable[[str, int], Awaitable[str]]
Embed = Callable[[Sequence[str]], Awaitable[np.ndarray]]


def omitted(n: int) -> str:
    return f"[… {n} tokens omitted …]"


@dataclass(slots=True)
class Report:
    """What compression did to one request (headers, metrics, benchmark)."""

    tokens_before: int
    tokens_after: int
    chunks_kept: int
    chunks_total: int
    strategy: str
    tokenizer: str
    scorer: str
    seconds: float

    def headers(self) -> dict[str, str]:
        return {
            "x-router-compressed": f"{self.tokens_before}->{self.tokens_after} tokens",
            "x-router-compression": f"{self.strategy}; chunks {self.chunks_kept}/{self.chunks_total}; "
            f"tokenizer {self.tokenizer}; scorer {self.scorer}",
        }


@dataclass(slots=True)
class _Document:
    index: int  # message index
    chunks: list[Chunk]
    tail: str  # the question kept verbatim after the document ("" unless it is the last user message)


@dataclass(slots=True)
class _Plan:
    documents: list[_Document]
    query: str
    room: int  # tokens the scored chunks may use
    before: int


def split_question(text: str) -> tuple[str, str]:
    """(document, question): the question is the final paragraph, or the final sentence of a single paragraph."""
    body = text.rstrip()
    cut = body.rfind("\n\n")
    if cut <= 0:
        sentences = list(re.finditer(r"[.!?…][\"')\]]*\s+", body))
        if not sentences:
            return "", text
        cut = sentences[-1].end()
        return text[:cut], text[cut:]
    return text[: cut + 2], text[cut + 2 :]


def _lexical(query: str, texts: Sequence[str]) -> np.ndarray:
    """Word-overlap score (no embedding model): shared distinct words over the root of the chunk's word count."""
    words = set(re.findall(r"\w{3,}", query.lower()))
    scores = []
    for t in texts:
        mine = re.findall(r"\w{3,}", t.lower())
        scores.append(len(words & set(mine)) / math.sqrt(len(mine) + 1))
    return np.asarray(scores, dtype=np.float32)


class Compressor:
    def __init__(
        self,
        settings: CompressionSettings,
        counter: TokenCounter,
        embed: Embed | None = None,
        summarise: Summarise | None = None,
        metrics: Any = None,
    ) -> None:
        self.settings = settings
        self.counter = counter
        self.embed = embed
        self.summarise = summarise
        self._metrics = _Metrics(metrics) if metrics is not None else None
        # Chunk vectors by (tenant, text): the same document asked about again is not embedded again. Per tenant,
        # so that not even the timing tells one tenant what another sent.
        self.embedded_chunks = 0  # chunks embedded so far (the others came from the vectors kept)
        self._vectors: OrderedDict[tuple[str | None, bytes], np.ndarray] = OrderedDict()

    @classmethod
    def build(
        cls, settings: Settings, local_model: str, summarise: Summarise | None, metrics: Any = None
    ) -> Compressor:
        """The pipeline's compressor, counting with the local model's tokenizer (see `embed_with`)."""
        model = next(m for m in settings.models if m.name == local_model)
        return cls(settings.frontier.compression, counter_for(model), None, summarise, metrics)

    def embed_with(self, embeddings: Any) -> None:
        """Rank chunks with the app's embedding service (router/cache/embed.py); None: by word overlap."""
        if embeddings is None:
            self.embed = None
            return

        async def embed(texts: Sequence[str]) -> np.ndarray:
            return (await embeddings.embed(texts)).vectors

        self.embed = embed

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return sum(self.counter.count([m.content for m in messages])) + PER_MESSAGE * len(messages)

    async def compress(self, request: ChatRequest) -> tuple[ChatRequest, Report | None]:
        """The request to send, and a report when it was shortened."""
        if not self.settings.enabled:
            return request, None
        started = time.perf_counter()
        try:
            plan = await asyncio.to_thread(self._plan, request.messages)
        except (OSError, RuntimeError) as exc:  # the model's vocabulary cannot be read: count by the estimate
            log.warning("compression: %s; counting tokens by the estimate from now on", exc)
            self.counter = EstimateCounter()
            plan = await asyncio.to_thread(self._plan, request.messages)
        if plan is None:
            self._count("untouched")
            return request, None
        candidates = [c for d in plan.documents for c in d.chunks if not c.pinned]
        scores, scorer = await self._scores(plan.query, [c.text for c in candidates], request.tenant)
        kept = _select(candidates, scores, plan.room)
        layouts = [_layout(d, kept) for d in plan.documents]
        gaps = [g for layout in layouts for g in layout if type(g) is list]
        summaries: dict[int, str] = {}
        strategy = "extractive"
        if self.settings.strategy == "extractive+summary" and self.summarise is not None and gaps:
            summaries = await self._summaries(gaps)
            strategy = "extractive+summary" if summaries else "extractive"
        messages = list(request.messages)
        for d, layout in zip(plan.documents, layouts, strict=True):
            content = "".join(_render(part, summaries) for part in layout) + d.tail
            messages[d.index] = replace(messages[d.index], content=content)
        after = await asyncio.to_thread(self.prompt_tokens, messages)
        report = Report(
            plan.before,
            after,
            len(kept) + sum(c.pinned for d in plan.documents for c in d.chunks),
            sum(len(d.chunks) for d in plan.documents),
            strategy,
            self.counter.name,
            scorer,
            time.perf_counter() - started,
        )
        if self._metrics is not None:
            self._metrics.record(report)
        return replace(request, messages=messages), report

    # -- steps -----------------------------------------------------------------------------------------------

    def _plan(self, messages: Sequence[Message]) -> _Plan | None:
        """Runs in a thread: counting a long document is CPU work."""
        s = self.settings
        sizes = self.counter.count([m.content for m in messages])
        before = sum(sizes) + PER_MESSAGE * len(messages)
        if before <= s.budget_tokens:
            return None
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        query = messages[last_user].content if last_user >= 0 else ""
        documents: list[_Document] = []
        for i, m in enumerate(messages):
            if m.role not in ("user", "system") or m.tool_calls or sizes[i] < s.min_tokens:
                continue
            text, tail = m.content, ""
            if i == last_user:
                text, tail = split_question(m.content)
                query = tail
                if self.counter.count([text])[0] < s.min_tokens:
                    continue
            chunks = chunk(text, s.chunk_tokens, self.counter.count)
            lead = 0
            for c in chunks:  # the first chunks of prose (title, abstract) stay
                if lead >= s.keep_first:
                    break
                if not c.pinned and c.text.strip():
                    c.pinned, lead = True, lead + 1
            documents.append(_Document(i, chunks, tail))
        if not documents:
            return None  # over budget, but nothing we may cut (short turns, tool results, code)
        in_documents = sum(c.tokens for d in documents for c in d.chunks)
        pinned = sum(c.tokens + MARKER_TOKENS for d in documents for c in d.chunks if c.pinned)
        room = s.budget_tokens - (before - in_documents) - pinned
        return _Plan(documents, query[-4000:], room, before)

    async def _scores(self, query: str, texts: list[str], tenant: str | None = None) -> tuple[np.ndarray, str]:
        if not texts:
            return np.zeros(0, dtype=np.float32), "none"
        if self.embed is not None:
            keys = [(tenant, hashlib.blake2b(t.encode(), digest_size=16).digest()) for t in texts]
            todo = list(dict.fromkeys(i for i, k in enumerate(keys) if k not in self._vectors))
            try:
                vectors = await self.embed([query, *(texts[i] for i in todo)])
            except RouterError:  # the embedding model is loading or failed: rank by words rather than not at all
                pass
            else:
                for i, v in zip(todo, vectors[1:], strict=True):
                    self._vectors[keys[i]] = v
                chunks = np.stack([self._vectors[k] for k in keys])
                for k in keys:
                    self._vectors.move_to_end(k)
                while len(self._vectors) > CACHED_VECTORS:
                    self._vectors.popitem(last=False)
                self.embedded_chunks += len(todo)
                return chunks @ vectors[0], "minilm"
        return await asyncio.to_thread(_lexical, query, texts), "lexical"

    async def _summaries(self, gaps: list[list[Chunk]]) -> dict[int, str]:
        """The local model's summary of each omitted run (by id of the run); a failed one is left out."""
        assert self.summarise is not None
        limit = self.settings.summary_max_tokens

        async def one(gap: list[Chunk]) -> str | None:
            text, n = "", 0
            for c in gap:  # read the run's start only: the local model's window is small
                if n + c.tokens > SUMMARY_INPUT_TOKENS and text:
                    break
                text, n = text + c.text, n + c.tokens
            try:
                return (await self.summarise(text, limit)).strip() or None
            except RouterError:
                return None

        done = await asyncio.gather(*(one(g) for g in gaps))
        return {id(g): s for g, s in zip(gaps, done, strict=True) if s}

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.requests.labels(outcome).inc()


def _layout(document: _Document, kept: set[int]) -> list[str | list[Chunk]]:
    """The document as kept texts and runs of omitted chunks, in order."""
    out: list[str | list[Chunk]] = []
    for c in document.chunks:
        if c.pinned or id(c) in kept:
            out.append(c.text)
        elif out and type(out[-1]) is list:
            out[-1].append(c)  # type: ignore[union-attr]
        else:
            out.append([c])
    return out


def _render(part: str | list[Chunk], summaries: dict[int, str]) -> str:
    if type(part) is str:
        return part
    n = sum(c.tokens for c in part)  # type: ignore[union-attr]
    summary = summaries.get(id(part))
    if summary:
        return f"[… {n} tokens omitted; in short: {summary} …]\n\n"
    return omitted(n) + "\n\n"


def _select(candidates: list[Chunk], scores: np.ndarray, room: int) -> set[int]:
    """ids of the best-scoring chunks that fit `room`, each charged its tokens and one marker."""
    kept: set[int] = set()
    for i in np.argsort(-scores, kind="stable"):
        c = candidates[int(i)]
        cost = c.tokens + MARKER_TOKENS
        if cost <= room:
            kept.add(id(c))
            room -= cost
    return kept


class _Metrics:
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "router_compression_requests",
            "Frontier-bound requests by compression outcome (compressed, untouched)",
            ["outcome"],
            registry=registry,
        )
        self.tokens = Counter(
            "router_compression_tokens", "Prompt tokens of compressed requests", ["stage"], registry=registry
        )
        self.seconds = Histogram(
            "router_compression_seconds",
            "Time to compress one request (count, chunk, embed, select)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )

    def record(self, report: Report) -> None:
        self.requests.labels("compressed").inc()
        self.tokens.labels("before").inc(report.tokens_before)
        self.tokens.labels("after").inc(report.tokens_after)
        self.seconds.observe(report.seconds)
