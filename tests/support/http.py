"""A small blocking JSON-over-HTTP client for endpoints no SDK covers (e.g. /v1/rerank): stdlib only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class JsonClient:
    def __init__(self, base_url: str, timeout: float = 60) -> None:
        self.base_url, self.timeout = base_url, timeout

    def post(self, path: str, json: Any = None, content: bytes | None = None, headers: dict | None = None) -> Reply:
        import json as _json

        data = content if content is not None else _json.dumps(json).encode()
        headers = {"content-type": "application/json", **(headers or {})}
        return self._send(urllib.request.Request(self.base_url + path, data=data, headers=headers))

    def get(self, path: str) -> Reply:
        return self._send(urllib.request.Request(self.base_url + path))

    def _send(self, request: urllib.request.Request) -> Reply:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    def __enter__(self) -> JsonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
