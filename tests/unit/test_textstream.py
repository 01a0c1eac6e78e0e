from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from router.engines.textstream import TextStream


def run(pieces: list[bytes], stop: tuple[str, ...]) -> tuple[list[str], bool]:
    stream = TextStream(stop)
    out = [stream.feed(p) for p in pieces]
    out.append(stream.flush())
    return out, stream.stopped


def test_stop_sequence_split_across_tokens_is_held_back_then_dropped() -> None:
    out, stopped = run([b"Hello ", b"wor", b"ld", b"!"], ("world",))
    assert "".join(out) == "Hello "
    assert stopped


def test_partial_match_that_fails_is_released() -> None:
    out, stopped = run([b"a wor", b"m"], ("world",))
    assert out[0] == "a " and "".join(out) == "a worm" and not stopped


def test_multibyte_utf8_split_across_tokens() -> None:
    snow = "☃".encode()
    out, _ = run([snow[:1], snow[1:2], snow[2:] + b"!"], ())
    assert out[:2] == ["", ""] and "".join(out) == "☃!"


@given(st.text(max_size=60), st.lists(st.integers(1, 7), max_size=20), st.text(min_size=1, max_size=4))
def test_output_is_the_prefix_before_the_first_stop(text: str, cuts: list[int], stop: str) -> None:
    data = text.encode()
    pieces, i = [], 0
    for c in cuts:
        pieces.append(data[i : i + c])
        i += c
    pieces.append(data[i:])
    out, stopped = run(pieces, (stop,))
    expected = text[: text.index(stop)] if stop in text else text
    assert "".join(out) == expected
    assert stopped == (stop in text)
