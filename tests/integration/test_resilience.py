"""Every row of the resilience table (docs/resilience.md) against the fake frontier, through the real SDKs.

Both ingress APIs (OpenAI chat, Anthropic messages), streaming and not: which upstream outcomes are retried, sent
to a fallback, counted by the breaker, and what the client sees when nothing else can serve.
"""

from __future__ import annotations

import socket
import time

import anthropic
import openai
import pytest

from router.app import FRONTIER
from router.config import load_settings
from tests.conftest import MODEL
from tests.support.server import running

pytestmark = pytest.mark.model

QUESTION = "Plan the migration of our billing system"
EXPECTED = "Frontier answer about: " + QUESTION
BREAKER_FAILURES = 3

MODELS = {
    # name: (provider, fake behaviour, extra settings)
    "ok-a": ("anthropic", "ok", {}),
    "ok-o": ("openai", "ok", {}),
    "rl-a": ("anthropic", "error_429_ra_2", {"fallback_to_local": False}),
    "rl-o": ("openai", "error_429_ra_2", {"fallback_to_local": False}),
    "rlms-o": ("openai", "error_429_rams_300", {"fallback_to_local": False}),
    "ov-a": ("anthropic", "error_529", {"fallback_to_local": False}),
    "ov-o": ("openai", "error_503", {"fallback_to_local": False}),
    "rl-fb": ("anthropic", "error_429_ra_30", {"fallbacks": ["ok-o"]}),
    "rl-local": ("openai", "error_429_ra_30", {}),
    "e500-a": ("anthropic", "error_500", {"fallback_to_local": False}),
    "e502-o": ("openai", "error_502", {"fallback_to_local": False}),
    "e500-fb": ("openai", "error_500", {"fallbacks": ["ok-a"]}),
    "e401-a": ("anthropic", "error_401", {"fallbacks": ["ok-o"]}),
    "e401-o": ("openai", "error_401", {"fallback_to_local": False}),
    "mid-a": ("anthropic", "stream_error_after_2", {"fallbacks": ["ok-o"]}),
    "cut-o": ("openai", "cut_stream_2", {"fallbacks": ["ok-a"]}),
    "mid-local": ("anthropic", "stream_error_after_2", {}),
    "mid-none": ("openai", "stream_error_after_2", {"fallback_to_local": False}),
    "flaky-o": ("openai", "flaky_3", {"fallback_to_local": False}),
    # throttles that name their wait
    "ovra-a": ("anthropic", "error_529_ra_2", {"fallback_to_local": False}),
    "ovra-o": ("openai", "error_503_ra_2", {"fallback_to_local": False}),
    # unhealthy: upstream timeout status, no listener, no first token in time
    "e504-a": ("anthropic", "error_504", {"fallback_to_local": False}),
    "e504-o": ("openai", "error_504", {"fallback_to_local": False}),
    "down-a": ("anthropic", "ok", {"fallback_to_local": False, "base_url": "DOWN"}),
    "down-o": ("openai", "ok", {"fallback_to_local": False, "base_url": "DOWN"}),
    "down-fb": ("openai", "ok", {"fallbacks": ["ok-a"], "base_url": "DOWN"}),
    "hang-a": ("anthropic", "hang", {"fallback_to_local": False, "first_token_timeout_s": 0.5}),
    "hang-o": ("openai", "hang", {"fallback_to_local": False, "first_token_timeout_s": 0.5}),
    "hang-fb": ("anthropic", "hang", {"fallbacks": ["ok-o"], "first_token_timeout_s": 0.5}),
    # the request's own fault: a fallback is configured and must not be used
    "e400-fb": ("anthropic", "error_400", {"fallbacks": ["ok-o"]}),
    "e413-fb": ("openai", "error_413", {"fallbacks": ["ok-a"]}),
    "e422-fb": ("openai", "error_422", {"fallbacks": ["ok-a"]}),
    "e404-o": ("openai", "error_404", {"fallbacks": ["ok-a"]}),
    # refused: the router's key or model id is wrong there
    "e403-a": ("anthropic", "error_403", {"fallbacks": ["ok-o"]}),
    "e403-o": ("openai", "error_403", {"fallback_to_local": False}),
    "e404-a": ("anthropic", "error_404", {"fallbacks": ["ok-o"]}),
    # broken before the upstream's first delta: nothing reached the client, even when streaming
    "mid0-a": ("anthropic", "stream_error_after_0", {"fallbacks": ["ok-o"]}),
    "cut0-o": ("openai", "cut_stream_0", {"fallbacks": ["ok-a"]}),
    "cut0-local": ("openai", "cut_stream_0", {}),
    # the router's own pacing under a model's requests_per_minute
    "paced-a": ("anthropic", "ok", {"fallback_to_local": False, "requests_per_minute": 2}),
    "paced-o": ("openai", "ok", {"fallback_to_local": False, "requests_per_minute": 2}),
    "paced-fb": ("anthropic", "ok", {"fallbacks": ["ok-o"], "requests_per_minute": 1}),
    "paced-wait": ("openai", "ok", {"fallback_to_local": False, "requests_per_minute": 60}),
}


