"""In-process llama.cpp with continuous batching (llama-cpp-python's low-level API).

One worker thread owns the llama.cpp context and runs the decode loop. Between two `llama_decode` calls it admits
newcomers into free slots (one KV sequence each); every call then carries one token for each generating sequence
plus prompt chunks of the newcomers, so a long prompt never stalls the others. Each sequence is sampled with its
own sampler chain (temperature, top-p, seed, grammar), and its tokens reach the event loop as soon as they are
sampled: one `call_soon_threadsafe` per step for all sequences, then one queue put per token.

Cancellation (client gone, deadline) sets a flag the worker reads before and after every step: the sequence's KV
is dropped and its slot handed to the next waiting request within one step. Admission is bounded (see
`router.engines.admission`): past the queue bounds a request is refused at once with Retry-After.

KV layout: one KV stream per sequence (`kv_unified=False`). A sequence then attends only to its own cells, which
makes its numbers independent of what else is in the batch: a greedy answer is the same alone or among 15
others. (A unified cache computes attention over all sequences' cells with a mask, and the summation order then
depends on the neighbours.) llama.cpp groups consecutive sequence ids into one micro-batch, so a newcomer takes
the lowest free slot.

Prefix reuse (`prefix_reuse: true`): the KV of the prompt up to where the first user message begins (system
prompt and template preamble) is kept in spare streams and copied into a newcomer's sequence instead of being
recomputed. A cross-stream copy moves the whole stream buffer, so it pays only when that prefix is long enough;
see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import ctypes
import heapq
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from router.config import ModelSettings
from router.engines.admission import Admission
from router.engines.base import Capabilities
from router.engines.chat_template import CHATML, ChatTemplate
from router.engines.cpu import CpuPlan
from router.engines.cpu import detect as detect_cpu
from router.engines.embedded import default_chat_model
from router.engines.llamacpp_jobs import DONE, UNSEEN, BatchedStats, Job, Prefix, Slot, post
from router.engines.llamacpp_prompt import PromptMixin
from router.engines.llamacpp_threads import ThreadTuner, thread_candidates, usable_cores
from router.engines.requantize import requantized
from router.errors import EngineError, Timeout
from router.types import ChatRequest, Chunk, Usage

log = logging.getLogger(__name__)

_BATCH_TOKENS = 512  # tokens per llama_decode: all generating sequences first, prompt chunks fill the rest
_PREFIX_STREAMS = 2  # spare KV streams holding shared prompt prefixes (prefix_reuse only)
_OFF_LOOP_CHARS = 8192  # prompts longer than this are rendered and tokenised in a thread, not on the event loop

_backend_lock = threading.Lock()
_backend_ready = False


class BatchedLlamaCppEngine(PromptMixin):
    def __init__(self, settings: ModelSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self.capabilities = Capabilities(chat=True, json_schema=True, logprobs=True, context_window=settings.n_ctx)
        self.stats = BatchedStats()
        self.model_path = settings.path or str(default_chat_model())
        self.loaded_path = self.model_path  # the file really loaded (a requantised copy, see _weights_file)
        self._admission: Admission[Job] = Admission(
            settings.n_parallel, settings.max_queue_requests, settings.max_queue_tokens, self.stats
        )
        self._n_slots = settings.n_parallel
        self._prefix_streams = min(_PREFIX_STREAMS, 256 - self._n_slots) if settings.prefix_reuse else 0
        self._model: Any = None
        self._ctx: Any = None
        self._vocab: Any = None
        self._n_vocab = 0
        self._template: ChatTemplate | None = None
        self._prefix_text: dict[tuple[str, ...], str | None] = {}  # system prompts → rendered preamble
        self._thread: threading.Thread | None = None
        self._closed = False
        self.cpu: CpuPlan | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._work, name=f"llamacpp-batched-{self.name}", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        import llama_cpp as L  # lazy: the server must import without llama_cpp installed
        from llama_cpp._logger import set_verbose

        if not os.path.isfile(self.model_path):
            raise EngineError(f"model {self.name!r}: GGUF file not found: {self.model_path}")
        global _backend_ready
        with _backend_lock:
            if not _backend_ready:
                set_verbose(False)  # llama.cpp logs every tensor at load otherwise
                L.llama_backend_init()
                _backend_ready = True
        s = self.settings
        self.cpu = detect_cpu(L.llama_print_system_info().decode("utf-8", "replace"), s.allow_amx)
        if self.cpu.refusal:
            raise EngineError(f"model {self.name!r}: {self.cpu.refusal}")
        log.info("model %s: %s", self.name, self.cpu.line())
        for note in self.cpu.notes:
            log.info("model %s: %s", self.name, note)
        mparams = L.llama_model_default_params()
        mparams.n_gpu_layers = s.n_gpu_layers
        mparams.use_extra_bufts = self.cpu.use_extra_bufts
        self.loaded_path = self._weights_file()
        model = L.llama_model_load_from_file(self.loaded_path.encode(), mparams)
        if not model:
            raise EngineError(f"model {self.name!r}: cannot load {self.loaded_path}")
        n_seq = self._n_slots + self._prefix_streams
        # A configured count is used as is; otherwise the engine measures which count decodes faster, as it serves.
        self._tuner = ThreadTuner((s.n_threads,) if s.n_threads else thread_candidates(usable_cores()))
        threads = self.stats.threads = self._tuner.threads
        cparams = L.llama_context_default_params()
        cparams.n_ctx = s.n_ctx * n_seq  # split into one stream of n_ctx per sequence
        cparams.n_batch = _BATCH_TOKENS
        cparams.n_ubatch = _BATCH_TOKENS
        cparams.n_seq_max = n_seq
        cparams.kv_unified = False
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.no_perf = True
        ctx = L.llama_init_from_model(model, cparams)
        if not ctx:
            L.llama_model_free(model)
            raise EngineError(f"model {self.name!r}: cannot create a context of {s.n_ctx} x {n_seq} tokens")
        self._model, self._ctx = model, ctx
        self._vocab = L.llama_model_get_vocab(model)
        self._n_vocab = L.llama_vocab_n_tokens(self._vocab)
        raw = L.llama_model_chat_template(model, None)
        template = s.chat_template or (raw.decode() if raw else None)
        if not template:
            log.warning("model %s has no chat template; using ChatML", self.name)
        bos = self._special_text(L.llama_vocab_bos(self._vocab))
        eos = self._special_text(L.llama_vocab_eos(self._vocab))
        self._template = ChatTemplate(template or CHATML, bos_token=bos, eos_token=eos)

    def _weights_file(self) -> str:
        """The file to load: the configured one, or its requantisation (falls back to the file itself)."""
        fmt = self.settings.requantize
        if fmt == "auto":
            fmt = "Q8_0" if self.settings.path is None else "none"
        if fmt == "none":
            return self.model_path
        try:
            return requantized(self.model_path, fmt)
        except OSError as exc:  # a read-only cache, a full disk: serve the file as shipped
            log.warning("model %s: serving %s as shipped: %s", self.name, self.model_path, exc)
            return self.model_path

    def _special_text(self, token: int) -> str:
        import llama_cpp as L

        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    async def health(self) -> bool:
        return self._ctx is not None and not self._closed and self._thread is not None and self._thread.is_alive()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for job in self._admission.close():  # never got a slot
            self._free_sampler(job)
            job.queue.put_nowait(EngineError(f"model {self.name!r} is shutting down"))
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        else:
            self._free_model()

    def _free_model(self) -> None:
        import llama_cpp as L

        if self._ctx is not None:
            L.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            L.llama_model_free(self._model)
            self._model = None

    # -- requests (event loop) -------------------------------------------------------------------------------

    async def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        # A bad request raises here, before anything is queued. Template rendering, tokenisation and grammar
        # compilation are native or pure-Python work proportional to the body: big ones go to a thread.
        if request.response_format.type != "text" or sum(len(m.content) for m in request.messages) > _OFF_LOOP_CHARS:
            job = await asyncio.to_thread(self._prepare, request, loop)
        else:
            job = self._prepare(request, loop)
        try:
            self._admission.offer(job, len(job.tokens))
        except BaseException:
            self._free_sampler(job)
            raise
        timer = loop.call_at(request.deadline, self._expire, job) if request.deadline is not None else None
        get = job.queue.get
        try:
            while True:
                item = await get()
                if type(item) is Chunk:
                    yield item
                elif item is DONE:
                    job.ended = True
                    return
                else:
                    raise item
        finally:
            if timer is not None:
                timer.cancel()
            if not job.ended:
                self._abandon(job)

    def _abandon(self, job: Job, expired: bool = False) -> bool:
        """The consumer is gone or out of time: drop the job from the queue (True), or tell the worker to stop it."""
        job.ended = True
        if self._admission.withdraw(job, expired=expired):
            self._free_sampler(job)  # the worker never saw it
            return True
        if not job.cancelled:
            job.sampled_at_cancel = job.sampled
            job.cancelled = True
        return False

    def _expire(self, job: Job) -> None:
        if job.ended:
            return
        queued = self._abandon(job, expired=True)
        where = "while waiting for a free slot" if queued else "while generating"
        job.queue.put_nowait(Timeout(f"the request's deadline passed {where}"))

    # -- decode loop (worker thread) -------------------------------------------------------------------------

    def _work(self) -> None:
        import llama_cpp as L

        self._L = L
        self._mem = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(_BATCH_TOKENS, 0, 1)
        self._slots = [Slot(seq) for seq in range(self._n_slots)]
        self._free_seqs = list(range(self._n_slots))  # a heap: newcomers take the lowest free id
        self._running: list[Slot] = []  # in admission order (prefill is first come, first served)
        self._prefixes: OrderedDict[tuple[int, ...], Prefix] = OrderedDict()
        self._spare = list(range(self._n_slots, self._n_slots + self._prefix_streams))
        self._pieces: dict[int, bytes | None] = {}
        self._outbox: list[tuple[Job, Any]] = []
        # Scratch candidate arrays for grammar-constrained sampling: one token, and the whole vocabulary.
        self._one = (L.llama_token_data * 1)()
        self._one_arr = L.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._cand = np.zeros(
            self._n_vocab, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
        )
        self._cand_ids = np.arange(self._n_vocab, dtype=np.intc)
        self._cand_arr = L.llama_token_data_array(
            data=self._cand.ctypes.data_as(L.llama_token_data_p), size=self._n_vocab, selected=-1, sorted=False
        )
        try:
            while True:
                granted = self._admission.take(block=not self._running)
                if granted is None:
                    break
                for job in granted:
                    self._begin(job)
                self._reap()
                if self._running:
                    try:
                        self._step()
                    except Exception:
                        log.exception("model %s: decode step failed", self.name)
                        for slot in self._running:
                            self._finish(slot, "error")
                        self._prune()
                self._flush()
        finally:
            for slot in self._running:
                self._finish(slot, "error", f"model {self.name!r} is shutting down")
            self._flush()
            L.llama_batch_free(self._batch)
            self._free_model()

    def _begin(self, job: Job) -> None:
        if job.cancelled:
            self._free_sampler(job)
            self._admission.release()
            return
        slot = self._slots[heapq.heappop(self._free_seqs)]
        slot.job, slot.todo, slot.pos, slot.produced, slot.out = job, job.tokens, 0, 0, -1
        slot.since = time.monotonic()
        if job.prefix:
            hit = self._prefixes.get(tuple(job.tokens[: job.prefix]))
            if hit is not None:
                self._prefixes.move_to_end(tuple(job.tokens[: job.prefix]))
                self._L.llama_memory_seq_cp(self._mem, hit.seq, slot.seq, -1, -1)  # runs before the next decode
                slot.pos = hit.tokens
                slot.todo = job.tokens[hit.tokens :]
                self.stats.prefix_hits += 1
                self.stats.prefix_tokens_reused += hit.tokens
        self._running.append(slot)
        self.stats.started += 1
        self.stats.active = len(self._running)

    def _reap(self) -> None:
        for slot in self._running:
            if slot.job is not None and slot.job.cancelled:
                self._finish(slot, "cancelled")
        self._prune()

    def _prune(self) -> None:
        self._running = [s for s in self._running if s.job is not None]
        self.stats.active = len(self._running)

    def _step(self) -> None:
        L = self._L
        batch = self._batch
        token, pos, n_seq_id, seq_id, logits = batch.token, batch.pos, batch.n_seq_id, batch.seq_id, batch.logits
        # Prompt budget, first come first served, after one token for every generating sequence.
        budget = _BATCH_TOKENS - sum(1 for s in self._running if not s.todo)
        quota: dict[int, int] = {}
        for slot in self._running:
            if slot.todo and budget > 0:
                quota[slot.seq] = take = min(budget, len(slot.todo))
                budget -= take
        # Tokens go in ascending sequence order: llama.cpp puts runs of consecutive ids in one micro-batch.
        n = 0
        prefilled: list[Slot] = []
        for slot in self._slots:
            if slot.job is None:
                continue
            seq = slot.seq
            if not slot.todo:
                token[n], pos[n], n_seq_id[n], logits[n] = slot.last, slot.pos, 1, 1
                seq_id[n][0] = seq
                slot.out = n
                slot.pos += 1
                n += 1
                continue
            take = quota.get(seq, 0)
            if not take:
                slot.out = -1
                continue
            chunk, slot.todo = slot.todo[:take], slot.todo[take:]
            p = slot.pos
            for t in chunk:
                token[n], pos[n], n_seq_id[n], logits[n] = t, p, 1, 0
                seq_id[n][0] = seq
                n += 1
                p += 1
            slot.pos = p
            self.stats.prompt_tokens_computed += take
            if slot.todo:
                slot.out = -1
            else:
                logits[n - 1] = 1
                slot.out = n - 1
                prefilled.append(slot)
        batch.n_tokens = n
        started = time.perf_counter()
        rc = L.llama_decode(self._ctx, batch)
        self.stats.steps += 1
        if rc != 0:
            raise EngineError(f"llama_decode returned {rc}")
        prompt_tokens = sum(quota.values())
        self._tune(time.perf_counter() - started, n - prompt_tokens, prompt_tokens)
        for slot in prefilled:
            self._remember_prefix(slot)
        self._sample()

    def _tune(self, seconds: float, decoded: int, prompt_tokens: int) -> None:
        tuner = self._tuner
        tuner.observe(seconds, decoded, prompt_tokens)
        if tuner.threads != self.stats.threads:
            self._L.llama_set_n_threads(self._ctx, tuner.threads, tuner.threads)
            self.stats.threads = tuner.threads
        if tuner.switches != self.stats.thread_switches:
            self.stats.thread_switches = tuner.switches
            log.info("model %s: decoding with %d threads now (%s)", self.name, tuner.threads, tuner.summary())

    def _sample(self) -> None:
        L = self._L
        ctx = self._ctx
        sample = L.llama_sampler_sample
        pieces = self._pieces
        outbox = self._outbox
        for slot in self._running:
            if slot.out < 0:
                continue
            job = slot.job
            assert job is not None
            tok = sample(job.sampler, ctx, slot.out)
            if job.grammar is not None:
                tok = self._constrain(job, slot.out, tok)
            job.sampled += 1
            if job.cancelled:
                self._finish(slot, "cancelled")
                continue
            piece = pieces.get(tok, UNSEEN)
            if piece is UNSEEN:
                piece = pieces[tok] = self._piece(tok)
            if piece is None:  # end of generation: not part of the answer
                self._finish(slot, "stop")
                continue
            slot.produced += 1
            text = job.text
            delta = text.feed(piece)
            if job.logprobs:
                outbox.append((job, Chunk(text=delta, logprob=self._logprob(slot.out, tok))))
            elif delta:
                outbox.append((job, Chunk(text=delta)))
            if text.stopped:
                self._finish(slot, "stop")
            elif slot.produced >= job.max_tokens:
                self._finish(slot, "length")
            else:
                slot.last = tok
        self._prune()

    def _finish(self, slot: Slot, reason: str, message: str | None = None) -> None:
        """End the slot's request: last chunks out, KV dropped, slot to the next waiting request."""
        job = slot.job
        if job is None:
            return
        stats = self.stats
        if reason == "cancelled":
            stats.cancelled += 1
            stats.last_cancel_overrun = job.sampled - max(job.sampled_at_cancel, 0)
            self._outbox.append((job, DONE))
        elif reason == "error":
            stats.failed += 1
            err = EngineError(message or f"model {self.name!r}: generation failed")
            self._outbox.append((job, err))
        else:
            stats.completed += 1
            tail = job.text.flush()
            if tail:
                self._outbox.append((job, Chunk(text=tail)))
            usage = Usage(prompt_tokens=len(job.tokens), completion_tokens=slot.produced)
            self._outbox.append((job, Chunk(finish_reason=reason, usage=usage)))  # type: ignore[arg-type]
            self._outbox.append((job, DONE))
        stats.tokens_generated += slot.produced
        self._L.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
        self._free_sampler(job)
        slot.job = None
        slot.todo = []
        heapq.heappush(self._free_seqs, slot.seq)
        self._admission.release(time.monotonic() - slot.since)

    def _remember_prefix(self, slot: Slot) -> None:
        """After a prompt ran in full, keep its shared prefix in a spare stream for the next requests."""
        job = slot.job
        if job is None or not job.prefix:
            return
        key = tuple(job.tokens[: job.prefix])
        if key in self._prefixes:
            return
        L = self._L
        if self._spare:
            seq = self._spare.pop()
        else:
            _, old = self._prefixes.popitem(last=False)  # least recently used
            seq = old.seq
            L.llama_memory_seq_rm(self._mem, seq, -1, -1)
        # The copy runs at the start of the next decode, before this sequence's next token is written.
        L.llama_memory_seq_cp(self._mem, slot.seq, seq, -1, -1)
        L.llama_memory_seq_rm(self._mem, seq, job.prefix, -1)
        self._prefixes[key] = Prefix(seq, job.prefix)

    def _flush(self) -> None:
        """Hand this step's chunks to the event loop(s): one wake-up per loop, one queue put per item."""
        if not self._outbox:
            return
        outbox, self._outbox = self._outbox, []
        loop = outbox[0][0].loop
        if all(job.loop is loop for job, _ in outbox):
            post(loop, outbox)
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Job, Any]]] = {}
        for item in outbox:
            by_loop.setdefault(item[0].loop, []).append(item)
        for loop, items in by_loop.items():
            post(loop, items)
