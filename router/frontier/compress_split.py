"""Cutting a document into chunks for extractive compression, without losing a character.

The pieces of a text, joined, give the text back exactly. Fenced code blocks and markdown headings are pinned
(never dropped: code is not prose to be sampled, and headings keep the kept passages findable). Prose is cut on
blank lines into paragraphs, a paragraph too long for one chunk into sentences, a sentence too long into word
windows; consecutive pieces are then packed into chunks of at most `chunk_tokens` tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Count = Callable[[Sequence[str]], list[int]]

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$\n?", re.M | re.S)
_PARAGRAPH = re.compile(r"(?<=\n)[ \t]*\n")  # a blank line: the break stays with the paragraph before it
_SENTENCE = re.compile(r"(?<=[.!?…;:])[\"')\]]*\s+")
_HEADING = re.compile(r"^#{1,6} [^\n]*\n?")


@dataclass(slots=True)
class Chunk:
    text: str
    tokens: int
    pinned: bool = False  # a code block or a heading: always kept


def pieces(text: str) -> list[tuple[str, bool]]:
    """(piece, pinned) in order; the pieces joined are `text`."""
    out: list[tuple[str, bool]] = []
    at = 0
    for fence in _FENCE.finditer(text):
        out.extend(_prose(text[at : fence.start()]))
        out.append((fence.group(), True))
        at = fence.end()
    out.extend(_prose(text[at:]))
    return [p for p in out if p[0]]


def _prose(text: str) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    at = 0
    for brk in _PARAGRAPH.finditer(text):
        out.extend(_heading(text[at : brk.end()]))
        at = brk.end()
    out.extend(_heading(text[at:]))
    return out


def _heading(paragraph: str) -> list[tuple[str, bool]]:
    m = _HEADING.match(paragraph)
    if m is None:
        return [(paragraph, False)]
    return [(m.group(), True), (paragraph[m.end() :], False)]


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    out, at = [], 0
    for m in pattern.finditer(text):
        out.append(text[at : m.end()])
        at = m.end()
    out.append(text[at:])
    return [p for p in out if p]


def _windows(text: str, tokens: int, limit: int) -> list[str]:
    """A sentence longer than a chunk: equal word windows that each fit (word count scaled by tokens)."""
    words = re.findall(r"\S+\s*", text)
    n = max(1, len(words) * limit // max(tokens, 1) - 1)
    return ["".join(words[i : i + n]) for i in range(0, len(words), n)]


def _fitted(text: str, tokens: int, limit: int, count: Count) -> list[tuple[str, int]]:
    """`text` as pieces of at most `limit` tokens (a word longer than that stays whole)."""
    if tokens <= limit:
        return [(text, tokens)]
    sentences = _cut(text, _SENTENCE)
    if len(sentences) == 1:
        parts = _windows(text, tokens, limit)
        if len(parts) == 1:
            return [(text, tokens)]
    else:
        parts = sentences
    out: list[tuple[str, int]] = []
    for part, n in zip(parts, count(parts), strict=True):
        out.extend(_fitted(part, n, limit, count))
    return out


def chunk(text: str, chunk_tokens: int, count: Count) -> list[Chunk]:
    """The text as chunks of at most `chunk_tokens` tokens each (pinned pieces whole, whatever their size)."""
    parts = pieces(text)
    sizes = count([p for p, _ in parts])
    chunks: list[Chunk] = []
    open_: Chunk | None = None  # the prose chunk being filled
    for (part, pinned), n in zip(parts, sizes, strict=True):
        if pinned:
            chunks.append(Chunk(part, n, pinned=True))
            open_ = None
            continue
        for piece, m in _fitted(part, n, chunk_tokens, count):
            if open_ is not None and open_.tokens + m <= chunk_tokens:
                open_.text += piece
                open_.tokens += m
            else:
                open_ = Chunk(piece, m)
                chunks.append(open_)
    return chunks
