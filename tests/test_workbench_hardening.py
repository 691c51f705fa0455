"""The workbench under load and under attack: concurrency on PostgreSQL, sign-in throttling,
session revocation, request size limits, geometry and text limits, headers, blobs, uploads.

Each test reproduces a finding of the review on loopback and fails without its fix.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session

from qwen_dataset.db.engine import sqlite_url
from qwen_dataset.db.models import LoginThrottle, User
from qwen_dataset.workbench.security import CSRF_HEADER, SESSION_COOKIE
from tests.test_workbench_api import (
    PASSWORD,
    PASSWORD_HASH,
    World,
    build_world,
    moved_result,
    my_items,
    running_server,
)
from tests.test_workbench_api import world as world  # noqa: F401  (the fixture, on SQLite and PostgreSQL)

# --------------------------------------------------------------------------- concurrency


async def _annotate_at_once(base: str, sessions: list[dict]) -> collections.Counter:
    """Every client opens its item and saves a moved box, all at the same moment."""

    async def one(target: dict) -> list[int]:
        cookies = {SESSION_COOKIE: target["cookie"]}
        async with httpx.AsyncClient(base_url=base, cookies=cookies, timeout=120.0) as client:
            url = f"/api/annotations/{target['annotation_id']}"
            opened = await client.get(url)
            if opened.status_code != 200:
                return [opened.status_code]
            body = {"version": opened.json()["version"], "result": moved_result(opened.json(), [50, 50, 150, 90])}
            saved = await client.put(url, json=body, headers={CSRF_HEADER: target["csrf"]})
            return [opened.status_code, saved.status_code]

    codes = await asyncio.gather(*(one(target) for target in sessions))
    return collections.Counter(code for pair in codes for code in pair)


@pytest.mark.postgres
def test_a_burst_of_clients_on_postgres_gets_no_5xx(tmp_path, postgres_url):
    # Four requests in at a time, a pool of 4 + 4 connections and 120 clients at once: before the
    # admission gate, requests took every connection, then waited for a thread held by requests
    # waiting for a connection, until the pool timed out (HTTP 500).
    world = build_world(postgres_url, tmp_path / "root", threads=4)
    try:
        with Session(world.engine) as session:
            for index in range(20):
                session.add(User(username=f"extra{index}", password_hash=PASSWORD_HASH, role="annotator", active=True))
            session.commit()
            world.users.update({user.username: user for user in session.query(User)})
        world.set_double_rate(0.0)
        world.import_batch("b-burst", frames=120, video_event=False)
        sessions = []
        for name in world.users:
            if world.users[name].role != "annotator":
                continue
            for entry in my_items(world, name):
                cookie, csrf = world.app.state.signer.dumps(world.users[name].id)
                sessions.append({"cookie": cookie, "csrf": csrf, "annotation_id": entry["annotation_id"]})
        assert len(sessions) == 120
        assert world.engine.pool.size() == 4
        with running_server(world.app) as base:
            codes = asyncio.run(_annotate_at_once(base, sessions))
        assert codes == {200: 240}, codes
    finally:
        world.engine.dispose()


def test_the_database_pool_is_sized_to_the_requests_served_at_once(world: World):
    settings = world.app.state.settings
    assert world.engine.pool.size() == settings.threads


# --------------------------------------------------------------------------- sign-in throttling


def _sign_in(client, name: str, password: str):
    return client.post("/api/login", json={"username": name, "password": password})


def test_sign_in_is_throttled_per_account(world: World):
    client = world.client()
    for _ in range(5):
        assert _sign_in(client, "ann1", "wrong password").status_code == 401
    # The right password no longer helps: the account is locked, and the answer says for how long.
    locked = _sign_in(client, "ann1", PASSWORD)
    assert locked.status_code == 429 and 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert "try again in" in locked.json()["detail"]
    # An account that does not exist is throttled alike, so the answers do not tell names apart.
    for _ in range(5):
        assert _sign_in(client, "nobody", "wrong password").status_code == 401
    assert _sign_in(client, "nobody", "wrong password").status_code == 429
    # Other accounts from the same address still sign in.
    assert _sign_in(client, "ann2", PASSWORD).status_code == 200
    # When the lock has run out, the right password works again and the count starts afresh.
    with Session(world.engine) as session:
        row = session.get(LoginThrottle, "account:ann1")
        row.locked_until = row.window_started_at = datetime.now(UTC) - timedelta(hours=1)
        session.commit()
    assert _sign_in(client, "ann1", PASSWORD).status_code == 200
    with Session(world.engine) as session:
        assert session.get(LoginThrottle, "account:ann1") is None


def test_sign_in_is_throttled_per_address(tmp_path):
    world = build_world(sqlite_url(tmp_path / "db.sqlite"), tmp_path / "root", login_address_failures=3)
    try:
        client = world.client()
        for name in ("ann1", "ann2", "ann3"):  # one guess at each account: no account reaches its limit
            assert _sign_in(client, name, "wrong password").status_code == 401
        refused = _sign_in(client, "admin", PASSWORD)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    finally:
        world.engine.dispose()


def test_a_burst_of_sign_ins_hashes_at_most_two_passwords_at_once(world: World, monkeypatch):
    from qwen_dataset.workbench import security

    running, most = 0, 0
    lock = threading.Lock()
    verify = security._hasher.verify

    def counting_verify(stored: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return verify(stored, password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(security._hasher, "verify", counting_verify)
    names = ["ann1", "ann2", "ann3", "rita", "admin", "nobody"]
    threads = [threading.Thread(target=_sign_in, args=(world.client(), name, PASSWORD)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == security.HASH_SLOTS  # each argon2 check takes 64 MiB: memory stays bounded


# --------------------------------------------------------------------------- sessions and tokens


def _signed_in_copy(world: World, name: str) -> tuple[httpx.Client, str]:
    """A real sign-in; returns a second client replaying its cookie, and the CSRF token."""
    response = _sign_in(world.client(), name, PASSWORD)
    assert response.status_code == 200, response.text
    replay = world.client()
    replay.cookies.set(SESSION_COOKIE, response.cookies[SESSION_COOKIE])
    return replay, response.json()["csrf"]


def test_sessions_end_on_sign_out_new_password_and_deactivation(world: World):
    replay, csrf = _signed_in_copy(world, "ann1")
    assert replay.get("/api/me").status_code == 200
    other_tab, _ = _signed_in_copy(world, "ann1")
    assert replay.post("/api/logout", headers={CSRF_HEADER: csrf}).status_code == 200
    # The cookie replayed after sign-out is dead, and so is every other session of the account.
    assert replay.get("/api/me").status_code == 401 and other_tab.get("/api/me").status_code == 401
    # An admin's password reset ends the sessions opened with the old password.
    replay, _ = _signed_in_copy(world, "ann2")
    admin = world.client("admin")
    changed = admin.patch(f"/api/admin/users/{world.users['ann2'].id}", json={"password": "a brand new password"})
    assert changed.status_code == 200
    assert replay.get("/api/me").status_code == 401
    assert _sign_in(world.client(), "ann2", "a brand new password").status_code == 200
    # Deactivation too, and reactivating does not bring the old session back.
    replay, _ = _signed_in_copy(world, "ann3")
    user_url = f"/api/admin/users/{world.users['ann3'].id}"
    assert admin.patch(user_url, json={"active": False}).status_code == 200
    assert admin.patch(user_url, json={"active": True}).status_code == 200
    assert replay.get("/api/me").status_code == 401


def test_an_api_token_dies_with_its_creator(world: World):
    admin = world.client("admin")
    created = admin.post("/api/admin/users", json={"username": "boss2", "password": PASSWORD, "role": "admin"})
    assert created.status_code == 201
    with Session(world.engine) as session:
        world.users["boss2"] = session.get(User, created.json()["id"])
    token = world.client("boss2").post("/api/admin/tokens", json={"name": "boss2's uploader"}).json()["token"]
    machine = world.client()
    machine.headers["Authorization"] = f"Bearer {token}"
    assert machine.get("/api/batches/b1/labeling-config").status_code == 200
    boss2 = f"/api/admin/users/{created.json()['id']}"
    assert admin.patch(boss2, json={"role": "reviewer"}).status_code == 200  # no longer an admin
    refused = machine.get("/api/batches/b1/labeling-config")
    assert refused.status_code == 401 and "creator" in refused.json()["detail"]
    assert admin.patch(boss2, json={"role": "admin"}).status_code == 200
    assert machine.get("/api/batches/b1/labeling-config").status_code == 200
    assert admin.patch(boss2, json={"active": False}).status_code == 200
    assert machine.get("/api/batches/b1/labeling-config").status_code == 401
    # The suite's pipeline token was made on the command line (no creator): it lives on.
    assert world.service().get("/api/batches/b1/labeling-config").status_code == 200
