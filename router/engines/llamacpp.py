"""In-process llama.cpp engine (llama-cpp-python), one request at a time on a dedicated thread.

llama-cpp-python's `Llama` object has no lock, so exactly one worker thread ever touches it; requests wait their
turn on that thread. Tokens reach the event loop through one `call_soon_threadsafe` each, and the worker checks a
cancel flag before every token, so a client that goes away stops generation within one token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from router.config import ModelSettings
from router.engines.base import Capabilities
from router.engines.chat_template import CHATML, ChatTemplate
from router.engines.embedded import default_chat_model
from router.engines.textstream import TextStream
from router.errors import EngineError, InvalidRequest
from router.types import ChatRequest, Chunk, Usage

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(slots=True)
class EngineStats:
    """Counters the tests and metrics read. Written only by the worker thread."""

    started: int = 0
    completed: int = 0
    cancelled: int = 0
    active: int = 0
    tokens_generated: int = 0
    # Tokens sampled after a cancel was requested, for the last cancelled request (must stay ≤ 1).
    last_cancel_overrun: int = 0


@dataclass(slots=True)
class _Job:
    tokens: list[int]
    max_tokens: int
    request: ChatRequest
    grammar: Any
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]
    cancel: threading.Event = field(default_factory=threading.Event)
    sampled: int = 0  # tokens taken from llama.cpp, written by the worker
    sampled_at_cancel: int = -1  # `sampled` when the loop asked to stop, written by the loop


class LlamaCppEngine:
    def __init__(self, settings: ModelSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self.capabilities = Capabilities(chat=True, json_schema=True, context_window=settings.n_ctx)
        self.stats = EngineStats()
        self.model_path = settings.path or str(default_chat_model())
        self._llama: Any = None
        self._template: ChatTemplate | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llamacpp-{self.name}")
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._llama = await loop.run_in_executor(self._worker, self._load)
        template = self.settings.chat_template or self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            log.warning("model %s has no chat template; using ChatML", self.name)
        bos = self._token_text(self._llama.token_bos())
        eos = self._token_text(self._llama.token_eos())
        self._template = ChatTemplate(template or CHATML, bos_token=bos, eos_token=eos)

    def _load(self) -> Any:
        from llama_cpp import Llama  # lazy: the server must import without llama_cpp installed

        if not os.path.isfile(self.model_path):
            raise EngineError(f"model {self.name!r}: GGUF file not found: {self.model_path}")

        s = self.settings
        try:
            return Llama(
                self.model_path,
                n_ctx=s.n_ctx,
                n_threads=s.n_threads,
                n_gpu_layers=s.n_gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"model {self.name!r}: cannot load {self.model_path}: {exc}") from None

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="replace")

    async def health(self) -> bool:
        return self._llama is not None and not self._closed

    async def aclose(self) -> None:
        self._closed = True
        self._worker.shutdown(wait=True, cancel_futures=True)
        self._llama = None

    # -- requests --------------------------------------------------------------------------------------------

    def count_prompt_tokens(self, request: ChatRequest) -> int:
        return len(self._prompt_tokens(request))

    def _prompt_tokens(self, request: ChatRequest) -> list[int]:
        assert self._template is not None, "engine not started"
        try:
            prompt = self._template.render(request.messages)
        except ValueError as exc:  # the template's own raise_exception: e.g. roles out of order
            raise InvalidRequest(
                f"messages rejected by the chat template of {self.name}: {exc}", param="messages"
            ) from None
        return self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def _prepare(self, request: ChatRequest, loop: asyncio.AbstractEventLoop) -> _Job:
        if self._llama is None or self._closed:
            raise EngineError(f"model {self.name!r} is not loaded")
        if request.sampling.logprobs:
            raise InvalidRequest(f"logprobs are not supported by model {self.name!r}", param="logprobs")
        n_ctx = self.settings.n_ctx
        tokens = self._prompt_tokens(request)
        requested = request.sampling.max_tokens
        if len(tokens) >= n_ctx:
            raise InvalidRequest(
                f"This model's maximum context length is {n_ctx} tokens, but the messages use {len(tokens)} tokens.",
                param="messages",
                code="context_length_exceeded",
            )
        if requested is not None and len(tokens) + requested > n_ctx:
            raise InvalidRequest(
                f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                f"{len(tokens) + requested} tokens ({len(tokens)} in the messages, {requested} in max_tokens).",
                param="max_tokens",
                code="context_length_exceeded",
            )
        max_tokens = requested if requested is not None else self.settings.default_max_tokens
        max_tokens = min(max_tokens, n_ctx - len(tokens))
        return _Job(tokens, max_tokens, request, self._grammar(request), loop, asyncio.Queue())

    def _grammar(self, request: ChatRequest) -> Any:
        fmt = request.response_format
        if fmt.type == "text":
            return None
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        if fmt.type == "json_object" or not fmt.json_schema:
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        try:
            return LlamaGrammar.from_json_schema(orjson.dumps(fmt.json_schema).decode(), verbose=False)
        except Exception as exc:  # the converter raises assorted errors on schemas it cannot express
            raise InvalidRequest(
                f"response_format.json_schema cannot be turned into a grammar: {exc}",
                param="response_format.json_schema",
            ) from None

    async def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        job = self._prepare(request, loop)
        future = loop.run_in_executor(self._worker, self._run, job)
        try:
            while True:
                item = await job.queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Client gone, deadline, or normal end: the worker sees the flag before its next token.
            if not future.done():
                job.sampled_at_cancel = job.sampled
                job.cancel.set()
                future.add_done_callback(_consume_exception)

    def _run(self, job: _Job) -> None:
        """Worker thread: generate tokens for one job, handing each delta to the event loop."""
        put = job.queue.put_nowait
        emit = job.loop.call_soon_threadsafe
        stats = self.stats
        if job.cancel.is_set():  # cancelled while waiting for the worker
            emit(put, _DONE)
            return
        stats.started += 1
        stats.active += 1
        llama = self._llama
        import llama_cpp

        is_eog = llama_cpp.llama_vocab_is_eog
        vocab = llama._model.vocab
        sampling = job.request.sampling
        text = TextStream(sampling.stop)
        produced = 0
        finish = "length"
        try:
            llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(31))
            s = self.settings
            tokens = llama.generate(
                job.tokens,
                temp=sampling.temperature,
                top_p=sampling.top_p,
                top_k=s.top_k,
                min_p=s.min_p,
                repeat_penalty=1.0,
                reset=True,  # llama-cpp-python keeps the KV of the longest common prefix with the last prompt
                grammar=job.grammar,
            )
            try:
                for token in tokens:
                    job.sampled += 1
                    if job.cancel.is_set():
                        finish = "cancelled"
                        break
                    produced += 1
                    if is_eog(vocab, token):
                        produced -= 1  # the end-of-turn token is not part of the answer
                        finish = "stop"
                        break
                    delta = text.feed(llama.detokenize([token], special=False))
                    if delta:
                        emit(put, Chunk(text=delta))
                    if text.stopped:
                        finish = "stop"
                        break
                    if produced >= job.max_tokens:
                        break
            finally:
                tokens.close()
            if finish != "cancelled":
                tail = text.flush()
                if tail:
                    emit(put, Chunk(text=tail))
                usage = Usage(prompt_tokens=len(job.tokens), completion_tokens=produced)
                emit(put, Chunk(finish_reason=finish, usage=usage))  # type: ignore[arg-type]
            emit(put, _DONE)
        except Exception as exc:
            log.exception("model %s: generation failed", self.name)
            emit(put, EngineError(f"model {self.name!r}: generation failed: {type(exc).__name__}"))
        finally:
            stats.active -= 1
            stats.tokens_generated += produced
            if finish == "cancelled":
                stats.cancelled += 1
                stats.last_cancel_overrun = job.sampled - max(job.sampled_at_cancel, 0)
            else:
                stats.completed += 1


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
