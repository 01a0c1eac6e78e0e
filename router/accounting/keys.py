"""API keys: `hr_<key id>_<secret>`, stored as salted SHA-256 hashes, checked in constant time.

Keys are 32 random bytes, so a fast salted hash is enough (there is nothing to brute-force); a slow KDF would
put milliseconds on every request. The key id makes lookup O(1) without ever comparing secrets by value.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

PREFIX = "hr"


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: str
    tenant: str
    salt: str  # hex
    hash: str  # hex sha256(salt + secret)
    name: str = ""

    def matches(self, secret: str) -> bool:
        digest = hashlib.sha256(bytes.fromhex(self.salt) + secret.encode()).hexdigest()
        return hmac.compare_digest(digest, self.hash)


def new_key(tenant: str, name: str = "") -> tuple[str, StoredKey]:
    """A fresh key (shown once) and what to store for it."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    digest = hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()
    return f"{PREFIX}_{key_id}_{secret}", StoredKey(key_id, tenant, salt, digest, name)


class KeyStore:
    def __init__(self, keys: list[StoredKey]) -> None:
        self._by_id = {k.id: k for k in keys}

    def __len__(self) -> int:
        return len(self._by_id)

    def tenant_of(self, presented: str) -> str | None:
        """The tenant a presented key belongs to, or None. Never says why a key failed."""
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        stored = self._by_id.get(parts[1])
        if stored is None:
            # Same work as a real check, so timing does not reveal which key ids exist.
            StoredKey("", "", "00" * 16, "0" * 64).matches(parts[2])
            return None
        return stored.tenant if stored.matches(parts[2]) else None


def load_keys_file(path: str | Path) -> list[StoredKey]:
    """A YAML list of {id, tenant, salt, hash, name}. A missing file is an empty store."""
    p = Path(path)
    if not p.exists():
        return []
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of keys")
    keys = []
    for i, row in enumerate(data):
        if not isinstance(row, dict) or not {"id", "tenant", "salt", "hash"} <= set(row):
            raise ValueError(f"{path}: entry {i} needs id, tenant, salt and hash")
        keys.append(
            StoredKey(str(row["id"]), str(row["tenant"]), str(row["salt"]), str(row["hash"]), str(row.get("name", "")))
        )
    return keys


def append_key(path: str | Path, key: StoredKey) -> None:
    """Add one key to the keys file, atomically (write a temp file, then rename), private to the owner."""
    p = Path(path)
    rows = [vars_of(k) for k in load_keys_file(p)] + [vars_of(key)]
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(yaml.safe_dump(rows, sort_keys=False), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(p)


def vars_of(key: StoredKey) -> dict[str, str]:
    return {"id": key.id, "tenant": key.tenant, "salt": key.salt, "hash": key.hash, "name": key.name}
