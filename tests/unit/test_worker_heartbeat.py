"""The parent's view of the engine worker's heartbeat: every counter the worker sends is one the parent keeps, and
a counter it does not know (a worker of another version) is ignored instead of breaking the heartbeat handler —
which would starve the watchdog and get a healthy worker killed in a loop."""

from __future__ import annotations

from router.config import ModelSettings
from router.engines.worker_client import WorkerClient, WorkerStats
from router.engines.worker_main import _STATS


def test_the_parent_keeps_every_counter_the_worker_sends() -> None:
    assert set(_STATS) <= set(WorkerStats.__slots__)


def test_an_unknown_counter_is_ignored_and_the_known_ones_land() -> None:
    client = WorkerClient(ModelSettings(name="local"))
    client._on_heartbeat({"steps": 7, "threads": 2, "thread_switches": 1, "a_counter_from_a_newer_worker": 5})
    assert (client.stats.steps, client.stats.threads, client.stats.thread_switches) == (7, 2, 1)
    assert client.last_heartbeat > 0
