"""Bounded admission on its own: slots, the waiting room's two bounds, hand-over, withdrawal, shutdown."""

from __future__ import annotations

import threading

import pytest

from router.engines.admission import Admission
from router.errors import EngineError, Overloaded
from router.http.errors import error_response


def test_slots_then_queue_then_refusal() -> None:
    adm: Admission[str] = Admission(slots=2, max_requests=1, max_tokens=100)
    assert adm.offer("a", 10) and adm.offer("b", 10)
    assert not adm.offer("c", 10)  # waits
    with pytest.raises(Overloaded) as refused:
        adm.offer("d", 10)
    assert refused.value.retry_after is not None and 1 <= refused.value.retry_after <= 60
    assert (adm.stats.slots_busy, adm.stats.queued, adm.stats.queued_tokens, adm.stats.rejected) == (2, 1, 10, 1)
    assert adm.take(block=False) == ["a", "b"]
    adm.release(0.5)  # "c" inherits the slot directly
    assert adm.take(block=False) == ["c"]
    assert (adm.stats.slots_busy, adm.stats.queued, adm.stats.queued_tokens) == (2, 0, 0)
    adm.release()
    adm.release()
    assert adm.stats.slots_busy == 0


def test_token_bound() -> None:
    adm: Admission[str] = Admission(slots=1, max_requests=10, max_tokens=50)
    assert adm.offer("running", 500)  # a free slot takes any prompt that fits the model
    assert not adm.offer("a", 30)
    with pytest.raises(Overloaded):
        adm.offer("b", 30)  # 60 queued tokens > 50
    assert not adm.offer("c", 20)


def test_no_waiting_room() -> None:
    adm: Admission[str] = Admission(slots=1, max_requests=0, max_tokens=1000)
    assert adm.offer("a", 1)
    with pytest.raises(Overloaded):
        adm.offer("b", 1)


def test_withdraw_counts_and_frees() -> None:
    adm: Admission[str] = Admission(slots=1, max_requests=2, max_tokens=100)
    adm.offer("a", 5)
    adm.offer("b", 7)
    adm.offer("c", 9)
    assert adm.withdraw("b") and adm.withdraw("c", expired=True)
    assert not adm.withdraw("a")  # it has a slot: the worker stops it, not the queue
    assert (adm.stats.queued, adm.stats.queued_tokens, adm.stats.withdrawn, adm.stats.expired) == (0, 0, 1, 1)


def test_take_blocks_until_offer_and_close_releases_everyone() -> None:
    adm: Admission[str] = Admission(slots=1, max_requests=1, max_tokens=100)
    got: list[list[str] | None] = []
    worker = threading.Thread(target=lambda: got.append(adm.take(block=True)))
    worker.start()
    adm.offer("a", 1)
    worker.join(5)
    assert got == [["a"]]
    adm.offer("b", 1)
    assert adm.close() == ["b"]
    assert adm.take(block=True) is None
    with pytest.raises(EngineError):
        adm.offer("c", 1)


def test_overloaded_becomes_503_or_529_with_retry_after() -> None:
    exc = Overloaded("busy", retry_after=2.2)
    openai = error_response(exc, "openai")
    anthropic = error_response(exc, "anthropic")
    assert (openai.status, openai.headers["Retry-After"]) == (503, "3")
    assert (anthropic.status, anthropic.headers["Retry-After"]) == (529, "3")
