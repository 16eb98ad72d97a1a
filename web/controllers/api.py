"""Placeholder: the JSON API under /api/v1 is being built (issue 8)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

ROUTES: list[ControllerRouterHandler] = []
