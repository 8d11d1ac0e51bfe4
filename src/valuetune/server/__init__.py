"""The HTTP server: the OpenAI-compatible API (and, later, the web app)."""
