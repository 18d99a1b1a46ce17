"""Password hashing, one way for every service: argon2id (argon2-cffi's defaults, RFC 9106's
low-memory profile), a salt per hash, and a dummy hash to verify against when there is no stored
one, so "no such account" costs the same time as "wrong password"."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.shared.errors import DomainError

_HASHER = PasswordHasher()


class InvalidPassword(DomainError):
    """A password that is not text we can hash: not a string, or a string with characters that
    have no UTF-8 form (a lone surrogate such as JSON's ``"\\ud800"``). No password can be
    that, so it is bad input (400), never a wrong guess."""

    status = 400
    code = "invalid_password"


def password_bytes(password: object) -> bytes:
    """The UTF-8 bytes argon2 hashes, or InvalidPassword (400) for anything that has none."""
    if not isinstance(password, str):
        raise InvalidPassword("The password must be text.")
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPassword(
            "The password contains characters that cannot be used (invalid Unicode)."
        ) from None


def hash_password(password: str) -> str:
    """An ``$argon2id$...`` string: the only form a password is ever stored in. A password
    with no UTF-8 form raises InvalidPassword (400)."""
    return _HASHER.hash(password_bytes(password))


def verify_password(stored: str | None, password: str) -> bool:
    """True if ``password`` matches ``stored``. With no stored hash the work is done anyway
    (against a dummy hash) and the answer is False. A password with no UTF-8 form raises
    InvalidPassword (400) before any work: it can match nothing."""
    secret = password_bytes(password)
    try:
        ok = _HASHER.verify(stored or _dummy_hash(), secret)
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored is not None


def needs_rehash(stored: str) -> bool:
    """The hash was made with weaker parameters than today's: store a new one at next login."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash("no account has this password; it only spends the same time")
