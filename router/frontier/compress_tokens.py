"""Token counts for context compression, with the local model's own tokenizer.

A llama.cpp model's vocabulary is loaded on its own (`vocab_only`: no weights, no context, a few MB) inside the
router process, so counting a document's pieces costs no round trip to the engine worker and never waits behind
decoding. Other local engines (vLLM, an OpenAI-compatible server) count by the router's documented estimate
(router/tokens.py); `name` says which, and the compression report carries it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from router.config import ModelSettings
from router.fastpath import estimate_tokens


class TokenCounter(Protocol):
    name: str

    def count(self, texts: Sequence[str]) -> list[int]: ...


class EstimateCounter:
    """The router's heuristic (one token per short word, more for long ones): for engines without a GGUF here."""

    name = "estimate"

    def count(self, texts: Sequence[str]) -> list[int]:
        return [estimate_tokens(t) for t in texts]


class GgufCounter:
    """Counts with a GGUF model's vocabulary, loaded once on first use (vocab only: no weights, no context)."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self._vocab: Any = None
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        import llama_cpp as L
        from llama_cpp._logger import set_verbose

        with self._lock:
            if self._vocab is None:
                set_verbose(False)
                L.llama_backend_init()  # idempotent; the engine may run in another process
                params = L.llama_model_default_params()
                params.vocab_only = True
                model = L.llama_model_load_from_file(self.path.encode(), params)
                if not model:
                    raise RuntimeError(f"cannot read the vocabulary of {self.path}")
                self._model, self._vocab = model, L.llama_model_get_vocab(model)
        return self._vocab

    def tokenize(self, text: str) -> list[int]:
        import llama_cpp as L

        vocab = self._vocab or self._load()
        data = text.encode("utf-8")
        cap = len(data) + 4  # a token is at least one byte
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(vocab, data, len(data), buf, cap, False, False)  # no BOS, special tokens as text
        return buf[:n] if n >= 0 else []

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(self.tokenize(t)) if t else 0 for t in texts]


def counter_for(model: ModelSettings) -> TokenCounter:
    """The local model's own tokenizer where the router can load it, else the estimate."""
    if model.engine != "llamacpp":
        return EstimateCounter()
    from router.engines.embedded import default_chat_model

    return GgufCounter(model.path or str(default_chat_model()), model.name)
