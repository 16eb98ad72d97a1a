"""A program a test needs: its path, or the test is skipped on a developer's machine and fails in CI
(`CI=true`), where a missing program is a broken set-up, never a silent skip (DESIGN.md §6)."""

from __future__ import annotations

import os
import shutil

import pytest


def required_tool(name: str, *, how: str, first_in: str | None = None) -> str:
    """`name` from the directory `first_in` if there, else from PATH; `how` says how to install it."""
    found = (shutil.which(name, path=first_in) if first_in else None) or shutil.which(name)
    if found is None:
        reason = f"{name} is missing: {how}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found
