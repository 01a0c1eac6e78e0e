"""hybrid-router: route each request to a cheap local model or a frontier model, in microseconds."""

from router._version import __version__

__all__ = ["__version__"]