@pytest.fixture(scope="module")
def router(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resilience")
    key = tmp / "key"
    key.write_text("sk-test\n")
    with socket.socket() as probe:  # a port nothing listens on: connect errors
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    lines = [
        "cache: {enabled: false}",
        "frontier:",
        f"  resilience: {{max_retries: 1, backoff_base_s: 0.01, backoff_max_s: 1.0, "
        f"breaker_failures: {BREAKER_FAILURES}, breaker_cooldown_s: 60}}",
        "  models:",
    ]
    for name, (provider, behaviour, opts) in MODELS.items():
        base = down if opts.get("base_url") == "DOWN" else fake.url
        base = base if provider == "anthropic" else base + "/v1"
        fields = {"name": name, "provider": provider, "model_id": behaviour, "api_key_file": str(key)}
        fields |= opts | {"base_url": base}
        lines.append("    - " + str(fields).replace("'", '"').replace("False", "false"))
    cfg = tmp / "router.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    with running(load_settings(cfg, environ={})) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake, router):
    fake.reset()
    router.app[FRONTIER].resilience.reset()


def sent(fake, behaviour: str) -> int:
    return sum(1 for r in fake.requests if r.model == behaviour)


def ask(router, ingress: str, model: str, stream: bool):
    """(status, headers, text, in-band error type or None) of one request through the real SDK."""
    try:
        if ingress == "openai":
            client = openai.OpenAI(base_url=router.base_url + "/v1", api_key="x", max_retries=0, timeout=120)
            messages = [{"role": "user", "content": QUESTION}]
            if not stream:
                raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=40)
                return 200, raw.headers, raw.parse().choices[0].message.content, None
            with client.chat.completions.with_streaming_response.create(
                model=model, messages=messages, max_tokens=40, stream=True
            ) as resp:
                text = []
                try:
                    for chunk in resp.parse():
                        if chunk.choices and chunk.choices[0].delta.content:
                            text.append(chunk.choices[0].delta.content)
                except openai.APIError as exc:
                    return 200, resp.headers, "".join(text), type(exc).__name__
                return 200, resp.headers, "".join(text), None
        client = anthropic.Anthropic(base_url=router.base_url, api_key="x", max_retries=0, timeout=120)
        kwargs = {"model": model, "max_tokens": 40, "messages": [{"role": "user", "content": QUESTION}]}
        if not stream:
            raw = client.messages.with_raw_response.create(**kwargs)
            return 200, raw.headers, "".join(b.text for b in raw.parse().content if b.type == "text"), None
        with client.messages.stream(**kwargs) as s:
            text = []
            try:
                for part in s.text_stream:
                    text.append(part)
            except anthropic.APIStatusError as exc:
                return 200, s.response.headers, "".join(text), exc.type
            return 200, s.response.headers, "".join(text), None
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        return exc.status_code, exc.response.headers, exc.message, None


