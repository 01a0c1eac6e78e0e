"""Who is asking, and may they: API key → tenant, rate limits, in-flight limits, allowed tiers and models."""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from router.accounting.keys import KeyStore, load_keys_file
from router.accounting.limits import InFlight, TokenBucket
from router.config import ConfigError, Settings, TenantSettings
from router.errors import AuthenticationError, Overloaded, PermissionDenied, RateLimited
from router.state.connect import BucketFactory, bucket_factory

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from router.state.limits import SharedBucket

DEFAULT_TENANT = "default"


@dataclass
class Tenant:
    settings: TenantSettings
    requests: TokenBucket | SharedBucket | None
    tokens: TokenBucket | SharedBucket | None
    in_flight: InFlight

    @classmethod
    def build(cls, settings: TenantSettings, bucket: BucketFactory | None = None) -> Tenant:
        make = bucket or (lambda _tenant, _kind, rate, capacity: TokenBucket(rate, capacity))
        requests = tokens = None
        if settings.requests_per_s is not None:
            burst = settings.burst or max(1, math.ceil(2 * settings.requests_per_s))
            requests = make(settings.name, "requests", settings.requests_per_s, burst)
        if settings.tokens_per_min is not None:
            tokens = make(settings.name, "tokens", settings.tokens_per_min / 60.0, settings.tokens_per_min)
        return cls(settings, requests, tokens, InFlight(settings.max_in_flight))

    @property
    def name(self) -> str:
        return self.settings.name


@dataclass(slots=True)
class Ticket:
    """An admitted request: release it when the request ends."""

    tenant: Tenant
    headers: dict[str, str] = field(default_factory=dict)
    released: bool = False


class AccessControl:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        # Rate-limit buckets: in-process, or shared by the replicas through Redis (state.url).
        self._bucket, self._client = bucket_factory(settings.state, registry)
        self.auth = settings.auth
        self.retry_after = settings.limits.retry_after_s
        self.keys = KeyStore(load_keys_file(settings.auth.keys_file) if settings.auth.keys_file else [])
        self.tenants = {t.name: Tenant.build(t, self._bucket) for t in settings.tenants}
        self.in_flight = InFlight(settings.limits.max_in_flight)
        self.scrape_token = _read_token(settings.auth.metrics_token_file)

    def tenant(self, name: str) -> Tenant:
        found = self.tenants.get(name)
        if found is None:  # a key's tenant with no settings: no limits
            found = self.tenants[name] = Tenant.build(TenantSettings(name=name), self._bucket)
        return found

    def authenticate(self, headers: Mapping[str, str]) -> Tenant:
        """The caller's tenant from its key; 401 without a valid key. The one rule for credentials:

        a key comes from `Authorization: Bearer <key>` or `x-api-key: <key>`; a request may carry both only when
        they are the same key. Two different keys are refused (401) before either is looked up, so a request can
        never be served as one tenant while it also claims to be another.
        """
        if not self.auth.enabled:
            return self.tenant(DEFAULT_TENANT)
        presented = presented_key(headers)
        if not presented:
            raise AuthenticationError("missing API key: send Authorization: Bearer <key> or x-api-key")
        tenant = self.keys.tenant_of(presented)
        if tenant is None:
            raise AuthenticationError("invalid API key")
        return self.tenant(tenant)

    def may_scrape(self, headers: Mapping[str, str]) -> None:
        """/metrics and /debug/*: open when `metrics_public`, or when auth is off and no scrape token is set.

        Otherwise only the scrape token (`metrics_token_file`) or an admin tenant's key: the series carry spend.
        """
        if self.auth.metrics_public or (not self.auth.enabled and self.scrape_token is None):
            return
        presented = presented_key(headers)
        if not presented:
            raise AuthenticationError("/metrics needs a key: send Authorization: Bearer <admin key or scrape token>")
        if self.scrape_token is not None and hmac.compare_digest(presented.encode(), self.scrape_token.encode()):
            return
        tenant = self.keys.tenant_of(presented) if self.auth.enabled else None
        if tenant is None:
            raise AuthenticationError("invalid API key")
        if not self.tenant(tenant).settings.admin:
            raise PermissionDenied("only an admin key or the scrape token may read /metrics")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def admit(self, tenant: Tenant, tokens: int) -> Ticket:
        """Take a request (and its token estimate) from the tenant's limits, or refuse at once."""
        headers: dict[str, str] = {}
        if tenant.requests is not None:
            wait = await tenant.requests.atake(1)
            headers.update(_headers("requests", tenant.requests))
            if wait:
                exc = RateLimited(
                    f"rate limit of {tenant.settings.requests_per_s:g} requests/s reached for this key",
                    retry_after=wait,
                    headers=headers,
                )
                raise exc
        if tenant.tokens is not None:
            wait = await tenant.tokens.atake(tokens)
            headers.update(_headers("tokens", tenant.tokens))
            if wait:
                if tenant.requests is not None:
                    tenant.requests.give_back(1)
                exc = RateLimited(
                    f"token rate limit of {tenant.settings.tokens_per_min} tokens/min reached for this key "
                    f"(this request counts {tokens})",
                    retry_after=wait if wait != math.inf else 60.0,
                    headers=headers,
                )
                raise exc
        if not self.in_flight.enter():
            raise Overloaded("the router is at capacity; retry shortly", retry_after=self.retry_after)
        if not tenant.in_flight.enter():
            self.in_flight.leave()
            raise Overloaded("too many concurrent requests for this key", retry_after=self.retry_after)
        return Ticket(tenant, headers)

    def release(self, ticket: Ticket) -> None:
        if not ticket.released:
            ticket.released = True
            ticket.tenant.in_flight.leave()
            self.in_flight.leave()

    @staticmethod
    def check_model(tenant: Tenant, model: str) -> None:
        """An explicitly named model or tier the tenant may not use: 403."""
        allowed = tenant.settings.allowed_models
        if allowed is not None and model not in allowed and model not in ("auto", "local", "frontier"):
            raise PermissionDenied(f"this key may not use model {model!r}", param="model")
        if model in ("local", "frontier") and model not in tenant.settings.allowed_tiers:
            raise PermissionDenied(f"this key may not use the {model} tier", param="model")


def presented_key(headers: Mapping[str, str]) -> str:
    """The key a request carries ('' if none); AuthenticationError when Bearer and x-api-key disagree."""
    api_key = (headers.get("x-api-key") or "").strip()
    authorization = headers.get("authorization") or ""
    bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
    if api_key and bearer and not hmac.compare_digest(api_key.encode(), bearer.encode()):
        raise AuthenticationError(
            "conflicting credentials: Authorization: Bearer and x-api-key carry different keys; send one key",
            code="conflicting_credentials",
        )
    return api_key or bearer


def _read_token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"auth.metrics_token_file: cannot read {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"auth.metrics_token_file: {path} is empty")
    return token


def _headers(kind: str, bucket: TokenBucket | SharedBucket) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{kind}": str(int(bucket.capacity)),
        f"x-ratelimit-remaining-{kind}": str(max(0, bucket.remaining())),
        f"x-ratelimit-reset-{kind}": f"{bucket.reset_after():.3f}s",
    }
