"""The link options menu people choose from (upload page, limits API). Links enforces the caps."""

from __future__ import annotations

import re

EXPIRY_CHOICES_S: tuple[int, ...] = (600, 3600, 86400, 7 * 86400)
MAX_VIEWS_CHOICES: tuple[int, ...] = (1, 3, 10)
# Views one person may use of a link (None = no limit); never more than the link's max_views.
PER_VIEWER_CHOICES: tuple[int, ...] = (1, 2, 3)
PASSWORD_MAX_LENGTH = 128

_CATEGORY = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def gallery_categories(text: str) -> tuple[str, ...]:
    """The public gallery's categories from the comma-separated setting, in its order, lower
    case, without repeats. A name that is not a short slug (it becomes a URL path segment)
    stops the service at start: a ValueError naming it."""
    out: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if not _CATEGORY.fullmatch(name) or name == "thumbs":
            raise ValueError(f"CHATPIC_GALLERY_CATEGORIES: {name!r} is not a valid category")
        if name not in out:
            out.append(name)
    return tuple(out)
