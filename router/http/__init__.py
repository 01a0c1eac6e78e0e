"""HTTP boundary: wire formats in and out. Only this package and `router/app.py` import aiohttp's server side."""
