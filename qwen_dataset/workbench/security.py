"""Passwords, API tokens, signed session cookies and CSRF tokens.

* Passwords: argon2id (``argon2-cffi``'s defaults: memory-hard, 64 MiB, 3 passes), re-hashed on
  login when the parameters change.
* API tokens: 256 random bits shown once; the database keeps their SHA-256 (a fast hash is
  right for a random secret: there is nothing to brute-force).
* Password hashing takes 64 MiB: at most :data:`HASH_SLOTS` run at once, so a flood of sign-ins
  cannot exhaust the server's memory (a caller waiting longer than :data:`HASH_WAIT_S` for a slot
  gets :class:`PasswordHashBusy`, answered 429).
* Sessions: a cookie signed with ``itsdangerous`` (HMAC-SHA1 over the payload and a timestamp)
  holding the user id, the user's session generation and the session's CSRF token; ``HttpOnly``,
  ``SameSite=Lax``, ``Secure`` unless disabled for plain-HTTP development. A cookie of an older
  generation than the user's is dead: signing out, a new password and deactivation bump it.
* CSRF: synchronizer token. Every state-changing request authenticated by the cookie must send
  the token from the session in the ``X-CSRF-Token`` header (pages read it from a ``<meta>`` tag);
  a cross-site page can neither read the token nor set the header without a CORS preflight.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "qwb_session"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_PREFIX = "qwb_"
MIN_PASSWORD_LENGTH = 10

HASH_SLOTS = 2
HASH_WAIT_S = 10.0

_hasher = PasswordHasher()
_hash_slots = threading.BoundedSemaphore(HASH_SLOTS)


class PasswordHashBusy(RuntimeError):
    """Every password-hashing slot stayed busy for :data:`HASH_WAIT_S`: try again shortly."""


@contextmanager
def _hash_slot() -> Iterator[None]:
    if not _hash_slots.acquire(timeout=HASH_WAIT_S):
        raise PasswordHashBusy("the server is checking too many passwords at once; try again in a few seconds")
    try:
        yield
    finally:
        _hash_slots.release()


def hash_password(password: str) -> str:
    with _hash_slot():
        return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    with _hash_slot():
        try:
            return _hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def check_password_strength(password: str) -> str | None:
    """Why ``password`` is unacceptable, or ``None``."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    return None


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionSigner:
    """Signs and checks session cookies."""

    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="qwen-workbench-session")
        self.max_age = max_age_seconds

    def dumps(self, user_id: int, generation: int = 0) -> tuple[str, str]:
        """A cookie value for ``user_id`` in the user's session ``generation``, and its new CSRF token."""
        csrf = secrets.token_urlsafe(32)
        return self._serializer.dumps({"uid": user_id, "gen": generation, "csrf": csrf}), csrf

    def loads(self, value: str) -> dict[str, Any] | None:
        """The session of a cookie, or ``None`` when it is forged, tampered with or expired."""
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(key), kind) for key, kind in (("uid", int), ("gen", int), ("csrf", str))
        ):
            return None
        return data


def same_token(expected: str, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
