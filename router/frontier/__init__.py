"""Frontier tier: providers (Anthropic, OpenAI-compatible) and the resilience around them."""
