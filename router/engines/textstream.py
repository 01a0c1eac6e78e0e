"""Turn a stream of token pieces into text deltas: incremental UTF-8 decoding and stop-sequence matching.

Shared by every in-process engine. A delta is released as soon as it cannot be the start of a stop sequence, so
streaming adds no delay beyond what stop sequences force.
"""

from __future__ import annotations

import codecs


class TextStream:
    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._longest = max((len(s) for s in self._stop), default=0)
        self._held = ""
        self.stopped = False  # a stop sequence matched; nothing more will be released

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that can be released now ('' if none)."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(piece)
        if not self._stop:
            self._held = ""
            return text
        cut = _first_stop(text, self._stop)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = _partial_stop_suffix(text, self._stop, self._longest)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """At the end of generation: whatever is still held back (a partial stop match that never completed)."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return text


def _first_stop(text: str, stops: tuple[str, ...]) -> int:
    best = -1
    for s in stops:
        i = text.find(s)
        if i >= 0 and (best < 0 or i < best):
            best = i
    return best


def _partial_stop_suffix(text: str, stops: tuple[str, ...], longest: int) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop sequence."""
    for n in range(min(longest - 1, len(text)), 0, -1):
        tail = text[-n:]
        if any(s.startswith(tail) for s in stops):
            return n
    return 0
