"""The link options menu people choose from (upload page, limits API). Links enforces the caps."""

from __future__ import annotations

EXPIRY_CHOICES_S: tuple[int, ...] = (600, 3600, 86400, 7 * 86400)
MAX_VIEWS_CHOICES: tuple[int, ...] = (1, 3, 10)
# Views one person may use of a link (None = no limit); never more than the link's max_views.
PER_VIEWER_CHOICES: tuple[int, ...] = (1, 2, 3)
PASSWORD_MAX_LENGTH = 128
