"""A GGUF embedding model through llama.cpp, for `embeddings.engine: llamacpp` (see router/cache/embed.py).

Blocking and not thread-safe (llama.cpp's context has no lock): the embedding micro-batcher's single worker
thread is its only caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from router.errors import EngineError


class LlamaCppEmbedder:
    def __init__(self, path: Path, max_tokens: int, threads: int) -> None:
        import llama_cpp

        if not path.is_file():
            raise EngineError(f"embedding model file not found: {path}")
        self._max_tokens = max_tokens
        self._llm = self._load(path, threads, llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED)
        if self._llm.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_NONE:
            # The file declares no pooling (e.g. a chat model): mean-pool its token states like sentence-BERT.
            self._llm.close()
            self._llm = self._load(path, threads, llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        self.dim = int(self._llm.n_embd())
        # The first decode pays for paging in and repacking the weights (seconds): pay it while loading.
        self._llm.embed(["warm-up"])

    def _load(self, path: Path, threads: int, pooling: int) -> Any:
        from llama_cpp import Llama

        try:
            # n_batch bounds the tokens of one text: llama-cpp-python truncates each text to it.
            return Llama(
                model_path=str(path),
                embedding=True,
                n_ctx=self._max_tokens,
                n_batch=self._max_tokens,
                n_ubatch=self._max_tokens,
                n_threads=threads,
                pooling_type=pooling,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"cannot load the GGUF embedding model {path}: {exc}") from None

    def encode(self, texts: list[str]) -> Any:
        from router.cache.embed import Embedded, normalise

        counts = [len(self._llm.tokenize(t.encode("utf-8"))) for t in texts]
        vectors = np.asarray(self._llm.embed(texts, normalize=False, truncate=True), dtype=np.float32)
        return Embedded(
            normalise(vectors.reshape(len(texts), self.dim)),
            [min(n, self._max_tokens) for n in counts],
            [n > self._max_tokens for n in counts],
        )

    def close(self) -> None:
        self._llm.close()
