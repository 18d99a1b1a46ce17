"""Fixtures shared by every test folder. ``live`` (one real broker, database and the four
services per test session) is used by tests/integration and tests/browser alike."""

from __future__ import annotations

from tests.live import live

__all__ = ["live"]
