"""API keys for test tenants, written the way `hybrid-router keys add` writes them."""

from __future__ import annotations

from pathlib import Path

from router.accounting.keys import append_key, new_key


def tenant_keys(keys_file: Path, tenants: tuple[str, ...]) -> dict[str, str]:
    """One new key per tenant, appended to `keys_file`; returns tenant → the key a client sends."""
    keys = {}
    for tenant in tenants:
        key, stored = new_key(tenant)
        append_key(keys_file, stored)
        keys[tenant] = key
    return keys
