"""The lexical guard: rewordings pass, changed details and swapped words do not."""

from __future__ import annotations

import pytest

from router.cache.guard import agree, anchors


def same(a: str, b: str, extra: int = 0) -> bool:
    return agree(anchors(a), anchors(b), extra) and agree(anchors(b), anchors(a), extra)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is the capital of France?", "what is the capital of france"),
        ("What is the capital of France?", "What's the capital of France?"),
        ("Explain what a hash table is.", "Can you please explain what a hash table is?"),
        ("Summarise the email from Alice.", "Summarize the email from Alice"),
        ("List three benefits of exercise.", "List 3 benefits of exercise."),
        ("Is the shop open on Sundays?", "Is the shop open on Sunday?"),
        ("Which time zone is Tokyo in?", "What time zone is Tokyo in?"),
        ("Don't include opinions.", "Do not include opinions."),
    ],
)
def test_rewordings_agree(a: str, b: str) -> None:
    assert same(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is 17 times 23?", "What is 17 times 24?"),  # number
        ("Set a reminder at 6pm.", "Set a reminder at 6am."),  # number with its unit
        ("List three benefits of exercise.", "List five benefits of exercise."),  # number word
        ("Is Python a compiled language?", "Is Python not a compiled language?"),  # negation
        ("Does it work?", "Doesn't it work?"),
        ("Summarise the email from Alice.", "Summarise the email from Bob."),  # name
        ("Translate 'good morning' to Spanish.", "Translate 'good night' to Spanish."),  # quote
        ("Is coffee bad for you?", "Is coffee good for you?"),  # swapped word
        ("Does the Earth orbit the Sun?", "Does the Sun orbit the Earth?"),  # swapped order
        ("Find flights from London to Paris.", "Find flights from Paris to London."),
        ("Who is the prime minister of Canada?", "Who was the prime minister of Canada?"),  # tense
        ("Cancel my subscription.", "Cancel your subscription."),  # pronoun
        ("Write a poem about the sea.", "Write a sad poem about the sea."),  # an added word (extra=0)
    ],
)
def test_changed_details_disagree(a: str, b: str) -> None:
    assert not same(a, b)


def test_extra_words_are_configurable() -> None:
    assert same("Write a poem about the sea.", "Write a sad poem about the sea.", extra=1)
    assert not same("Write a poem about the sea.", "Write a sad long poem about the sea.", extra=1)
    # an added word never excuses a swapped one
    assert not same("Is coffee bad for you?", "Is strong coffee good for you?", extra=2)
