"""Pure-Python twin of `router/_fastpath.pyx`: identical results, used when the extension is not built."""

from __future__ import annotations

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
