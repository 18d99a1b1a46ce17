"""Secrets handed to users (owner tokens, link tokens) and how we store them: hashed only."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 24  # 192 bits, above the 128-bit floor


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_id() -> str:
    """Public identifiers (image ids): 128 random bits, hex."""
    return secrets.token_hex(16)


def token_hash(salt: bytes, token: str) -> str:
    """Keyed hash of a token; the only form a token is ever stored in."""
    return hmac.new(salt, token.encode(), hashlib.sha256).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
