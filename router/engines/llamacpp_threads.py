"""Choosing llama.cpp's thread count by measurement, while serving.

No fixed thread count is right on a small cloud VM. On a quiet 2-core machine the engine decodes about 1.8x faster
with both cores; when other work shares the cores, ggml's spinning thread barrier makes every step wait for the
descheduled thread and one thread is faster (benchmarks/RESULTS.md, "engine threads"). So when `n_threads` is not
configured the engine alternates between the candidates in short trial windows, keeps the one with the lower decode
time per generated token, and trials again every few thousand steps, because the machine's load changes.

Only decode-only steps are measured: a step that also runs prompt tokens costs an amount unrelated to the thread
count's effect on generation. The two trial windows are adjacent, so they see about the same batch sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

TRIAL_STEPS = 48  # decode-only steps per candidate per trial: enough to average out scheduler noise
EXPLOIT_STEPS = 2048  # steps between trials (a few minutes of steady traffic)
_MIN_GAIN = 0.05  # switch only for a clear win: each switch costs a trial of the loser later


def usable_cores() -> int:
    """Cores this process may run on (affinity aware: containers and taskset narrow it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_candidates(cores: int) -> tuple[int, ...]:
    """Half the cores (leaves room for the event loop and the embedder) and all of them, when those differ."""
    half = max(1, cores // 2)
    return (half,) if half == cores else (half, cores)


@dataclass(slots=True)
class _Arm:
    threads: int
    seconds: float = 0.0
    tokens: int = 0
    steps: int = 0

    def per_token(self) -> float:
        return self.seconds / self.tokens if self.tokens else float("inf")

    def reset(self) -> None:
        self.seconds, self.tokens, self.steps = 0.0, 0, 0


@dataclass(slots=True)
class ThreadTuner:
    """Decides the thread count for the next step from the timings of past decode-only steps.

    Single-threaded: owned by the engine's worker thread. `threads` is what the next step should use; the engine
    applies it with `llama_set_n_threads` when it changes.
    """

    candidates: tuple[int, ...]
    trial_steps: int = TRIAL_STEPS
    exploit_steps: int = EXPLOIT_STEPS
    threads: int = 0
    switches: int = 0  # times the chosen count changed after a trial
    trials: int = 0
    _arms: list[_Arm] = field(default_factory=list)
    _trial: int = 0  # index of the arm on trial, or -1 while exploiting
    _exploited: int = 0
    _chosen: _Arm | None = None  # the arm serving between trials; set by the first decision

    def __post_init__(self) -> None:
        self._arms = [_Arm(t) for t in self.candidates]
        self.threads = self.candidates[0]
        self._trial = 0 if len(self.candidates) > 1 else -1

    @property
    def tuning(self) -> bool:
        return len(self._arms) > 1

    def observe(self, seconds: float, decoded: int, prompt_tokens: int) -> None:
        """Record one `llama_decode` call: its wall time, tokens generated and prompt tokens it ran."""
        if not self.tuning:
            return
        if self._trial < 0:
            self._exploited += 1
            if self._exploited >= self.exploit_steps:
                self._start_trial()
            return
        if prompt_tokens or not decoded:
            return
        arm = self._arms[self._trial]
        arm.seconds += seconds
        arm.tokens += decoded
        arm.steps += 1
        if arm.steps < self.trial_steps:
            return
        if self._trial + 1 < len(self._arms):
            self._trial += 1
            self.threads = self._arms[self._trial].threads
            return
        self._decide()

    def _start_trial(self) -> None:
        for arm in self._arms:
            arm.reset()
        self._trial = 0
        self.threads = self._arms[0].threads

    def _decide(self) -> None:
        self.trials += 1
        previous = self._chosen
        best = min(self._arms, key=_Arm.per_token)
        if previous is not None and previous is not best and best.per_token() > previous.per_token() * (1 - _MIN_GAIN):
            best = previous  # not a clear win: keep what was serving
        if previous is not None and best is not previous:
            self.switches += 1
        self._chosen = best
        self.threads = best.threads
        self._trial = -1
        self._exploited = 0

    def summary(self) -> dict[str, float]:
        """The last trial's figures, for logs and stats: milliseconds per token for each candidate."""
        return {f"ms_per_token_{a.threads}t": round(a.per_token() * 1e3, 2) for a in self._arms if a.tokens}