BOTH = pytest.mark.parametrize("ingress", ["openai", "anthropic"])
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])


# -- throttles: 429 / 529 / 503 ------------------------------------------------------------------------------


@BOTH
@STREAM
@pytest.mark.parametrize("model", ["rl-a", "rl-o"])
def test_rate_limit_reaches_the_client_with_retry_after_and_never_opens_the_breaker(
    router, fake, ingress: str, stream: bool, model: str
) -> None:
    for _ in range(BREAKER_FAILURES + 2):
        status, headers, _, _ = ask(router, ingress, model, stream)
        assert status == 429
        assert 1 <= int(headers["retry-after"]) <= 2
    assert sent(fake, MODELS[model][1]) == 1  # the cool-down held every later request back from the upstream
    assert router.app[FRONTIER].resilience.breakers[model].state == "closed"


@BOTH
@STREAM
@pytest.mark.parametrize("model", ["ov-a", "ov-o"])
def test_overload_is_529_on_anthropic_and_503_on_openai_with_retry_after(
    router, fake, ingress: str, stream: bool, model: str
) -> None:
    for _ in range(BREAKER_FAILURES + 1):
        status, headers, _, _ = ask(router, ingress, model, stream)
        assert status == (529 if ingress == "anthropic" else 503)
        assert int(headers["retry-after"]) >= 1  # the upstream sent none: the router's own cool-down
    assert router.app[FRONTIER].resilience.breakers[model].state == "closed"


@BOTH
@STREAM
@pytest.mark.parametrize("model", ["ovra-a", "ovra-o"])
def test_overload_retry_after_is_followed_and_reaches_the_client(
    router, fake, ingress: str, stream: bool, model: str
) -> None:
    for _ in range(BREAKER_FAILURES + 1):
        status, headers, _, _ = ask(router, ingress, model, stream)
        assert status == (529 if ingress == "anthropic" else 503)
        assert 1 <= int(headers["retry-after"]) <= 2  # the upstream's 2 s, counting down
    assert sent(fake, MODELS[model][1]) == 1  # 2 s is within backoff_max_s, yet no retry is sent while it cools
    assert router.app[FRONTIER].resilience.breakers[model].failures == 0


@BOTH
@STREAM
@pytest.mark.parametrize("model", ["paced-a", "paced-o"])
def test_requests_per_minute_paces_the_router_and_the_client_sees_429(
    router, fake, ingress: str, stream: bool, model: str
) -> None:
    for _ in range(2):  # the bucket holds one minute's worth: 2
        status, headers, text, _ = ask(router, ingress, model, stream)
        assert status == 200 and text == EXPECTED
    status, headers, _, _ = ask(router, ingress, model, stream)
    assert status == 429 and 25 <= int(headers["retry-after"]) <= 30  # one request per 30 s, counting down
    assert sent(fake, "ok") == 2  # the third was never sent: the router paced itself
    assert router.app[FRONTIER].resilience.breakers[model].state == "closed"


@BOTH
@STREAM
def test_a_paced_model_hands_over_to_its_fallback(router, fake, ingress: str, stream: bool) -> None:
    status, headers, _, _ = ask(router, ingress, "paced-fb", stream)
    assert status == 200 and headers["x-router-model"] == "paced-fb" and "x-router-fallback" not in headers
    status, headers, text, _ = ask(router, ingress, "paced-fb", stream)
    assert status == 200 and text == EXPECTED and headers["x-router-fallback"] == "ok-o"
    assert sum(1 for r in fake.requests if r.path == "/v1/messages") == 1  # paced-fb (Anthropic) was sent one


async def _drain(bucket) -> None:
    bucket.level, bucket.stamp = 0.0, time.monotonic()


