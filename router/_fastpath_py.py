"""Pure-Python twin of `router/_fastpath.pyx`: identical results, used when the extension is not built."""

from __future__ import annotations

import math
from collections.abc import Sequence

from router.routing.lexicon import (
    CODE,
    FEATURES,
    MATH,
    MAX_WORD,
    N_CATEGORIES,
    REASONING,
    SYNTHESIS,
    build_table,
)

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = 0xFFFFFFFFFFFFFFFF


def fnv1a_64(data: bytes | bytearray | memoryview) -> int:
    h = FNV_OFFSET
    for byte in bytes(data):
        h = ((h ^ byte) * FNV_PRIME) & MASK64
    return h


def _is_word(c: int) -> bool:
    if c < 128:
        return 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 95
    return c < 0x2E80


def estimate_tokens(text: str) -> int:
    tokens = 0
    run = 0
    for ch in text:
        c = ord(ch)
        if _is_word(c):
            run += 1
            continue
        if run:
            tokens += 1 + (run - 1) // 5
            run = 0
        if not (c == 32 or 9 <= c <= 13):
            tokens += 1
    if run:
        tokens += 1 + (run - 1) // 5
    return tokens


# -- complexity scorer (twin of the compiled one; same integer counting, same float operations in order) -------

_TABLE = build_table()
_N_TASKS = 10


def _script_bit(c: int) -> int:
    if c < 128:
        return 1 if (65 <= c <= 90 or 97 <= c <= 122) else 0
    if 0xC0 <= c <= 0x24F:
        return 1
    if 0x370 <= c <= 0x3FF:
        return 2
    if 0x400 <= c <= 0x4FF:
        return 4
    if 0x590 <= c <= 0x6FF:
        return 8
    if 0x900 <= c <= 0xDFF:
        return 16
    if 0x3040 <= c <= 0x30FF or 0x4E00 <= c <= 0x9FFF or 0xAC00 <= c <= 0xD7AF:
        return 32
    return 0


def _cap(v: int, hi: int, div: float) -> float:
    return float(v if v < hi else hi) / div


def _scan(text: str) -> tuple[list[float], int, int]:
    tokens = run = wlen = fences = ticks = listed = qmarks = mathsym = 0
    counts = [0] * N_CATEGORIES
    wh = 0
    line = 1
    scripts = 0
    for ch in text:
        c = ord(ch)
        if _is_word(c):
            run += 1
        else:
            if run:
                tokens += 1 + (run - 1) // 5
                run = 0
            if not (c == 32 or 9 <= c <= 13):
                tokens += 1
        if 65 <= c <= 90 or 97 <= c <= 122:
            if wlen < MAX_WORD:
                wh = (wh << 5) | (c & 31)
            wlen += 1
        elif wlen:
            if wlen <= MAX_WORD:
                cat = _TABLE.get(wh)
                if cat is not None:
                    counts[cat] += 1
            wlen = 0
            wh = 0
        if c == 96:
            ticks += 1
            if ticks == 3:
                fences += 1
                ticks = 0
        else:
            ticks = 0
        if c == 10:
            line = 1
        elif line == 1:
            if 48 <= c <= 57:
                line = 2
            elif c in (45, 42, 0x2022):
                line = 3
            elif not (c == 32 or 9 <= c <= 13):
                line = 0
        elif line == 2:
            if c in (46, 41):
                listed += 1
                line = 0
            elif not 48 <= c <= 57:
                line = 0
        elif line == 3:
            if c == 32:
                listed += 1
            line = 0
        if c in (63, 0xFF1F):
            qmarks += 1
        elif c in (61, 94, 0x3C0) or 0x2200 <= c <= 0x22FF:
            mathsym += 1
        scripts |= _script_bit(c)
    if run:
        tokens += 1 + (run - 1) // 5
    if wlen and wlen <= MAX_WORD:
        cat = _TABLE.get(wh)
        if cat is not None:
            counts[cat] += 1
    f, best = _summary(counts, tokens, fences, listed, qmarks, mathsym, scripts)
    return f, best, tokens


