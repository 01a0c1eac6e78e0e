# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled hot path. `router/_fastpath_py.py` is its pure-Python twin and must return identical results.

Every function makes one linear pass over its input and allocates nothing per character.
"""

from libc.stdint cimport uint64_t

cdef uint64_t FNV_OFFSET = 0xcbf29ce484222325ULL
cdef uint64_t FNV_PRIME = 0x100000001b3ULL


def fnv1a_64(const unsigned char[:] data not None) -> int:
    """64-bit FNV-1a of a bytes-like object: a hash that is stable across processes (cache keys, snapshots)."""
    cdef uint64_t h = FNV_OFFSET
    cdef Py_ssize_t i, n = data.shape[0]
    for i in range(n):
        h ^= data[i]
        h *= FNV_PRIME
    return h


cdef inline bint _is_word(Py_UCS4 c):
    if c < 128:
        return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95
    return c < 0x2E80  # Latin, Greek, Cyrillic, … letters belong to words; CJK and beyond count per character


cdef inline bint _is_space(Py_UCS4 c):
    return c == 32 or (9 <= c <= 13)


def estimate_tokens(str text not None) -> int:
    """Estimated token count without a tokenizer: word runs cost 1 token per started 5 characters (after
    the first), each symbol 1, whitespace 0, each CJK/emoji character 1. Within ~20% of BPE tokenizers on
    English prose and code; used for routing and admission, never for billing."""
    cdef Py_ssize_t tokens = 0, run = 0
    cdef Py_UCS4 c
    for c in text:
        if _is_word(c):
            run += 1
            continue
        if run:
            tokens += 1 + (run - 1) // 5
            run = 0
        if not _is_space(c):
            tokens += 1
    if run:
        tokens += 1 + (run - 1) // 5
    return tokens