@BOTH
@STREAM
def test_a_short_pacing_wait_is_waited_out_without_a_fallback(router, fake, ingress: str, stream: bool) -> None:
    router.call(_drain(router.app[FRONTIER].resilience.pacers["paced-wait"]))  # next slot in 1 s (60 per minute)
    begun = time.perf_counter()
    status, _, text, _ = ask(router, ingress, "paced-wait", stream)
    assert status == 200 and text == EXPECTED
    assert time.perf_counter() - begun >= 0.5 and sent(fake, "ok") == 1


def test_retry_after_ms_is_waited_out_before_the_retry(router, fake) -> None:
    begun = time.perf_counter()
    status, headers, _, _ = ask(router, "openai", "rlms-o", False)
    assert time.perf_counter() - begun >= 0.3  # 300 ms is under backoff_max_s: waited, then retried once
    assert status == 429 and headers["retry-after"] == "1"  # the second 300 ms, rounded up to whole seconds
    assert sent(fake, "error_429_rams_300") == 2
    assert 0 < router.app[FRONTIER].resilience.throttles["rlms-o"].remaining() <= 0.3


@BOTH
@STREAM
def test_rate_limited_provider_hands_over_to_its_fallback(router, fake, ingress: str, stream: bool) -> None:
    for _ in range(2):
        status, headers, text, _ = ask(router, ingress, "rl-fb", stream)
        assert status == 200 and text == EXPECTED
        assert headers["x-router-model"] == "ok-o" and headers["x-router-fallback"] == "ok-o"
    assert sent(fake, "error_429_ra_30") == 1  # cooling down: the second went straight to the fallback


@BOTH
@STREAM
def test_rate_limited_provider_falls_back_to_local(router, ingress: str, stream: bool) -> None:
    status, headers, text, _ = ask(router, ingress, "rl-local", stream)
    assert status == 200 and text
    assert headers["x-router-fallback"] == "local" and headers["x-router-model"] == MODEL


# -- unhealthy: 5xx -------------------------------------------------------------------------------------------


@BOTH
@STREAM
@pytest.mark.parametrize("model", ["e500-a", "e502-o"])
def test_server_errors_are_retried_open_the_breaker_and_then_answer_503(
    router, fake, ingress: str, stream: bool, model: str
) -> None:
    status, headers, _, _ = ask(router, ingress, model, stream)
    assert status == 502 and "retry-after" not in headers
    assert sent(fake, MODELS[model][1]) == 2  # one retry
    ask(router, ingress, model, stream)  # failures 3 and 4: the breaker opens
    breaker = router.app[FRONTIER].resilience.breakers[model]
    assert breaker.state == "open"
    upstream = sent(fake, MODELS[model][1])
    status, headers, message, _ = ask(router, ingress, model, stream)
    assert status == 503 and "circuit open" in message
    assert 50 <= int(headers["retry-after"]) <= 60  # until the half-open probe
    assert sent(fake, MODELS[model][1]) == upstream  # nothing sent while open


@BOTH
@STREAM
def test_server_error_goes_to_the_fallback(router, fake, ingress: str, stream: bool) -> None:
    status, headers, text, _ = ask(router, ingress, "e500-fb", stream)
    assert status == 200 and text == EXPECTED and headers["x-router-fallback"] == "ok-a"
    assert headers["x-router-attempts"] == "3"


@BOTH
@STREAM
@pytest.mark.parametrize(
    ("model", "status"),
    [("e504-a", 504), ("e504-o", 504), ("down-a", 502), ("down-o", 502), ("hang-a", 504), ("hang-o", 504)],
)
def test_upstream_timeouts_and_connect_errors_are_retried_and_open_the_breaker(
    router, fake, ingress: str, stream: bool, model: str, status: int
) -> None:
    got, headers, _, _ = ask(router, ingress, model, stream)
    assert got == status and "retry-after" not in headers
    breaker = router.app[FRONTIER].resilience.breakers[model]
    assert breaker.failures == 2  # the first attempt and its one retry, both counted
    if not model.startswith("down"):
        assert sent(fake, MODELS[model][1]) == 2
    ask(router, ingress, model, stream)
    assert breaker.state == "open"
    got, headers, message, _ = ask(router, ingress, model, stream)
    assert got == 503 and "circuit open" in message and int(headers["retry-after"]) >= 50


