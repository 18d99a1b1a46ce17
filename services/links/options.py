"""Link options as people choose them (API body or the upload page's form), checked against the
caps in settings and turned into the plain LinkOptions the domain stores."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StrictBool, StrictInt

from services.links.creation import LinkOptions
from services.links.passwords import hash_password, validate_new
from services.links.settings import LinksSettings
from services.shared.errors import DomainError
from services.shared.linkoptions import EXPIRY_UNITS_S, duration_text, gallery_categories

_WHOLE = re.compile(r"[0-9]{1,9}")


def _utf8(value: str) -> str:
    """Ids and keys are hashed or looked up as UTF-8: a lone surrogate (JSON ``"\\ud800"``)
    is a 422 for that field, never a 500 from the hash or the database driver."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text") from None
    return value


Id = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_utf8)]
Secret = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_utf8)]


class LinkRequest(BaseModel):
    image_id: Id
    owner_token: Secret
    expires_in: StrictInt | None = Field(default=None, ge=1, description="Seconds from now.")
    expires_at: datetime | None = Field(default=None, description="Instead of expires_in.")
    max_views: StrictInt | None = Field(default=None, ge=1, description="1 = burn after reading.")
    max_views_per_viewer: StrictInt | None = Field(default=None, ge=1)
    end_of_session: StrictBool = False
    password: str | None = Field(
        default=None,
        description="Optional; at most password_max_length (128) characters, else 400 "
        "password_too_long with the limit.",
    )
    gallery_category: str | None = Field(
        default=None,
        max_length=64,
        description="List the image in the public gallery under this category (empty: not).",
    )


class OwnerRequest(BaseModel):
    image_id: Id
    owner_token: Secret


class SessionBeat(BaseModel):
    session_key: Secret


def _refuse(message: str, code: str, **data: Any) -> DomainError:
    return DomainError(message, code=code, **data)


def expiry_seconds(req: LinkRequest, settings: LinksSettings, at: datetime) -> int:
    if req.expires_in is not None and req.expires_at is not None:
        raise _refuse("Give expires_in or expires_at, not both.", "conflicting_expiry")
    if req.expires_at is not None:
        when = req.expires_at if req.expires_at.tzinfo else req.expires_at.replace(tzinfo=UTC)
        seconds = math.ceil((when - at).total_seconds())
        if seconds <= 0:
            raise _refuse("expires_at is in the past.", "expires_at_in_past")
        return seconds
    return req.expires_in or settings.default_expires_in_s


def gallery_category(
    value: str | None, categories: tuple[str, ...], password: str | None
) -> str | None:
    """The public gallery category chosen, if any ("" or None: the link stays private). Only
    the configured categories; a password-protected link cannot be public."""
    name = (value or "").strip().lower()
    if not name:
        return None
    if name not in categories:
        raise _refuse(
            "There is no such gallery category.", "unknown_category", categories=list(categories)
        )
    if password:
        raise _refuse(
            "A password-protected link cannot be shown in the public gallery.",
            "password_not_public",
        )
    return name


def resolve(req: LinkRequest, settings: LinksSettings, at: datetime) -> LinkOptions:
    expires_in = expiry_seconds(req, settings, at)
    if expires_in < settings.min_expires_in_s:
        raise _refuse(
            "The expiry is too short: a link must last at least "
            f"{duration_text(settings.min_expires_in_s)}.",
            "expires_in_too_short",
            limit=settings.min_expires_in_s,
        )
    if expires_in > settings.max_expires_in_s:
        raise _refuse(
            "The expiry is too long: a link can last at most "
            f"{duration_text(settings.max_expires_in_s)}.",
            "expires_in_too_long",
            limit=settings.max_expires_in_s,
        )
    max_views = req.max_views or settings.default_max_views
    if max_views > settings.max_max_views:
        raise _refuse(
            "Too many views requested.", "max_views_too_high", limit=settings.max_max_views
        )
    per_viewer = req.max_views_per_viewer
    if per_viewer is not None and per_viewer > max_views:
        raise _refuse(
            "Views per viewer cannot be more than the link's total views.",
            "max_views_per_viewer_too_high",
            limit=max_views,
        )
    password = validate_new(req.password, settings.password_max_length)
    category = gallery_category(
        req.gallery_category, gallery_categories(settings.gallery_categories), password
    )
    return LinkOptions(
        expires_in_s=expires_in,
        max_views=max_views,
        max_views_per_viewer=per_viewer,
        end_of_session=req.end_of_session,
        password_hash=hash_password(password) if password else None,
        gallery_category=category,
    )


def form_int(value: str | None, name: str) -> int | None:
    """An optional whole number from a form field ("" means not chosen)."""
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value.strip())
    except ValueError:
        raise _refuse(f"{name} must be a whole number.", "invalid_option", field=name) from None
    if number < 1:
        raise _refuse(f"{name} must be at least 1.", "invalid_option", field=name)
    return number


def form_expiry(choice: str | None, amount: str | None, unit: str | None) -> int | None:
    """The expiry a form chose, in seconds: a menu value, or "custom" with a whole number of
    minutes, hours or days (the upload page's plain form; with JavaScript the page sends the
    seconds itself). The caps are checked later, as for the API (resolve)."""
    if (choice or "").strip().lower() != "custom":
        return form_int(choice, "expires_in")
    text = (amount or "").strip()
    if not _WHOLE.fullmatch(text) or int(text) < 1:
        raise _refuse(
            "Enter the custom expiry as a whole number of minutes, hours or days.",
            "invalid_option",
            field="expiry_amount",
        )
    size = EXPIRY_UNITS_S.get((unit or "").strip().lower())
    if size is None:
        raise _refuse(
            "Choose minutes, hours or days for the custom expiry.",
            "invalid_option",
            field="expiry_unit",
            units=list(EXPIRY_UNITS_S),
        )
    return int(text) * size


def form_bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "on", "true", "yes")
