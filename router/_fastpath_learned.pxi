# Included by router/_fastpath.pyx (one extension module: the linear heads read _scan's dense features).

# -- learned router: hashed n-grams + linear heads -----------------------------------------------------------
# Twin: router/_fastpath_py.py `hashed_buckets` and `LinearRouter`. A text becomes two families of feature hashes.
# Words: each word (case-folded, digits folded to 0), each pair of adjacent words, and the first 5 characters of
# each longer word. Characters: the 3-grams of each chunk padded with a space on both sides, which carry
# meaning across inflections, compounds and languages the word features have never seen; they are taken over
# whitespace-separated chunks, so punctuation, code and maths symbols count too. CJK-range characters are words
# of their own. A feature lands in bucket (hash * MIX) >> (64 - bits). The binary head's logit is
# bias + sum(word weights) / sqrt(n_words) + sum(char weights) / sqrt(n_chars) + dense weights x _scan features;
# the task head reads the word family only. Same order, same doubles as the twin.

from libc.math cimport sqrt

cdef uint64_t MIX = 0x9E3779B97F4A7C15ULL
cdef uint64_t SEED_BIGRAM = 0x51ED270B3A2C1F37ULL
cdef uint64_t SEED_PREFIX = 0x2545F4914F6CDD1DULL
cdef uint64_t SEED_TRI = 0x9FB21C651E98DF25ULL
DEF PREFIX = 5
DEF PAD = 32
DEF MAX_TASKS = 32
DEF MAX_FEATURES = 4096  # per family: a prompt's first 4096 features decide; longer texts add only length


cdef inline unsigned int _fold(unsigned int c) noexcept nogil:
    if 65 <= c <= 90:
        return c + 32
    if 48 <= c <= 57:
        return 48
    if c < 128:
        return c
    if (0xC0 <= c <= 0xDE and c != 0xD7) or (0x391 <= c <= 0x3A9) or (0x410 <= c <= 0x42F):
        return c + 32
    if 0x400 <= c <= 0x40F:
        return c + 80
    return c


