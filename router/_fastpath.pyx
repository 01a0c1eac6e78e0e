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


cdef inline bint _is_word(unsigned int c) noexcept nogil:
    if c < 128:
        return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95
    return c < 0x2E80  # Latin, Greek, Cyrillic, … letters belong to words; CJK and beyond count per character


cdef inline bint _is_space(unsigned int c) noexcept nogil:
    return c == 32 or (9 <= c <= 13)


# -- one pass over text ---------------------------------------------------------------------------------------
# The state machine below is shared by estimate_tokens and the scorer. The text is read straight from the str's
# buffer with a loop specialised per storage width (1, 2 or 4 bytes per character), which is what makes it fast.

from libc.math cimport exp, log1p
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memset

cdef extern from "Python.h":
    int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)

DEF N_CAT = 14
DEF N_FEAT = 14
DEF N_TASKS = 10
DEF TABLE = 1024
DEF MAX_WORD = 12
DEF CODE = 6
DEF REASONING = 8
DEF SYNTHESIS = 5
DEF MATH = 10

cdef uint64_t _keys[TABLE]
cdef signed char _vals[TABLE]

# ASCII character classes, so the common case is one table load instead of a chain of comparisons.
DEF C_WORD = 1
DEF C_SPACE = 2
DEF C_LETTER = 4
DEF C_MARK = 8  # characters the marker counters look at: ` newline ? = ^
cdef unsigned char _ascii[128]


cdef void _init_ascii():
    cdef unsigned int c
    for c in range(128):
        _ascii[c] = (C_WORD if _is_word(c) else 0) | (C_SPACE if _is_space(c) else 0)
        if (65 <= c <= 90) or (97 <= c <= 122):
            _ascii[c] |= C_LETTER
        if c == 96 or c == 10 or c == 63 or c == 61 or c == 94:
            _ascii[c] |= C_MARK


_init_ascii()


cdef struct _State:
    Py_ssize_t tokens, run, wlen, fences, ticks, listed, qmarks, mathsym
    Py_ssize_t counts[N_CAT]
    uint64_t wh
    int line
    int scripts


cdef inline void _init(_State* st) noexcept nogil:
    memset(st, 0, sizeof(_State))
    st.line = 1


cdef inline Py_ssize_t _finish_tokens(_State* st) noexcept nogil:
    if st.run:
        return st.tokens + 1 + (st.run - 1) // 5
    return st.tokens


cdef inline void _step_tokens(_State* st, unsigned int c) noexcept nogil:
    cdef unsigned char cls
    if c < 128:
        cls = _ascii[c]
    else:
        cls = C_WORD if c < 0x2E80 else 0
    if cls & C_WORD:
        st.run += 1
    else:
        if st.run:
            st.tokens += 1 + (st.run - 1) // 5
            st.run = 0
        if not (cls & C_SPACE):
            st.tokens += 1


cdef inline void _step_markers(_State* st, unsigned int c) noexcept nogil:
    cdef int cat
    # marker words: runs of ASCII letters, lower-cased
    if c < 128 and (_ascii[c] & C_LETTER):
        if st.wlen < MAX_WORD:
            st.wh = (st.wh << 5) | (c & 31)
        st.wlen += 1
        st.scripts |= 1
        st.ticks = 0
        if st.line != 0:
            st.line = 0
        return
    if st.wlen:
        if st.wlen <= MAX_WORD:
            cat = _lookup(st.wh)
            if cat >= 0:
                st.counts[cat] += 1
        st.wlen = 0
        st.wh = 0
    if c < 128 and st.line == 0 and not (_ascii[c] & C_MARK):
        st.ticks = 0  # ordinary punctuation or space mid-line: nothing else to count
        return
    # code fences
    if c == 96:
        st.ticks += 1
        if st.ticks == 3:
            st.fences += 1
            st.ticks = 0
    else:
        st.ticks = 0
    # numbered or bulleted lines
    if c == 10:
        st.line = 1
    elif st.line == 1:
        if 48 <= c <= 57:
            st.line = 2
        elif c == 45 or c == 42 or c == 0x2022:
            st.line = 3
        elif not _is_space(c):
            st.line = 0
    elif st.line == 2:
        if c == 46 or c == 41:
            st.listed += 1
            st.line = 0
        elif not (48 <= c <= 57):
            st.line = 0
    elif st.line == 3:
        if c == 32:
            st.listed += 1
        st.line = 0
    if c == 63 or c == 0xFF1F:
        st.qmarks += 1
    elif c == 61 or c == 94 or (0x2200 <= c <= 0x22FF) or c == 0x3C0:
        st.mathsym += 1
    if c >= 128:
        st.scripts |= _script_bit(c)


