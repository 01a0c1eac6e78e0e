"""The engine's thread-count tuner: it keeps the faster candidate, ignores prompt steps, and follows load changes."""

from __future__ import annotations

from router.engines.llamacpp_threads import ThreadTuner


def _serve(tuner: ThreadTuner, per_token: dict[int, float], steps: int, batch: int = 3) -> list[int]:
    """Feed `steps` decode-only steps whose cost depends on the thread count in use; returns the counts used."""
    used = []
    for _ in range(steps):
        used.append(tuner.threads)
        tuner.observe(per_token[tuner.threads] * batch, decoded=batch, prompt_tokens=0)
    return used


def test_keeps_the_faster_count_after_one_trial() -> None:
    for faster, slower in ((2, 1), (1, 2)):
        tuner = ThreadTuner((1, 2), trial_steps=4, exploit_steps=100)
        used = _serve(tuner, {faster: 0.010, slower: 0.020}, 8 + 50)
        assert used[:8] == [1] * 4 + [2] * 4  # one trial window each
        assert set(used[8:]) == {faster}
        assert tuner.trials == 1


def test_a_marginal_gain_does_not_switch() -> None:
    tuner = ThreadTuner((1, 2), trial_steps=4, exploit_steps=10)
    _serve(tuner, {1: 0.010, 2: 0.020}, 8)
    assert tuner.threads == 1
    _serve(tuner, {1: 0.0100, 2: 0.0098}, 10 + 8)  # second trial: 2 threads only 2% faster
    assert tuner.trials == 2 and tuner.threads == 1 and tuner.switches == 0


def test_follows_a_change_in_machine_load() -> None:
    tuner = ThreadTuner((1, 2), trial_steps=4, exploit_steps=20)
    _serve(tuner, {1: 0.020, 2: 0.011}, 8)  # quiet machine: both cores win
    assert tuner.threads == 2
    _serve(tuner, {1: 0.020, 2: 0.045}, 20 + 8)  # neighbours arrive: the spinning barrier makes 2 threads slow
    assert tuner.threads == 1 and tuner.switches == 1
    assert tuner.summary() == {"ms_per_token_1t": 20.0, "ms_per_token_2t": 45.0}


def test_prompt_steps_are_not_measured() -> None:
    tuner = ThreadTuner((1, 2), trial_steps=4, exploit_steps=100)
    for _ in range(20):  # long prefills under 1 thread would look slow per token; they must not count
        tuner.observe(5.0, decoded=1, prompt_tokens=400)
        tuner.observe(0.0, decoded=0, prompt_tokens=0)
    assert tuner.threads == 1 and tuner.trials == 0
    _serve(tuner, {1: 0.010, 2: 0.030}, 8)
    assert tuner.threads == 1 and tuner.trials == 1


def test_a_configured_count_is_never_changed() -> None:
    tuner = ThreadTuner((3,), trial_steps=1, exploit_steps=1)
    assert not tuner.tuning
    assert set(_serve(tuner, {3: 0.05}, 50)) == {3}
    assert tuner.trials == 0