cdef inline int _hash_class(unsigned int c) noexcept nogil:
    """0: separator, 1: part of a word, 2: a word by itself (CJK-range characters, emoji)."""
    if c < 128:
        return 1 if ((48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95) else 0
    if c < 0xC0 or c == 0xD7 or c == 0xF7 or (0x2000 <= c <= 0x2BFF):
        return 0
    if c < 0x2E80:
        return 1
    if (0x3000 <= c <= 0x303F) or (0xFF00 <= c <= 0xFF20) or (0xFE30 <= c <= 0xFE4F):
        return 0
    return 2


cdef struct _Hasher:
    uint64_t h, prefix, prev
    unsigned int c1, c2  # the last two padded characters of the current chunk, c1 the latest
    Py_ssize_t wlen, padded, n, nc
    bint has_prev
    uint64_t* out
    uint64_t* chars


cdef inline uint64_t _gram(uint64_t seed, unsigned int a, unsigned int b, unsigned int c) noexcept nogil:
    return ((((FNV_OFFSET ^ seed) ^ a) * FNV_PRIME ^ b) * FNV_PRIME ^ c) * FNV_PRIME


cdef inline void _push_char(_Hasher* s, unsigned int c) noexcept nogil:
    """One more character of the padded chunk: emit the 3-gram it ends."""
    if s.padded >= 2 and s.nc < MAX_FEATURES:
        s.chars[s.nc] = _gram(SEED_TRI, s.c2, s.c1, c) * MIX
        s.nc += 1
    s.c2 = s.c1
    s.c1 = c
    s.padded += 1


cdef inline void _emit(_Hasher* s, uint64_t v) noexcept nogil:
    if s.n < MAX_FEATURES:
        s.out[s.n] = v * MIX
        s.n += 1


cdef inline void _end_word(_Hasher* s) noexcept nogil:
    if s.wlen == 0:
        return
    _emit(s, s.h)
    if s.has_prev:
        _emit(s, (s.prev * MIX) ^ s.h ^ SEED_BIGRAM)
    if s.wlen > PREFIX:
        _emit(s, s.prefix ^ SEED_PREFIX)
    s.prev = s.h
    s.has_prev = 1
    s.wlen = 0
    s.h = FNV_OFFSET


cdef inline void _word_char(_Hasher* s, unsigned int f) noexcept nogil:
    s.h = (s.h ^ f) * FNV_PRIME
    s.wlen += 1
    if s.wlen == PREFIX:
        s.prefix = s.h


cdef inline bint _is_blank(unsigned int c) noexcept nogil:
    return c == 32 or (9 <= c <= 13) or c == 0xA0 or c == 0x3000


cdef inline void _end_chunk(_Hasher* s) noexcept nogil:
    if s.padded:
        _push_char(s, PAD)
        s.padded = 0


cdef inline void _hash_step(_Hasher* s, unsigned int c) noexcept nogil:
    cdef int cls = _hash_class(c)
    # Character family: 3-grams of each whitespace-separated chunk, punctuation and symbols included.
    if _is_blank(c):
        _end_chunk(s)
    else:
        if s.padded == 0:
            _push_char(s, PAD)
        _push_char(s, _fold(c))
    # Word family: runs of letters and digits; CJK-range characters are words of their own.
    if cls == 1:
        _word_char(s, _fold(c))
        return
    _end_word(s)
    if cls == 2:
        _word_char(s, c)
        _end_word(s)


cdef void _hash_text(str text, _Hasher* s) noexcept:
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(text)
    s.h = FNV_OFFSET
    s.prefix = s.prev = 0
    s.c1 = s.c2 = 0
    s.wlen = s.padded = s.n = s.nc = 0
    s.has_prev = 0
    for i in range(n):
        if s.n >= MAX_FEATURES and s.nc >= MAX_FEATURES:
            break
        if kind == 1:
            _hash_step(s, (<const uint8_t*>data)[i])
        elif kind == 2:
            _hash_step(s, (<const uint16_t*>data)[i])
        else:
            _hash_step(s, (<const uint32_t*>data)[i])
    _end_word(s)
    _end_chunk(s)


def hashed_buckets(str text not None, int bits):
    """(word buckets, character buckets), each in 0 .. 2**bits - 1, in order: what the router's heads read."""
    cdef uint64_t words[MAX_FEATURES]
    cdef uint64_t chars[MAX_FEATURES]
    cdef _Hasher s
    cdef Py_ssize_t i
    cdef int shift = 64 - bits
    s.out = words
    s.chars = chars
    _hash_text(text, &s)
    return [<Py_ssize_t>(words[i] >> shift) for i in range(s.n)], [<Py_ssize_t>(chars[i] >> shift) for i in range(s.nc)]


cdef class LinearRouter:
    """P(the local answer is not good enough) and the task, from two linear heads over the same features.

    binary: bias + dense (N_FEAT) + buckets (2**bits); task: K biases + dense (N_FEAT x K) + buckets (2**task_bits x K).
    """

    cdef const float[::1] _bw
    cdef const float[:, ::1] _tw
    cdef double _bb
    cdef double _bd[N_FEAT]
    cdef double[:, ::1] _td
    cdef double[::1] _tb
    cdef int _bits, _task_bits, _k

    def __init__(self, bias, dense, buckets, task_bias, task_dense, task_buckets):
        cdef int i, j
        if len(dense) != N_FEAT:
            raise ValueError(f"expected {N_FEAT} dense weights, got {len(dense)}")
        self._bb = bias
        for i in range(N_FEAT):
            self._bd[i] = dense[i]
        self._bw = buckets
        self._bits = _log2(buckets.shape[0])
        self._tw = task_buckets
        self._task_bits = _log2(task_buckets.shape[0])
        self._k = task_buckets.shape[1]
        if not 1 <= self._k <= MAX_TASKS:
            raise ValueError(f"task head: 1 to {MAX_TASKS} classes, got {self._k}")
        if len(task_bias) != self._k or len(task_dense) != N_FEAT:
            raise ValueError("task head: expected K biases and N_FEAT x K dense weights")
        self._tb = _doubles([task_bias[j] for j in range(self._k)])
        self._td = _doubles([task_dense[i][j] for i in range(N_FEAT) for j in range(self._k)]).reshape(N_FEAT, self._k)

    def predict(self, str text not None):
        """(p_frontier, task index, estimated tokens)."""
        cdef double f[N_FEAT]
        cdef Py_ssize_t tokens, i
        cdef uint64_t words[MAX_FEATURES]
        cdef uint64_t chars[MAX_FEATURES]
        cdef _Hasher s
        cdef double z, zc, norm, best_z, zt
        cdef double zs[MAX_TASKS]
        cdef int j, best = 0, k = self._k
        cdef int shift = 64 - self._bits, tshift = 64 - self._task_bits
        cdef const float* bw
        cdef const float* tw
        cdef const float* row
        _scan(text, f, &tokens)
        s.out = words
        s.chars = chars
        _hash_text(text, &s)
        bw = &self._bw[0]
        tw = &self._tw[0, 0]
        z = 0.0
        for i in range(s.n):
            z = z + bw[words[i] >> shift]
        zc = 0.0
        for i in range(s.nc):
            zc = zc + bw[chars[i] >> shift]
        norm = sqrt(<double>(s.n if s.n > 0 else 1))
        z = self._bb + z / norm + zc / sqrt(<double>(s.nc if s.nc > 0 else 1))
        for i in range(N_FEAT):
            z = z + self._bd[i] * f[i]
        z = 50.0 if z > 50.0 else (-50.0 if z < -50.0 else z)
        for j in range(k):
            zs[j] = 0.0
        for i in range(s.n):  # bucket-major: one cache line per feature for all K classes
            row = tw + (<Py_ssize_t>(words[i] >> tshift)) * k
            for j in range(k):
                zs[j] = zs[j] + row[j]
        best_z = -1e300
        for j in range(self._k):
            zt = self._tb[j] + zs[j] / norm
            for i in range(N_FEAT):
                zt = zt + self._td[i, j] * f[i]
            if zt > best_z:
                best_z = zt
                best = j
        return 1.0 / (1.0 + exp(-z)), best, tokens


cdef int _log2(Py_ssize_t n) except -1:
    cdef int bits = 0
    while (<Py_ssize_t>1 << bits) < n:
        bits += 1
    if (<Py_ssize_t>1 << bits) != n or bits < 1 or bits > 30:
        raise ValueError(f"a bucket table must have a power-of-two size, got {n}")
    return bits


def _doubles(values):
    import numpy
    return numpy.ascontiguousarray(values, dtype=numpy.float64)