def _summary(
    counts: list[int], tokens: int, fences: int, listed: int, qmarks: int, mathsym: int, scripts: int
) -> tuple[list[float], int]:
    """The scan's counts as the feature vector and the task with the most evidence (the .pyx does it inline)."""
    nscripts = bin(scripts).count("1")
    f = [
        math.log1p(float(tokens)) / 8.0,
        _cap(counts[CODE] + 3 * fences, 30, 10.0),
        _cap(counts[MATH] + mathsym // 4, 20, 5.0),
        _cap(counts[4] + listed, 20, 5.0),
        _cap(qmarks, 10, 5.0),
        _cap(counts[11], 20, 5.0),
        _cap(counts[12], 10, 5.0),
        _cap(counts[13], 10, 5.0),
        float(nscripts - 1 if nscripts > 1 else 0),
        _cap(counts[7], 10, 5.0),
        _cap(counts[5], 10, 5.0),
        _cap(counts[8], 10, 5.0),
        _cap(counts[9], 10, 5.0),
        _cap(counts[0] + counts[1] + counts[2] + counts[3], 10, 5.0),
    ]
    best, best_count = _N_TASKS, 0
    for t in range(_N_TASKS):
        score_t = counts[t]
        if t == CODE:
            score_t += 3 * fences
        elif t == REASONING:
            score_t += counts[MATH]
        elif t == SYNTHESIS and tokens >= 3000:
            score_t += 3
        if score_t > best_count:
            best_count, best = score_t, t
    return f, best


class Scorer:
    def __init__(self, weights: tuple[float, ...] | list[float]) -> None:
        if len(weights) != len(FEATURES) + 1:
            raise ValueError(f"expected {len(FEATURES) + 1} weights (bias first), got {len(weights)}")
        self._w = [float(w) for w in weights]

    def score(self, text: str) -> tuple[float, int, int]:
        f, task, tokens = _scan(text)
        w = self._w
        z = w[0]
        for i in range(len(f)):
            z = z + w[i + 1] * f[i]
        z = min(max(z, -50.0), 50.0)
        return 1.0 / (1.0 + math.exp(-z)), task, tokens


def features(text: str) -> tuple[tuple[float, ...], int, int]:
    f, task, tokens = _scan(text)
    return tuple(f), task, tokens


# -- learned router (twin of the compiled one: same hashes, same sums in the same order) -----------------------

MIX = 0x9E3779B97F4A7C15
SEED_BIGRAM = 0x51ED270B3A2C1F37
SEED_PREFIX = 0x2545F4914F6CDD1D
SEED_TRI = 0x9FB21C651E98DF25
PREFIX = 5
PAD = 32
MAX_FEATURES = 4096
MAX_TASKS = 32


def _fold(c: int) -> int:
    if 65 <= c <= 90:
        return c + 32
    if 48 <= c <= 57:
        return 48
    if c < 128:
        return c
    if (0xC0 <= c <= 0xDE and c != 0xD7) or 0x391 <= c <= 0x3A9 or 0x410 <= c <= 0x42F:
        return c + 32
    if 0x400 <= c <= 0x40F:
        return c + 80
    return c


def _hash_class(c: int) -> int:
    if c < 128:
        return 1 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 95) else 0
    if c < 0xC0 or c in (0xD7, 0xF7) or 0x2000 <= c <= 0x2BFF:
        return 0
    if c < 0x2E80:
        return 1
    if 0x3000 <= c <= 0x303F or 0xFF00 <= c <= 0xFF20 or 0xFE30 <= c <= 0xFE4F:
        return 0
    return 2


def _step(h: int, c: int) -> int:
    return ((h ^ c) * FNV_PRIME) & MASK64


class _Hasher:
    """The compiled hasher's state machine, one character at a time."""

    def __init__(self) -> None:
        self.words: list[int] = []
        self.chars: list[int] = []
        self.h, self.prefix, self.prev = FNV_OFFSET, 0, 0
        self.c1 = self.c2 = 0
        self.wlen = self.padded = 0
        self.has_prev = False

    def push_char(self, c: int) -> None:
        if self.padded >= 2 and len(self.chars) < MAX_FEATURES:
            tri = _step(_step(_step(FNV_OFFSET ^ SEED_TRI, self.c2), self.c1), c)
            self.chars.append((tri * MIX) & MASK64)
        self.c2, self.c1 = self.c1, c
        self.padded += 1

    def emit(self, v: int) -> None:
        if len(self.words) < MAX_FEATURES:
            self.words.append((v * MIX) & MASK64)

    def end_word(self) -> None:
        if self.wlen == 0:
            return
        self.emit(self.h)
        if self.has_prev:
            self.emit(((self.prev * MIX) & MASK64) ^ self.h ^ SEED_BIGRAM)
        if self.wlen > PREFIX:
            self.emit(self.prefix ^ SEED_PREFIX)
        self.prev, self.has_prev = self.h, True
        self.wlen = 0
        self.h = FNV_OFFSET

    def end_chunk(self) -> None:
        if self.padded:
            self.push_char(PAD)
            self.padded = 0

    def word_char(self, f: int) -> None:
        self.h = _step(self.h, f)
        self.wlen += 1
        if self.wlen == PREFIX:
            self.prefix = self.h


