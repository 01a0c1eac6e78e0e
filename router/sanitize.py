"""What of an upstream's error may reach a client or a log line.

Upstream error bodies are not ours to forward: real APIs echo a fragment of the key in a 401, proxies echo the
request's headers or body. Clients get a status, a type and a message the router writes itself (with the upstream's
status and error type, and `param` when it is a plain field path). Logs get the upstream's message only at debug
level (it may quote the prompt), with anything key-like removed.
"""

from __future__ import annotations

import re

# sk-…, sk-ant-…, AIza… (Google), bearer tokens, key=… query strings, x-api-key headers.
_KEYLIKE = re.compile(
    r"(sk-[A-Za-z0-9_\-]{6,}|AIza[0-9A-Za-z_\-]{10,}|(?i:bearer)\s+\S+|(?i:x-api-key)\s*[:=]\s*\S+|(?i:key)=[^&\s]+)"
)
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\[\]-]{0,63}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def redact(text: str, secrets: tuple[str, ...] = (), limit: int = 300) -> str:
    """`text` with the given secrets (and any fragment of them of 8+ characters) and key-like tokens removed."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
            for i in range(0, max(0, len(secret) - 7)):  # a key fragment echoed back ("sk-...abcd1234")
                frag = secret[i : i + 8]
                if frag in text:
                    text = text.replace(frag, "[redacted]")
    text = _KEYLIKE.sub("[redacted]", text)
    return text[:limit]


def safe_param(param: object) -> str | None:
    """An upstream's `param` only when it is a plain field path (no value, no free text)."""
    return param if isinstance(param, str) and _PARAM.match(param) else None


def safe_kind(kind: object) -> str | None:
    """An upstream's error type only when it is a plain identifier, e.g. `invalid_request_error`."""
    return kind if isinstance(kind, str) and _KIND.match(kind) else None
