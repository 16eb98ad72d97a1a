"""Tributary's backend: everything but the HTTP face. Never imports `web` or Litestar."""
