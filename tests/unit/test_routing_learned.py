"""The shipped learned router on prompts written for these tests (not in its training data), through the policy."""

from __future__ import annotations

import pytest

from router.config import Settings
from router.fastpath import estimate_tokens
from router.http.openai import parse_chat_request
from router.routing.policy import RoutingPolicy, scored_text

LABEL_LISTS = [
    "Classify the following customer message into one of these categories: billing, technical issue, account "
    "access, shipping, other.\n\nMessage: I was charged twice for my subscription this month.",
    "Which topic does this headline belong to? Options: politics, sports, business, science, entertainment.\n"
    "Headline: Local team clinches title after dramatic overtime win",
    "Label the sentiment of this review as positive, negative or neutral.\nReview: The battery died after two "
    "days and support never answered my emails.",
    "Is the following email spam or not spam? Answer with one word.\n\nCongratulations! You have been selected to "
    "receive a free cruise. Click here to claim your prize now.",
    "Intent detection. Possible intents: book_flight, cancel_booking, check_status, change_seat, baggage_info.\n"
    "Utterance: can I move to a window seat on my flight tomorrow",
    pytest.param(
        "Categorize this support ticket by urgency (low, medium, high, critical):\n"
        "'The checkout page returns an error for all customers since 9am.'",
        marks=pytest.mark.xfail(
            strict=True, reason="known miss of router-v1: technical words in the ticket outweigh the label list"
        ),
    ),
]
HARD = [
    "Design a fault-tolerant, multi-region architecture for a payments platform that must process 50,000 "
    "transactions per second with exactly-once semantics. Compare at least three approaches to consistency, "
    "explain the trade-offs step by step, and propose a migration plan from our current single-region monolith.",
    "Prove that the square root of 2 is irrational, then generalise the proof to show that the square root of "
    "any natural number that is not a perfect square is irrational. Explain every step.",
    "Write a Python implementation of a lock-free concurrent hash map with resizing, explain how it avoids the ABA "
    "problem, and analyse its time complexity under contention.",
]
NON_ENGLISH_HARD = [
    "Entwerfen Sie eine fehlertolerante Architektur für ein Zahlungssystem über mehrere Rechenzentren, vergleichen "
    "Sie drei Konsistenzmodelle und begründen Sie jeden Kompromiss Schritt für Schritt.",
    "Diseña una arquitectura tolerante a fallos para un sistema de pagos distribuido en varias regiones, compara "
    "tres modelos de consistencia y justifica cada decisión paso a paso.",
    "Démontrez que la racine carrée de 2 est irrationnelle, puis généralisez la preuve à tout entier naturel qui "
    "n'est pas un carré parfait. Expliquez chaque étape.",
    "请为一个每秒处理五万笔交易的跨区域支付平台设计容错架构，比较三种一致性方案，并逐步解释每个权衡。",
]
SYSTEM = (
    "You are the assistant of ACME Corp. Always answer politely and concisely. Follow the company style guide: "
    "use British English, avoid jargon, never promise delivery dates, and escalate legal questions to a human. "
) * 12


@pytest.fixture(scope="module")
def policy() -> RoutingPolicy:
    return RoutingPolicy(Settings(), frontier_models=("claude",))


def chat(prompt: str, system: str | None = None, history: list[dict] | None = None):
    messages = ([{"role": "system", "content": system}] if system else []) + (history or [])
    return parse_chat_request({"model": "auto", "messages": [*messages, {"role": "user", "content": prompt}]})


@pytest.mark.parametrize("prompt", LABEL_LISTS)
def test_classification_with_an_inline_label_list_stays_local(policy: RoutingPolicy, prompt: str) -> None:
    decision = policy.decide(chat(prompt))
    assert (decision.tier, decision.rule) == ("local", "default"), (decision.score, decision.threshold)
    assert decision.task_source == "inferred"


@pytest.mark.parametrize("prompt", HARD)
def test_hard_multi_step_prompts_go_to_the_frontier(policy: RoutingPolicy, prompt: str) -> None:
    decision = policy.decide(chat(prompt))
    assert (decision.tier, decision.rule) == ("frontier", "learned"), (decision.score, decision.threshold)


@pytest.mark.parametrize("prompt", NON_ENGLISH_HARD)
def test_non_english_hard_prompts_go_to_the_frontier(policy: RoutingPolicy, prompt: str) -> None:
    decision = policy.decide(chat(prompt))
    assert decision.tier == "frontier", (decision.score, decision.threshold)


@pytest.mark.parametrize("prompt", [LABEL_LISTS[0], HARD[0], NON_ENGLISH_HARD[0]])
def test_a_long_system_prompt_does_not_change_the_decision(policy: RoutingPolicy, prompt: str) -> None:
    bare, with_system = policy.decide(chat(prompt)), policy.decide(chat(prompt, system=SYSTEM))
    assert (with_system.tier, with_system.score, with_system.task) == (bare.tier, bare.score, bare.task)
    assert with_system.context_tokens > bare.context_tokens + 500  # the system prompt still counts as context


def test_the_latest_user_turn_decides_and_a_short_follow_up_keeps_its_context(policy: RoutingPolicy) -> None:
    history = [{"role": "user", "content": HARD[0]}, {"role": "assistant", "content": "Here is a design: ..."}]
    turn = policy.decide(chat(LABEL_LISTS[2], history=history))
    assert turn.tier == "local"  # a narrow task after a hard one is judged on its own
    follow_up = chat("and why?", history=history)
    assert scored_text(follow_up) == f"{HARD[0]}\nand why?"
    decision = policy.decide(follow_up)
    assert decision.tier == "frontier"
    assert decision.context_tokens == sum(estimate_tokens(m.content) for m in follow_up.messages)


def test_explicit_task_hints_override_the_learned_decision(policy: RoutingPolicy) -> None:
    hinted = parse_chat_request(
        {"model": "auto", "messages": [{"role": "user", "content": HARD[0]}], "metadata": {"task": "extraction"}}
    )
    assert (policy.decide(hinted).tier, policy.decide(hinted).rule) == ("local", "local-task-hint")
    writing = chat(LABEL_LISTS[0])
    writing.task = "writing"
    assert policy.decide(writing).rule == "frontier-task-hint"


def test_the_configured_threshold_moves_the_cut(policy: RoutingPolicy) -> None:
    prompt = chat(HARD[0])
    score = policy.decide(prompt).score
    above = RoutingPolicy(Settings(routing={"threshold": min(1.0, score + 1e-6)}), frontier_models=("claude",))
    below = RoutingPolicy(Settings(routing={"threshold": score}), frontier_models=("claude",))
    assert above.decide(prompt).tier == "local" and below.decide(prompt).tier == "frontier"
