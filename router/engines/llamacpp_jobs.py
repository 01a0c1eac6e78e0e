"""The batched llama.cpp engine's bookkeeping: a request's job, a KV slot, a kept prefix, the counters, and
the hand-over of sampled tokens from the worker thread to the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from router.engines.admission import QueueStats
from router.engines.textstream import TextStream

DONE = object()  # the end of a job's queue
UNSEEN: Any = object()  # a cache miss marker (None is a real value in those caches)


@dataclass(slots=True)
class BatchedStats(QueueStats):
    """Counters for tests and metrics. Queue fields are written under the admission lock, the rest by the worker."""

    started: int = 0
    completed: int = 0
    cancelled: int = 0  # stopped while running (client gone, deadline)
    failed: int = 0
    active: int = 0  # sequences in the decode loop
    tokens_generated: int = 0
    prompt_tokens_computed: int = 0  # prompt tokens actually run through the model (prefix hits excluded)
    steps: int = 0  # llama_decode calls
    prefix_hits: int = 0
    prefix_tokens_reused: int = 0
    threads: int = 0  # llama.cpp threads the next step uses (llamacpp_threads.ThreadTuner)
    thread_switches: int = 0
    grammar_resamples: int = 0  # tokens the grammar rejected, sampled again under it
    # Tokens sampled after a cancel was requested, for the last cancelled request (must stay ≤ 1).
    last_cancel_overrun: int = 0


@dataclass(slots=True, eq=False)
class Job:
    tokens: list[int]
    max_tokens: int
    prefix: int  # leading tokens shareable through the prefix cache (0: none)
    sampler: Any  # llama_sampler chain, owned by whoever holds the job; freed exactly once
    grammar: Any  # llama_sampler for response_format, or None; same ownership
    text: TextStream
    logprobs: bool
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    cancelled: bool = False  # set by the event loop, read by the worker
    ended: bool = False  # event-loop side: nothing more will be consumed or withdrawn
    sampled: int = 0  # tokens sampled, written by the worker
    sampled_at_cancel: int = -1


@dataclass(slots=True, eq=False)
class Slot:
    seq: int
    job: Job | None = None
    todo: list[int] = field(default_factory=list)  # prompt tokens still to run
    pos: int = 0  # position of the next token in the sequence
    last: int = -1  # token sampled last, fed at the next step
    produced: int = 0
    out: int = -1  # index of this sequence's logits in the current batch; -1: none
    since: float = 0.0


@dataclass(slots=True, eq=False)
class Prefix:
    seq: int
    tokens: int


def post(loop: asyncio.AbstractEventLoop, items: list[tuple[Job, Any]]) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
        loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[tuple[Job, Any]]) -> None:
    for job, item in items:
        job.queue.put_nowait(item)
