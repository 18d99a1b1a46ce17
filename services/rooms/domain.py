"""The pure rules of rooms: names, nicknames, tripcodes, lifetimes, what each action costs, and
whether a room is still live. No I/O here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from services.shared.errors import DomainError, Gone
from services.shared.roommod import nick_key

NAME_MAX = 60
NICK_MAX = 24
SECRET_MAX = 128
TRIPCODE_CHARS = 8
LIFETIME_CHOICES_S = (3600, 6 * 3600, 24 * 3600)  # the menu on the create form
_NICK_EXTRA = set(" _-.'")


class Action(StrEnum):
    JOIN = "join"
    MESSAGE = "message"
    IMAGE = "image"
    CREATE = "create"
    REPORT = "report"


@dataclass(frozen=True)
class Costs:
    join: int = 5
    message: int = 1
    image: int = 10
    create: int = 20
    report: int = 5

    def of(self, action: Action) -> int:
        return int(getattr(self, action.value))


class FrameError(DomainError):
    """A refusal sent back as an error frame; ``fatal`` ones close the socket (before a join
    too: the others leave it open for another try, up to the socket's error budget)."""

    def __init__(
        self, message: str, *, code: str, fatal: bool = False, retry_after: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.fatal = fatal
        self.retry_after = retry_after

    def frame(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


# Joiners inside emoji sequences and Persian/Indic words: kept in messages.
_JOINERS = "\u200c\u200d"
# Scripts with letters that pass for Latin ones: a nickname may use one of them, not a mix.
_LOOKALIKE_SCRIPTS = {"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"}


def encodable(value: Any) -> bool:
    """Text that can be stored and hashed: a str without lone surrogates."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _scripts(text: str) -> set[str]:
    found = set()
    for ch in text:
        if ch.isalpha():
            script = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
            if script in _LOOKALIKE_SCRIPTS:
                found.add(script)
    return found


def _has_control(text: str, allow_newlines: bool = False) -> bool:
    for ch in text:
        if allow_newlines and ch in "\n\t" + _JOINERS:
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return True
    return False


def invalid_text(field: str) -> DomainError:
    """Bytes that are not UTF-8 (or a lone surrogate): refused, never stored as U+FFFD."""
    return DomainError(f"The {field} is not valid UTF-8 text.", code="invalid_text", status=400)


def room_name(raw: Any) -> str:
    name = raw.strip() if isinstance(raw, str) else ""
    if not 1 <= len(name) <= NAME_MAX or _has_control(name):
        raise DomainError(
            f"A room needs a name of 1 to {NAME_MAX} ordinary characters.",
            code="name_invalid",
            status=422,
        )
    return name


def nickname(raw: Any) -> str:
    """1 to 24 letters, digits, spaces and _ - . ' with at least one letter or digit.

    Compatibility forms are folded (NFKC: fullwidth letters become plain ones, a black-letter
    H an H), and letters from more than one Latin-like script are refused (a Cyrillic A among
    Latin letters), so nobody passes for another member whose name looks the same."""
    nick = unicodedata.normalize("NFKC", raw.strip()) if encodable(raw) else ""
    ok = (
        1 <= len(nick) <= NICK_MAX
        and all(ch.isalnum() or ch in _NICK_EXTRA for ch in nick)
        and any(ch.isalnum() for ch in nick)
        and "  " not in nick
        and len(_scripts(nick)) <= 1
    )
    if not ok:
        raise FrameError(
            f"Choose a nickname of 1 to {NICK_MAX} letters, digits, spaces, _ - . or '.",
            code="nickname_invalid",
        )
    return nick


def tripcode(salt: bytes, secret: Any) -> str | None:
    """A stable short code from the secret (never stored): the same secret, the same code."""
    if secret is None or secret == "":
        return None
    if not encodable(secret) or len(secret) > SECRET_MAX:
        raise FrameError(
            f"The secret must be text of at most {SECRET_MAX} characters.",
            code="secret_invalid",
        )
    digest = hmac.new(salt, b"tripcode|" + secret.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:TRIPCODE_CHARS]


def message_text(raw: Any, max_chars: int) -> str:
    if raw is not None and not isinstance(raw, str):
        raise FrameError("A message's text must be a string.", code="malformed_frame")
    if raw is not None and not encodable(raw):
        raise FrameError(
            "This message is not valid Unicode text: it holds a lone surrogate"
            " (an unpaired \\ud800-\\udfff escape).",
            code="invalid_text",
        )
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise FrameError("Write something first.", code="message_empty")
    text = "".join(ch for ch in text if not _has_control(ch, allow_newlines=True))
    if len(text) > max_chars:
        raise FrameError(f"Messages are at most {max_chars} characters.", code="message_too_long")
    if not text.strip():
        raise FrameError("Write something first.", code="message_empty")
    return text


def lifetime(raw: Any, min_s: int, max_s: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not min_s <= raw <= max_s:
        raise DomainError(
            f"Choose a lifetime between {min_s} and {max_s} seconds.",
            code="lifetime_invalid",
            status=422,
        )
    return raw


def lifetime_menu(min_s: int, max_s: int) -> list[int]:
    """The form's choices that fit the caps (the cap itself if none do)."""
    fitting = [s for s in LIFETIME_CHOICES_S if min_s <= s <= max_s]
    return fitting or [max_s]


def _aware(value: datetime, like: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=like.tzinfo)


def end_reason(room: dict[str, Any], at: datetime) -> str | None:
    """Why a room is not live (owner, moderator, expired, idle), or None if it is live."""
    if room.get("closed_at") is not None:
        return str(room.get("closed_by") or "closed")
    expires = room.get("expires_at")
    if isinstance(expires, datetime) and _aware(expires, at) <= at:
        return "expired"
    idle = room.get("idle_until")
    if isinstance(idle, datetime) and _aware(idle, at) <= at:
        return "idle"
    return None


def check_live(room: dict[str, Any] | None, at: datetime) -> dict[str, Any]:
    if room is None:
        raise DomainError("No room has this address.", code="room_not_found", status=404)
    if end_reason(room, at) is not None:
        raise Gone("This room has ended.", code="room_ended")
    return room


def kicked_until(room: dict[str, Any], client: str, at: datetime) -> datetime | None:
    """When the client's latest kick from this room ends, if it has not ended yet."""
    ends = [
        _aware(k["until"], at)
        for k in room.get("kicked") or []
        if isinstance(k, dict)
        and k.get("client") == client
        and isinstance(k.get("until"), datetime)
    ]
    latest = max(ends, default=None)
    return latest if latest is not None and latest > at else None


def idle_deadline(at: datetime, idle_ttl_s: int, expires_at: datetime) -> datetime:
    return min(at + timedelta(seconds=idle_ttl_s), _aware(expires_at, at))


def iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


__all__ = ["nick_key"]
