"""The cache's snapshot file: written atomically, checked whole before anything in it is trusted.

Layout (little-endian):

    magic "HRCACHE\\n" · u32 format · u64 metadata length · u64 vector bytes · metadata (JSON) · vectors
    (float32 rows) · u32 CRC-32 of everything before it

A snapshot is written to a temporary file in the same directory, flushed to disk, then renamed over the old
one, so a crash mid-write leaves the previous snapshot intact. Reading raises SnapshotError for anything
unexpected (truncated, bit flips, another format); the caller reports it and starts empty.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson

MAGIC = b"HRCACHE\n"
FORMAT = 1
FILE_NAME = "cache.snapshot"
_HEADER = struct.Struct("<IQQ")
_CRC = struct.Struct("<I")


class SnapshotError(Exception):
    """The snapshot cannot be used (the message says why)."""


def write(path: Path, meta: dict[str, Any], vectors: np.ndarray) -> int:
    """Write atomically; returns the file's size."""
    meta_bytes = orjson.dumps(meta)
    vec_bytes = np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    parts = [MAGIC, _HEADER.pack(FORMAT, len(meta_bytes), len(vec_bytes)), meta_bytes, vec_bytes]
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
            f.write(_CRC.pack(crc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    # Make the rename itself durable.
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return sum(map(len, parts)) + _CRC.size


def read(path: Path, dim: int | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """(metadata, vectors [n, dim]); SnapshotError when the file is not a whole, valid snapshot."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read it: {exc.strerror}") from None
    head = len(MAGIC) + _HEADER.size
    if len(data) < head + _CRC.size or not data.startswith(MAGIC):
        raise SnapshotError("not a hybrid-router cache snapshot")
    version, meta_len, vec_len = _HEADER.unpack_from(data, len(MAGIC))
    if version != FORMAT:
        raise SnapshotError(f"snapshot format {version}, this build reads format {FORMAT}")
    end = head + meta_len + vec_len
    if len(data) != end + _CRC.size:
        raise SnapshotError("truncated or padded")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(memoryview(data)[:end]) != crc:
        raise SnapshotError("checksum mismatch (corrupt)")
    try:
        meta = orjson.loads(memoryview(data)[head : head + meta_len])
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"bad metadata: {exc}") from None
    if type(meta) is not dict:
        raise SnapshotError("bad metadata")
    width = dim if dim is not None else int(meta.get("dim") or 0)
    vectors = np.frombuffer(data, dtype="<f4", count=vec_len // 4, offset=head + meta_len)
    if width <= 0:
        if vec_len:
            raise SnapshotError("vectors without a dimension")
        return meta, np.zeros((0, 0), dtype=np.float32)
    if vec_len % (4 * width):
        raise SnapshotError("vector data does not divide into rows")
    return meta, vectors.reshape(-1, width).astype(np.float32)