def _hash_text(text: str) -> tuple[list[int], list[int]]:
    s = _Hasher()
    for ch in text:
        if len(s.words) >= MAX_FEATURES and len(s.chars) >= MAX_FEATURES:
            break
        c = ord(ch)
        cls = _hash_class(c)
        if c == 32 or 9 <= c <= 13 or c in (0xA0, 0x3000):
            s.end_chunk()
        else:
            if s.padded == 0:
                s.push_char(PAD)
            s.push_char(_fold(c))
        if cls == 1:
            s.word_char(_fold(c))
            continue
        s.end_word()
        if cls == 2:
            s.word_char(c)
            s.end_word()
    s.end_word()
    s.end_chunk()
    return s.words, s.chars


def hashed_buckets(text: str, bits: int) -> tuple[list[int], list[int]]:
    shift = 64 - bits
    words, chars = _hash_text(text)
    return [v >> shift for v in words], [v >> shift for v in chars]


def _log2(n: int) -> int:
    bits = max(n - 1, 0).bit_length()
    if (1 << bits) != n or not 1 <= bits <= 30:
        raise ValueError(f"a bucket table must have a power-of-two size, got {n}")
    return bits


class LinearRouter:
    def __init__(
        self,
        bias: float,
        dense: Sequence[float],
        buckets: Sequence[float],
        task_bias: Sequence[float],
        task_dense: Sequence[Sequence[float]],
        task_buckets: Sequence[Sequence[float]],
    ) -> None:
        if len(dense) != len(FEATURES):
            raise ValueError(f"expected {len(FEATURES)} dense weights, got {len(dense)}")
        self._bb = float(bias)
        self._bd = [float(v) for v in dense]
        self._bits = _log2(len(buckets))
        self._bw = [float(v) for v in buckets]
        self._task_bits = _log2(len(task_buckets))
        self._k = len(task_buckets[0])
        if not 1 <= self._k <= MAX_TASKS:
            raise ValueError(f"task head: 1 to {MAX_TASKS} classes, got {self._k}")
        if len(task_bias) != self._k or len(task_dense) != len(FEATURES):
            raise ValueError("task head: expected K biases and N_FEAT x K dense weights")
        self._tw = [[float(v) for v in row] for row in task_buckets]
        self._tb = [float(v) for v in task_bias]
        self._td = [[float(v) for v in row] for row in task_dense]

    def predict(self, text: str) -> tuple[float, int, int]:
        f, _, tokens = _scan(text)
        words, chars = _hash_text(text)
        shift, tshift = 64 - self._bits, 64 - self._task_bits
        z = 0.0
        for v in words:
            z = z + self._bw[v >> shift]
        zc = 0.0
        for v in chars:
            zc = zc + self._bw[v >> shift]
        norm = math.sqrt(float(len(words) if words else 1))
        z = self._bb + z / norm + zc / math.sqrt(float(len(chars) if chars else 1))
        for i in range(len(f)):
            z = z + self._bd[i] * f[i]
        z = min(max(z, -50.0), 50.0)
        zs = [0.0] * self._k
        for v in words:
            row = self._tw[v >> tshift]
            for j in range(self._k):
                zs[j] = zs[j] + row[j]
        best, best_z = 0, -1e300
        for j in range(self._k):
            zt = self._tb[j] + zs[j] / norm
            for i in range(len(f)):
                zt = zt + self._td[i][j] * f[i]
            if zt > best_z:
                best_z, best = zt, j
        return 1.0 / (1.0 + math.exp(-z)), best, tokens
