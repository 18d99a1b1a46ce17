"""In-memory twins shared by unit tests."""

from __future__ import annotations

from typing import Any


class NoBanks:
    """In-memory twin of an empty bank repository."""

    def generation(self) -> int:
        return 0

    def entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        return []

    def all_settings(self) -> list[dict[str, Any]]:
        return []

    def changes_since(self, since: Any) -> list[dict[str, Any]]:
        return []