cdef inline void _step_all(_State* st, unsigned int c) noexcept nogil:
    # Letters are most of any text: handle them with one table load and no branches on the state.
    if c < 128 and (_ascii[c] & C_LETTER):
        st.run += 1
        if st.wlen < MAX_WORD:
            st.wh = (st.wh << 5) | (c & 31)
        st.wlen += 1
        st.scripts |= 1
        st.ticks = 0
        st.line = 0
        return
    _step_tokens(st, c)
    _step_markers(st, c)


cdef inline void _run(str text, _State* st, bint markers) noexcept:
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(text)
    cdef const uint8_t* p1
    cdef const uint16_t* p2
    cdef const uint32_t* p4
    if kind == 1:
        p1 = <const uint8_t*>data
        if markers:
            for i in range(n):
                _step_all(st, p1[i])
        else:
            for i in range(n):
                _step_tokens(st, p1[i])
    elif kind == 2:
        p2 = <const uint16_t*>data
        if markers:
            for i in range(n):
                _step_all(st, p2[i])
        else:
            for i in range(n):
                _step_tokens(st, p2[i])
    else:
        p4 = <const uint32_t*>data
        if markers:
            for i in range(n):
                _step_all(st, p4[i])
        else:
            for i in range(n):
                _step_tokens(st, p4[i])


cdef inline Py_ssize_t _slot(uint64_t code) noexcept nogil:
    return <Py_ssize_t>((code * 0x9E3779B97F4A7C15ULL) >> 54)  # top 10 bits: TABLE = 1024


cdef inline int _lookup(uint64_t h) noexcept nogil:
    cdef Py_ssize_t i = _slot(h)
    while _keys[i] != 0:
        if _keys[i] == h:
            return _vals[i]
        i = (i + 1) & (TABLE - 1)
    return -1


cdef inline int _script_bit(unsigned int c) noexcept nogil:
    if c < 128:
        return 1 if ((65 <= c <= 90) or (97 <= c <= 122)) else 0
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
    if (0x3040 <= c <= 0x30FF) or (0x4E00 <= c <= 0x9FFF) or (0xAC00 <= c <= 0xD7AF):
        return 32
    return 0


cdef inline double _cap(Py_ssize_t v, Py_ssize_t hi, double div) noexcept nogil:
    return <double>(v if v < hi else hi) / div


