"""The link options menu people choose from (upload page, limits API). Links enforces the caps."""

from __future__ import annotations

EXPIRY_CHOICES_S: tuple[int, ...] = (600, 3600, 86400, 7 * 86400)
MAX_VIEWS_CHOICES: tuple[int, ...] = (1, 3, 10)