@BOTH
@STREAM
@pytest.mark.parametrize("model", ["down-fb", "hang-fb"])
def test_connect_error_and_timeout_go_to_the_fallback(router, ingress: str, stream: bool, model: str) -> None:
    status, headers, text, _ = ask(router, ingress, model, stream)
    served = MODELS[model][2]["fallbacks"][0]
    assert status == 200 and text == EXPECTED and headers["x-router-fallback"] == served
    assert router.app[FRONTIER].resilience.breakers[model].failures == 2


@BOTH
@STREAM
def test_open_breaker_sends_nothing_upstream_and_hands_over_to_the_fallback(
    router, fake, ingress: str, stream: bool
) -> None:
    ask(router, ingress, "e500-fb", stream)
    ask(router, ingress, "e500-fb", stream)  # 4 failures: open
    assert router.app[FRONTIER].resilience.breakers["e500-fb"].state == "open"
    upstream = sent(fake, "error_500")
    status, headers, text, _ = ask(router, ingress, "e500-fb", stream)
    assert status == 200 and text == EXPECTED and headers["x-router-fallback"] == "ok-a"
    assert headers["x-router-attempts"] == "2"  # "circuit open", then the fallback
    assert sent(fake, "error_500") == upstream


async def _cooled(breaker) -> None:
    breaker.opened_at -= breaker.cooldown_s  # as if the cool-down had passed (on the server's loop: no race)


@BOTH
@STREAM
def test_open_breaker_lets_one_probe_through_after_its_cooldown_and_closes_on_success(
    router, fake, ingress: str, stream: bool
) -> None:
    assert ask(router, ingress, "flaky-o", stream)[0] == 502
    assert ask(router, ingress, "flaky-o", stream)[0] == 502  # failure 3 opens it: no retry
    breaker = router.app[FRONTIER].resilience.breakers["flaky-o"]
    assert breaker.state == "open" and ask(router, ingress, "flaky-o", stream)[0] == 503
    router.call(_cooled(breaker))
    assert breaker.state == "half-open"
    status, _, text, _ = ask(router, ingress, "flaky-o", stream)  # the probe: the upstream has recovered
    assert status == 200 and text == EXPECTED
    assert breaker.state == "closed" and breaker.failures == 0
    assert sent(fake, "flaky_3") == 4


# -- the request's own fault: 400 / 413 / 422, and 404 from an OpenAI-compatible upstream ----------------------


@BOTH
@STREAM
@pytest.mark.parametrize(("model", "status"), [("e400-fb", 400), ("e413-fb", 413), ("e422-fb", 400), ("e404-o", 404)])
def test_request_errors_are_passed_back_without_retry_or_fallback(
    router, fake, ingress: str, stream: bool, model: str, status: int
) -> None:
    got, headers, _, _ = ask(router, ingress, model, stream)
    assert got == status and "retry-after" not in headers
    assert sent(fake, MODELS[model][1]) == 1  # no retry
    assert sent(fake, "ok") == 0  # and no fallback: another provider would refuse it too
    assert router.app[FRONTIER].resilience.breakers[model].failures == 0


# -- refused: the router's credentials ------------------------------------------------------------------------


@BOTH
@STREAM
def test_refused_credentials_are_not_retried_and_not_counted(router, fake, ingress: str, stream: bool) -> None:
    status, headers, text, _ = ask(router, ingress, "e401-a", stream)
    assert status == 200 and text == EXPECTED and headers["x-router-fallback"] == "ok-o"
    assert sent(fake, "error_401") == 1
    status, headers, _, _ = ask(router, ingress, "e401-o", stream)
    assert status == 502 and "retry-after" not in headers
    assert sent(fake, "error_401") == 2  # once each, no retry
    breakers = router.app[FRONTIER].resilience.breakers
    assert breakers["e401-a"].failures == 0 and breakers["e401-o"].failures == 0


