"""The response cache (exact + semantic tiers) and the local embedding model it shares with /v1/embeddings."""

from router.cache.embed import Embedded, EmbeddingService, MicroBatcher
from router.cache.store import CacheStats, Lookup, ResponseCache

__all__ = ["CacheStats", "Embedded", "EmbeddingService", "Lookup", "MicroBatcher", "ResponseCache"]