cdef int _scan(str text, double* f, Py_ssize_t* tokens_out) noexcept:
    """One pass over `text`: fill the features `f` and the token estimate, return the task index."""
    cdef _State st
    cdef int best, t, nscripts = 0, scripts
    cdef Py_ssize_t best_count, score_t, tokens
    cdef Py_ssize_t* counts = st.counts
    _init(&st)
    _run(text, &st, 1)
    tokens = _finish_tokens(&st)
    if st.wlen and st.wlen <= MAX_WORD:  # a trailing word
        t = _lookup(st.wh)
        if t >= 0:
            counts[t] += 1
    scripts = st.scripts
    while scripts:
        nscripts += scripts & 1
        scripts >>= 1
    f[0] = log1p(<double>tokens) / 8.0
    f[1] = _cap(counts[CODE] + 3 * st.fences, 30, 10.0)
    f[2] = _cap(counts[MATH] + st.mathsym // 4, 20, 5.0)
    f[3] = _cap(counts[4] + st.listed, 20, 5.0)
    f[4] = _cap(st.qmarks, 10, 5.0)
    f[5] = _cap(counts[11], 20, 5.0)
    f[6] = _cap(counts[12], 10, 5.0)
    f[7] = _cap(counts[13], 10, 5.0)
    f[8] = <double>(nscripts - 1 if nscripts > 1 else 0)
    f[9] = _cap(counts[7], 10, 5.0)
    f[10] = _cap(counts[5], 10, 5.0)
    f[11] = _cap(counts[8], 10, 5.0)
    f[12] = _cap(counts[9], 10, 5.0)
    f[13] = _cap(counts[0] + counts[1] + counts[2] + counts[3], 10, 5.0)
    tokens_out[0] = tokens
    # task: the category with most evidence; ties go to the lower index; none → general
    best = N_TASKS
    best_count = 0
    for t in range(N_TASKS):
        score_t = counts[t]
        if t == CODE:
            score_t += 3 * st.fences
        elif t == REASONING:
            score_t += counts[MATH]
        elif t == SYNTHESIS and tokens >= 3000:
            score_t += 3
        if score_t > best_count:
            best_count = score_t
            best = t
    return best


def estimate_tokens(str text not None) -> int:
    """Estimated token count without a tokenizer: word runs cost 1 token per started 5 characters (after
    the first), each symbol 1, whitespace 0, each CJK/emoji character 1. Within ~20% of BPE tokenizers on
    English prose and code; used for routing and admission, never for billing."""
    cdef _State st
    _init(&st)
    _run(text, &st, 0)
    return _finish_tokens(&st)


# -- complexity scorer --------------------------------------------------------------------------------------
# Twin: router/_fastpath_py.py `Scorer`. Integer counting in one pass, then the same float operations in the
# same order (compiled with -ffp-contract=off), so both return bit-identical results.



def _load_lexicon(dict table):
    """Fill the open-addressing word table (word code → category) from router.routing.lexicon."""
    cdef uint64_t h
    cdef Py_ssize_t i
    memset(_keys, 0, sizeof(_keys))
    for key, category in table.items():
        h = key
        i = _slot(h)
        while _keys[i] != 0:
            i = (i + 1) & (TABLE - 1)
        _keys[i] = h
        _vals[i] = category


cdef class Scorer:
    """Complexity score in [0, 1] and the most likely task, from weights (bias + one per feature)."""

    cdef double _w[N_FEAT + 1]

    def __init__(self, weights):
        if len(weights) != N_FEAT + 1:
            raise ValueError(f"expected {N_FEAT + 1} weights (bias first), got {len(weights)}")
        for i in range(N_FEAT + 1):
            self._w[i] = weights[i]

    def score(self, str text not None):
        """(score, task index, estimated tokens)."""
        cdef double f[N_FEAT]
        cdef Py_ssize_t tokens
        cdef int task = _scan(text, f, &tokens)
        cdef double z = self._w[0]
        cdef int i
        for i in range(N_FEAT):
            z = z + self._w[i + 1] * f[i]
        if z > 50.0:
            z = 50.0
        elif z < -50.0:
            z = -50.0
        return 1.0 / (1.0 + exp(-z)), task, tokens


def features(str text not None):
    """(feature tuple, task index, estimated tokens): what the score is made of."""
    cdef double f[N_FEAT]
    cdef Py_ssize_t tokens
    cdef int task = _scan(text, f, &tokens)
    return tuple([f[i] for i in range(N_FEAT)]), task, tokens


from router.routing.lexicon import build_table as _build_table  # noqa: E402

_load_lexicon(_build_table())


# -- learned router: hashed n-grams + linear heads (twin: _fastpath_py.py hashed_buckets, LinearRouter) ------
include "_fastpath_learned.pxi"