@BOTH
@STREAM
def test_forbidden_and_anthropic_not_found_go_to_the_next_provider(router, fake, ingress: str, stream: bool) -> None:
    for model in ("e403-a", "e404-a"):
        status, headers, text, _ = ask(router, ingress, model, stream)
        assert status == 200 and text == EXPECTED and headers["x-router-fallback"] == "ok-o"
        assert sent(fake, MODELS[model][1]) == 1
    status, headers, _, _ = ask(router, ingress, "e403-o", stream)
    assert status == 502 and "retry-after" not in headers
    breakers = router.app[FRONTIER].resilience.breakers
    assert sum(breakers[m].failures for m in ("e403-a", "e404-a", "e403-o")) == 0


# -- failures after the upstream's first chunk ----------------------------------------------------------------


@BOTH
@pytest.mark.parametrize(("model", "served"), [("mid-a", "ok-o"), ("cut-o", "ok-a")])
def test_whole_answer_failing_after_the_first_upstream_chunk_goes_to_the_fallback(
    router, fake, ingress: str, model: str, served: str
) -> None:
    status, headers, text, _ = ask(router, ingress, model, stream=False)
    assert status == 200 and text == EXPECTED
    assert headers["x-router-model"] == served and headers["x-router-fallback"] == served


@BOTH
def test_whole_answer_failing_after_the_first_upstream_chunk_falls_back_to_local(router, ingress: str) -> None:
    status, headers, text, _ = ask(router, ingress, "mid-local", stream=False)
    assert status == 200 and text
    assert headers["x-router-fallback"] == "local" and headers["x-router-model"] == MODEL


@BOTH
@STREAM
@pytest.mark.parametrize(("model", "served"), [("mid0-a", "ok-o"), ("cut0-o", "ok-a")])
def test_stream_broken_before_its_first_delta_goes_to_the_fallback(
    router, fake, ingress: str, stream: bool, model: str, served: str
) -> None:
    status, headers, text, error = ask(router, ingress, model, stream)
    assert status == 200 and error is None and text == EXPECTED  # nothing of the broken answer came through
    assert headers["x-router-model"] == served and headers["x-router-fallback"] == served


@BOTH
@STREAM
def test_stream_cut_before_its_first_delta_is_retried_counted_and_falls_back_to_local(
    router, fake, ingress: str, stream: bool
) -> None:
    status, headers, text, error = ask(router, ingress, "cut0-local", stream)
    assert status == 200 and error is None and text
    assert headers["x-router-fallback"] == "local" and headers["x-router-model"] == MODEL
    assert sent(fake, "cut_stream_0") == 2  # a cut is unhealthy: retried once
    assert router.app[FRONTIER].resilience.breakers["cut0-local"].failures == 2


@BOTH
def test_whole_answer_failing_mid_stream_without_fallback_is_a_clean_error(router, ingress: str) -> None:
    status, headers, _, _ = ask(router, ingress, "mid-none", stream=False)
    # the upstream's in-band error is "server_error": unhealthy, so 502 (no throttle, no Retry-After)
    assert status == 502 and "retry-after" not in headers


@BOTH
@pytest.mark.parametrize("model", ["mid-a", "cut-o"])
def test_stream_failing_after_the_first_byte_ends_in_band(router, fake, ingress: str, model: str) -> None:
    status, headers, text, error = ask(router, ingress, model, stream=True)
    assert status == 200 and error is not None
    assert text == "Frontier answer"  # what came before the failure, and nothing else
    assert headers["x-router-model"] == model
    assert sent(fake, MODELS[model][1]) == 1  # never retried once the client had bytes
    if model == "cut-o":  # a cut is unhealthy: counted even after the first byte
        assert router.app[FRONTIER].resilience.breakers[model].failures == 1
