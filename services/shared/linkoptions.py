"""The link options menu people choose from (upload page, limits API). Links enforces the caps."""

from __future__ import annotations

import re

# A "Custom…" expiry is a whole number of one of these units (the form's expiry_unit).
EXPIRY_UNITS_S: dict[str, int] = {"minutes": 60, "hours": 3600, "days": 86400}
MAX_VIEWS_CHOICES: tuple[int, ...] = (1, 3, 10)
# Views one person may use of a link (None = no limit); never more than the link's max_views.
PER_VIEWER_CHOICES: tuple[int, ...] = (1, 2, 3)
PASSWORD_MAX_LENGTH = 128

_CATEGORY = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def expiry_menu(text: str, min_s: int, max_s: int) -> tuple[int, ...]:
    """The expiry menu from the comma-separated setting (seconds): sorted, without repeats. A
    value that is not a whole number, or outside min_s..max_s (what links accepts), or an
    empty menu stops the service at start: a ValueError naming the setting and the value."""
    name = "CHATPIC_LINK_EXPIRY_CHOICES_S"
    seconds: set[int] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise ValueError(f"{name}: {item!r} is not a whole number of seconds") from None
        if value < 1:
            raise ValueError(f"{name}: {value} is not a positive number of seconds")
        if not min_s <= value <= max_s:
            raise ValueError(
                f"{name}: {value} s is outside the expiries links accepts "
                f"(CHATPIC_MIN_EXPIRES_IN_S={min_s} to CHATPIC_MAX_EXPIRES_IN_S={max_s})"
            )
        seconds.add(value)
    if not seconds:
        raise ValueError(f"{name}: give at least one expiry, in seconds, comma-separated")
    return tuple(sorted(seconds))


def duration_text(seconds: int) -> str:
    """A length of time as people say it, in its largest whole unit: "7 days", "90 minutes"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


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
