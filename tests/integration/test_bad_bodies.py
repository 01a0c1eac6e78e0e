"""Bodies that cannot be read (bad compression, broken chunking, truncation, bombs) get a 400/413 in the caller's
API format, on every endpoint, never a 500 and never a logged traceback."""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib

import orjson
import pytest

pytestmark = pytest.mark.model

ENDPOINTS = ["/v1/chat/completions", "/v1/messages", "/v1/embeddings", "/v1/route"]
BODY = orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})


async def _raw(base_url: str, head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + body)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    header_part, _, payload = raw.partition(b"\r\n\r\n")
    lines = header_part.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        payload = _unchunk(payload)
    return status, headers, payload


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def _head(path: str, extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def _assert_error(path: str, status: int, headers: dict[str, str], payload: bytes, expected: int) -> dict:
    assert status == expected, payload
    assert headers["content-type"].startswith("application/json")
    body = orjson.loads(payload)
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"] and "Traceback" not in err["message"]
    if err.get("code") == "bad_http":
        # Rejected by the HTTP parser, where the path may be unknown: a body both SDKs read as their own error.
        assert body["type"] == "error" and set(err) == {"message", "type", "param", "code"}
        return err
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and err["type"] in {"invalid_request_error", "request_too_large"}
        return err
    assert set(body) == {"error"} and set(err) == {"message", "type", "param", "code"}
    return err


CASES = {
    "gzip-garbage": ("Content-Encoding: gzip\r\nContent-Length: 20\r\n", b"this is not gzip!!!!", 400),
    "deflate-garbage": ("Content-Encoding: deflate\r\nContent-Length: 12\r\n", b"not deflate!", 400),
    "truncated-gzip": (None, gzip.compress(BODY)[:-12], 400),
    "bad-chunk-size": ("Transfer-Encoding: chunked\r\n", b'5\r\n{"a":\r\nzz\r\n1}\r\n0\r\n\r\n', 400),
    "short-body": ("Content-Length: 500\r\n", BODY, 400),
}


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_unreadable_body_is_a_4xx_in_the_api_format(base_url: str, path: str, case: str, caplog) -> None:
    extra, body, expected = CASES[case]
    if extra is None:
        extra = f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
    if case == "short-body":
        # The client stops sending: the server must answer (400) rather than wait forever or crash.
        async def go() -> tuple[int, dict[str, str], bytes]:
            host, port = base_url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(_head(path, extra) + body)
            await writer.drain()
            writer.write_eof()
            raw = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            return raw

        raw = asyncio.run(go())
        if not raw:
            return  # the server may just close a half-closed connection: no 500, nothing logged
        status = int(raw.split(b" ", 2)[1])
        assert status < 500, raw
        return
    with caplog.at_level(logging.ERROR, logger="router"):
        status, headers, payload = asyncio.run(_raw(base_url, _head(path, extra), body))
    _assert_error(path, status, headers, payload, expected)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_valid_gzip_body_is_accepted(base_url: str) -> None:
    body = gzip.compress(BODY)
    head = _head("/v1/route", f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n")
    status, _, payload = asyncio.run(_raw(base_url, head, body))
    assert status == 200, payload
    assert orjson.loads(payload)["tier"] in {"local", "frontier", "advisor"}


def test_decompression_bomb_is_refused(base_url: str) -> None:
    # 64 MiB of zeros in ~64 KiB: decompressed it is far over server.max_body_bytes.
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    head = _head("/v1/chat/completions", f"Content-Encoding: deflate\r\nContent-Length: {len(bomb)}\r\n")
    status, headers, payload = asyncio.run(_raw(base_url, head, bomb))
    assert status in (400, 413), payload
    _assert_error("/v1/chat/completions", status, headers, payload, status)
