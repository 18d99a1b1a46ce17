"""Password hashing, one way for every service: argon2id (argon2-cffi's defaults, RFC 9106's
low-memory profile), a salt per hash, and a dummy hash to verify against when there is no stored
one, so "no such account" costs the same time as "wrong password"."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """An ``$argon2id$...`` string: the only form a password is ever stored in."""
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True if ``password`` matches ``stored``. With no stored hash the work is done anyway
    (against a dummy hash) and the answer is False."""
    try:
        ok = _HASHER.verify(stored or _dummy_hash(), password)
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
