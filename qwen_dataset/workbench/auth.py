"""Who is calling: FastAPI dependencies for sessions, API tokens, roles and CSRF.

* ``Authorization: Bearer <token>``: an API token (machines: the upload client, the pipeline).
  Tokens act as the ``service`` principal, allowed only where an endpoint says so. A token an
  admin made stops working when that admin is deactivated or loses the admin role (tokens made
  on the command line have no creator).
* The ``qwb_session`` cookie: a signed session of a user (see :mod:`.security`), valid while its
  generation is the user's current one. For every state-changing method the ``X-CSRF-Token``
  header must equal the session's token.
* Nothing: 401 everywhere except the login page and static files.

Role rules: :func:`require` lists the roles an endpoint admits; a user with another role gets 403.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from qwen_dataset.db.engine import autocommit_connection
from qwen_dataset.db.models import ApiToken, Role, User
from qwen_dataset.workbench.security import CSRF_HEADER, SESSION_COOKIE, same_token, token_digest

SERVICE = "service"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TOKEN_TOUCH = timedelta(minutes=1)  # how stale last_used_at may get before a request writes it


@dataclasses.dataclass(frozen=True)
class Principal:
    role: str  # annotator | reviewer | admin | service
    user: User | None = None
    token: ApiToken | None = None
    csrf: str = ""

    @property
    def account(self) -> User:
        """The signed-in user, for the routes that admit people's roles only (an API token has none)."""
        if self.user is None:
            raise HTTPException(403, "this needs a signed-in user; an API token cannot use it")
        return self.user

    @property
    def name(self) -> str:
        if self.user is not None:
            return self.user.username
        return f"token:{self.token.name}" if self.token is not None else "anonymous"


async def db_session(request: Request) -> AsyncIterator[Session]:
    """The request's database session. Opening one touches no connection, and closing one whose
    work was committed gives nothing back, so neither takes a worker thread; closing one that
    still holds a connection (a ROLLBACK round trip) does."""
    session = Session(request.app.state.engine, expire_on_commit=False)
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="qwen-workbench"'})


def _from_token(session: Session, header: str) -> Principal:
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <API token>'")
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_digest(secret.strip()))).first()
    if token is None or token.revoked:
        raise _unauthorized("unknown or revoked API token; ask an admin for a new one")
    if token.created_by is not None:
        # A token acts for the admin who made it: it dies with the account, or with its admin role.
        owner = session.get(User, token.created_by)
        if owner is None or not owner.active or owner.role != Role.ADMIN:
            raise _unauthorized(
                "this API token's creator is no longer an active admin, so the token is void; ask an admin for a new one"
            )
    now = datetime.now(UTC)
    last = token.last_used_at
    if last is None or (last.replace(tzinfo=UTC) if last.tzinfo is None else last) < now - _TOKEN_TOUCH:
        token.last_used_at = now
        session.commit()
    return Principal(role=SERVICE, token=token)


_USERS = User.__table__
_ACCOUNT_FIELDS = ("id", "username", "role", "active", "session_generation")
# Every request checks its session against the account, so this is built (and compiled) once.
_ACCOUNT = select(*(_USERS.c[field] for field in _ACCOUNT_FIELDS)).where(_USERS.c.id == bindparam("user_id"))


def session_principal(request: Request) -> Principal | None:
    """The signed-in user of the request's cookie, or ``None``.

    The account is read on every request, so a session ends everywhere, in every server process,
    the moment its generation moves on (sign-out, new password, deactivation) or the role changes.
    The read is one primary-key row through a prepared statement on a connection of its own in
    autocommit (no transaction to open and end around it); the :class:`User` it yields is a
    detached copy (``role``, ``active``, ``id``, ``username``): a route that changes the account
    loads it into its session first.
    """
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    data = request.app.state.signer.loads(cookie)
    if data is None:
        return None
    with autocommit_connection(request.app.state.engine) as connection:
        row = connection.execute(_ACCOUNT, {"user_id": data["uid"]}).first()
    if row is None or not row.active or row.session_generation != data["gen"]:
        return None  # unknown, deactivated, or signed out / given a new password since
    user = User(**{field: getattr(row, field) for field in _ACCOUNT_FIELDS})
    return Principal(role=user.role, user=user, csrf=data["csrf"])


def principal(request: Request, session: Session = Depends(db_session)) -> Principal:
    header = request.headers.get("Authorization")
    if header:
        return _from_token(session, header)
    found = session_principal(request)
    if found is None:
        raise _unauthorized("sign in first (or send an API token)")
    if request.method not in SAFE_METHODS and not same_token(found.csrf, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header; reload the page and try again")
    return found


def require(*roles: str) -> Callable[..., Coroutine[None, None, Principal]]:
    """Dependency admitting only ``roles`` (``service`` = API tokens)."""

    # async: a comparison needs no worker thread (FastAPI runs every plain def on one)
    async def check(who: Principal = Depends(principal)) -> Principal:
        if who.role not in roles:
            raise HTTPException(403, f"this needs the role {' or '.join(roles)}; you are {who.role}")
        return who

    return check
