"""Optional link passwords: argon2id hashes, a bounded number of guesses per viewer and link,
and a wrong guess never spends a view (it is checked before anything is counted)."""

from __future__ import annotations

from dataclasses import dataclass

from services.links.visitors import Viewer
from services.shared.errors import DomainError, Forbidden, RateLimited
from services.shared.mongo import Doc
from services.shared.passwords import InvalidPassword as InvalidPassword  # re-exported
from services.shared.passwords import hash_password as hash_password  # re-exported
from services.shared.passwords import password_bytes, verify_password
from services.shared.ratelimit import RateLimiter


def validate_new(password: str | None, max_length: int) -> str | None:
    """A password to set, or None for no password. Blank means none. Too long: 400
    ``password_too_long`` with the limit; not hashable text: 400 ``invalid_password``."""
    if password is None or password == "":
        return None
    if len(password) > max_length:
        raise DomainError(
            f"The password is too long: at most {max_length} characters.",
            code="password_too_long",
            limit=max_length,
        )
    password_bytes(password)
    return password


class PasswordRequired(Forbidden):
    code = "password_required"


class WrongPassword(Forbidden):
    code = "wrong_password"


@dataclass
class PasswordCheck:
    """Checks a viewer's password for a link, counting guesses per (viewer, link)."""

    limiter: RateLimiter | None

    def check(self, link: Doc, viewer: Viewer) -> None:
        stored = link.get("password_hash")
        if not stored:
            return
        password = viewer.password
        if not password:
            raise PasswordRequired("This link needs a password.")
        password_bytes(password)  # 400 before any guess is counted: it can match nothing
        key = f"{link['link_id']}:{viewer.key}"
        if self.limiter is not None:  # only wrong guesses count; the right password never
            allowance = self.limiter.peek(key)
            if not allowance.allowed:
                raise RateLimited(
                    "Too many wrong passwords for this link. Try again later.",
                    retry_after_s=allowance.retry_after_s,
                )
        if not verify_password(str(stored), password):
            if self.limiter is not None:
                self.limiter.hit(key)
            raise WrongPassword("That password is not right.")
