"""The workbench under load and under attack: concurrency on PostgreSQL, sign-in throttling,
session revocation, request size limits, geometry and text limits, headers, blobs, uploads.

Each test reproduces a finding of the review on loopback and fails without its fix.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from qwen_dataset.db.engine import make_engine, sqlite_url
from qwen_dataset.db.models import HumanAnnotation, LoginThrottle, User
from qwen_dataset.workbench import workflow
from qwen_dataset.workbench.__main__ import check_connection_budget
from qwen_dataset.workbench.config import ConfigError, WorkbenchSettings
from qwen_dataset.workbench.security import CSRF_HEADER, SESSION_COOKIE
from tests.ops_helpers import free_port
from tests.test_workbench_api import (
    PASSWORD,
    PASSWORD_HASH,
    SECRET,
    World,
    _all_routes,
    build_world,
    item_of,
    moved_result,
    my_items,
    open_annotation,
    png_bytes,
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
def test_a_burst_of_200_clients_on_postgres_gets_no_5xx(tmp_path, postgres_url):
    # Four requests in at a time, a pool of 4 + 4 connections and 200 clients at once. Before the
    # admission gate, requests took every connection, then waited for a thread held by requests
    # waiting for a connection, until the pool timed out (HTTP 500); at 100 clients the default
    # pool (5 + 10) ran dry the same way.
    world = build_world(postgres_url, tmp_path / "root", threads=4)
    try:
        with Session(world.engine) as session:
            for index in range(20):
                session.add(User(username=f"extra{index}", password_hash=PASSWORD_HASH, role="annotator", active=True))
            session.commit()
            world.users.update({user.username: user for user in session.query(User)})
        world.set_double_rate(0.0)
        world.import_batch("b-burst", frames=200)
        sessions = []
        for name in world.users:
            if world.users[name].role != "annotator":
                continue
            for entry in my_items(world, name):
                cookie, csrf = world.app.state.signer.dumps(world.users[name].id)
                sessions.append({"cookie": cookie, "csrf": csrf, "annotation_id": entry["annotation_id"]})
        assert len(sessions) == 200
        assert world.engine.pool.size() == 4
        with running_server(world.app) as base:
            codes = asyncio.run(_annotate_at_once(base, sessions))
        assert codes == {200: 400}, codes
        with Session(world.engine) as session:  # every acknowledged save is stored
            versions = collections.Counter(
                session.scalars(select(HumanAnnotation.version).where(HumanAnnotation.batch == "b-burst"))
            )
        assert versions == {2: 200}, versions
    finally:
        world.engine.dispose()


@pytest.mark.postgres
def test_the_server_refuses_to_start_with_more_connections_than_postgres_accepts(postgres_url):
    # Every process keeps a pool of 2 x threads connections: 64 processes x 2 x 40 threads would
    # ask for 5,120, so a burst would fail at PostgreSQL's max_connections instead of waiting.
    fits = WorkbenchSettings(database_url=postgres_url, secret=SECRET, workers=2, threads=16)
    check_connection_budget(fits)
    too_many = dataclasses.replace(fits, workers=64, threads=40)
    with pytest.raises(ConfigError, match="5120 database connections") as refused:
        check_connection_budget(too_many)
    assert "QWEN_WORKBENCH_WORKERS" in str(refused.value) and "max_connections" in str(refused.value)


def _one_item(world: World, batch: str) -> tuple[str, dict]:
    world.set_double_rate(0.0)
    world.import_batch(batch, frames=1)
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    return owner, my_items(world, owner)[0]


def test_a_write_between_a_saves_read_and_its_update_gets_409(world: World, monkeypatch):
    # A save reads the row, converts the editor's results, then updates WHERE version = the one
    # it read. Another tab's save landing in between must leave this one matching no row: 409
    # with the version now stored, and the other tab's edit kept.
    owner, entry = _one_item(world, "b-race")
    url = f"/api/annotations/{entry['annotation_id']}"
    slow_tab, fast_tab = world.client(owner), world.client(owner)
    start = open_annotation(slow_tab, entry["annotation_id"])
    convert = workflow.from_results
    landed: dict = {}

    def convert_while_another_tab_saves(item, results):
        if not landed:
            landed["started"] = True  # the other tab's own save converts through here too
            landed["answer"] = fast_tab.put(
                url, json={"version": start["version"], "result": moved_result(start, [60, 60, 160, 100])}
            )
        return convert(item, results)

    monkeypatch.setattr(workflow, "from_results", convert_while_another_tab_saves)
    slow = slow_tab.put(url, json={"version": start["version"], "result": moved_result(start, [10, 10, 90, 90])})
    assert landed["answer"].status_code == 200, landed["answer"].text
    assert slow.status_code == 409, slow.text
    assert slow.json()["current_version"] == landed["answer"].json()["version"] == start["version"] + 1
    kept = open_annotation(fast_tab, entry["annotation_id"])
    assert kept["version"] == start["version"] + 1
    assert kept["payload"]["regions"][0]["bbox"] == pytest.approx([60, 60, 160, 100])


def test_a_save_builds_no_pandas_table(world: World, monkeypatch):
    # A one-row DataFrame per save was 29 % of its CPU; the save converts against a one-frame index.
    owner, entry = _one_item(world, "b-nopandas")
    client = world.client(owner)
    start = open_annotation(client, entry["annotation_id"])

    def refuse(*args, **kwargs):
        raise AssertionError("a save built a pandas DataFrame")

    monkeypatch.setattr(pandas, "DataFrame", refuse)
    saved = client.put(
        f"/api/annotations/{entry['annotation_id']}",
        json={"version": start["version"], "result": moved_result(start, [50, 50, 150, 90])},
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == start["version"] + 1


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

    class CountingHasher:
        """argon2's hasher, counting the checks that run at the same time."""

        def __init__(self, inner) -> None:
            self.inner, self.running, self.most = inner, 0, 0
            self.lock = threading.Lock()

        def verify(self, stored: str, password: str) -> bool:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                return self.inner.verify(stored, password)
            finally:
                with self.lock:
                    self.running -= 1

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

    counting = CountingHasher(security._hasher)
    monkeypatch.setattr(security, "_hasher", counting)
    names = ["ann1", "ann2", "ann3", "rita", "admin", "nobody"]
    threads = [threading.Thread(target=_sign_in, args=(world.client(), name, PASSWORD)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counting.most == security.HASH_SLOTS  # each argon2 check takes 64 MiB: memory stays bounded


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


# --------------------------------------------------------------------------- request size


def _raw_exchange(base: str, head: str, body: bytes = b"", timeout: float = 20.0) -> tuple[int, float]:
    """Send a request head and the first bytes of its body over a socket; return the status of the
    answer and how long it took. The rest of the body is never sent: an answer proves the server
    did not wait to read it."""
    host, port = base.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(head.encode("latin-1") + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1]), time.monotonic() - started


def _head(method: str, path: str, length: int | None, cookie: str = "", csrf: str = "") -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if cookie:
        lines += [f"Cookie: {SESSION_COOKIE}={cookie}", f"{CSRF_HEADER}: {csrf}"]
    return "\r\n".join(lines) + "\r\n\r\n"


def test_bodies_are_refused_before_they_are_read(world: World):
    world.set_double_rate(0.0)
    world.import_batch("b-size", frames=1)
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    annotation = my_items(world, owner)[0]["annotation_id"]
    cookie, csrf = world.app.state.signer.dumps(world.users[owner].id)
    huge = 57 * 1024 * 1024
    with running_server(world.app) as base:
        # Anonymous: a 57 MB save and a 30 MB sign-in, refused with only their first kilobyte sent.
        assert _raw_exchange(base, _head("PUT", f"/api/annotations/{annotation}", huge), b"{" * 1024)[0] == 401
        assert _raw_exchange(base, _head("POST", "/api/login", 30 * 1024 * 1024), b"{" * 1024)[0] == 413
        # Signed in: each route has its limit (8 MiB for an editor's save, 1 MiB for settings).
        saving = _head("PUT", f"/api/annotations/{annotation}", huge, cookie, csrf)
        assert _raw_exchange(base, saving, b"{" * 1024)[0] == 413
        settings = _head("PUT", "/api/admin/settings", 2 * 1024 * 1024, cookie, csrf)
        assert _raw_exchange(base, settings, b"{")[0] == 413
        # A chunked body is cut off at the limit, without a Content-Length to go by.
        chunk = b"x" * 65536
        framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20))  # 1.25 MiB
        assert _raw_exchange(base, _head("PUT", "/api/admin/settings", None, cookie, csrf), framed)[0] == 413
    # Bodies within their limits still work.
    client = world.client(owner)
    opened = client.get(f"/api/annotations/{annotation}").json()
    saved = client.put(
        f"/api/annotations/{annotation}", json={"version": opened["version"], "result": opened["result"]}
    )
    assert saved.status_code == 200


# --------------------------------------------------------------------------- what a save may hold


def _owned_item(world: World, batch: str) -> tuple[httpx.Client, str, dict]:
    world.set_double_rate(0.0)
    world.import_batch(batch, frames=1)
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    annotation_id = my_items(world, owner)[0]["annotation_id"]
    client = world.client(owner)
    return client, annotation_id, client.get(f"/api/annotations/{annotation_id}").json()


def test_non_finite_out_of_frame_and_oversize_saves_are_refused(world: World):
    client, annotation_id, opened = _owned_item(world, "b-geometry")
    url = f"/api/annotations/{annotation_id}"

    def save_with(change) -> httpx.Response:
        result = copy.deepcopy(opened["result"])
        for entry in result:
            change(entry)
        # json.dumps writes Infinity and NaN as JavaScript does, which Python's parser takes.
        body = json.dumps({"version": opened["version"], "result": result})
        return client.put(url, content=body, headers={"Content-Type": "application/json"})

    infinite = save_with(lambda entry: entry["value"].update(width=float("inf")))  # JSON Infinity
    assert infinite.status_code == 422 and "finite" in infinite.json()["detail"]
    not_a_number = save_with(lambda entry: entry["value"].update(x=float("nan")))
    assert not_a_number.status_code == 422 and "finite" in not_a_number.json()["detail"]
    far_out = save_with(lambda entry: entry["value"].update(x=90.0, width=60.0))  # half of it past the edge
    assert far_out.status_code == 422 and "outside the 400x200 frame" in far_out.json()["detail"]

    def long_text(entry: dict) -> None:
        if entry["from_name"] == "transcription":
            entry["value"]["text"] = ["x" * 2_000_000]

    oversize = save_with(long_text)
    assert oversize.status_code == 422 and "10,000" in oversize.json()["detail"]
    # A hair past the edge (a drag that ends on it) is clipped and taken.
    edge = save_with(lambda entry: entry["value"].update(x=70.0, width=30.1))
    assert edge.status_code == 200, edge.text
    stored = client.get(url).json()["payload"]["regions"][0]["bbox"]
    assert stored[2] == pytest.approx(400.0)


# --------------------------------------------------------------------------- headers, schema, blobs, uploads


def test_the_openapi_schema_needs_a_sign_in(world: World):
    assert world.client().get("/api/openapi.json").status_code == 401
    schema = world.client("ann1").get("/api/openapi.json")
    assert schema.status_code == 200 and "/api/annotations/{annotation_id}" in schema.json()["paths"]
    assert world.service().get("/api/openapi.json").status_code == 200


def test_every_answer_carries_the_security_headers(world: World):
    for response in (world.client().get("/login"), world.client("admin").get("/api/me"), world.client().get("/api/me")):
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-eval" not in policy and "script-src 'self' 'unsafe-inline'" not in policy
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")  # Secure cookies: HTTPS


def test_only_regular_files_inside_the_store_are_served(world: World, tmp_path):
    world.set_double_rate(0.0)
    world.import_batch("b-blobs", frames=1)
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    item = item_of(world, my_items(world, owner)[0]["annotation_id"])
    client = world.client(owner)
    assert client.get(f"/media/items/{item.item_id}").status_code == 200
    # Someone with write access to the store swaps the blob for a symlink to a secret.
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    blob = world.layout.blobs.local_path(item.blob_uri)
    blob.unlink()
    blob.symlink_to(secret)
    refused = client.get(f"/media/items/{item.item_id}")
    assert refused.status_code == 404 and "root:x" not in refused.text


def test_an_image_declaring_too_many_pixels_is_refused_at_upload(world: World):
    # A 1 kB PNG whose header says 100000 x 100000 pixels: the ingest would quarantine it as a
    # decompression bomb, so the upload says so at once.
    header = bytearray(png_bytes())
    header[16:24] = struct.pack(">II", 100_000, 100_000)
    header[29:33] = struct.pack(">I", zlib.crc32(bytes(header[12:29])))
    answer = world.service().post(
        "/api/upload", files=[("files", ("bomb.png", bytes(header))), ("files", ("fine.png", png_bytes(9)))]
    )
    assert answer.status_code == 201, answer.text
    by_name = {entry["name"]: entry for entry in answer.json()["files"]}
    assert by_name["bomb.png"]["status"] == "rejected"
    reason = by_name["bomb.png"]["reason"]
    assert reason.startswith("decompression_bomb") and "10000000000 pixels" in reason.replace(",", "")
    assert by_name["fine.png"]["status"] == "accepted"


# --------------------------------------------------------------------------- the route x role matrix

ANN, REV, ADM, SVC = "annotator", "reviewer", "admin", "service"
PEOPLE = {ANN, REV, ADM}
PUBLIC = "public"
#: Who may call each route. Written out by hand, so that a route whose rule changes, or a new
#: route nobody placed here, fails the test below.
ACCESS: dict[tuple[str, str], set[str] | str] = {
    ("POST", "/api/login"): PUBLIC,
    ("POST", "/api/logout"): PEOPLE,
    ("GET", "/api/openapi.json"): PEOPLE | {SVC},
    ("GET", "/api/me"): PEOPLE,
    ("GET", "/api/tasks"): {ANN},
    ("GET", "/api/tasks/progress"): {ANN},
    ("GET", "/api/tasks/next"): {ANN},
    ("GET", "/api/annotations/{annotation_id}"): {ANN},
    ("PUT", "/api/annotations/{annotation_id}"): {ANN},
    ("POST", "/api/annotations/{annotation_id}/submit"): {ANN},
    ("POST", "/api/annotations/{annotation_id}/spatial-relations"): {ANN},
    ("GET", "/media/items/{item_id}"): PEOPLE,
    ("GET", "/media/items/{item_id}/thumbnail"): PEOPLE,
    ("GET", "/api/review/queue"): {REV, ADM},
    ("GET", "/api/review/items/{item_id}"): {REV, ADM},
    ("POST", "/api/review/items/{item_id}/resolve"): {REV, ADM},
    ("GET", "/api/review/sample"): {REV, ADM},
    ("POST", "/api/review/items/{item_id}/reject"): {REV, ADM},
    ("GET", "/api/admin/users"): {ADM},
    ("POST", "/api/admin/users"): {ADM},
    ("PATCH", "/api/admin/users/{user_id}"): {ADM},
    ("GET", "/api/admin/tokens"): {ADM},
    ("POST", "/api/admin/tokens"): {ADM},
    ("DELETE", "/api/admin/tokens/{token_id}"): {ADM},
    ("GET", "/api/admin/settings"): {ADM},
    ("PUT", "/api/admin/settings"): {ADM},
    ("GET", "/api/admin/templates"): {ADM},
    ("GET", "/api/admin/templates/{task}"): {ADM},
    ("PUT", "/api/admin/templates/{task}"): {ADM},
    ("DELETE", "/api/admin/templates/{task}"): {ADM},
    ("GET", "/api/batches"): {ADM},
    ("POST", "/api/batches/{batch}/import"): {ADM, SVC},
    ("GET", "/api/batches/{batch}/label-studio"): {ADM, SVC},
    ("GET", "/api/batches/{batch}/labeling-config"): {ADM, SVC},
    ("POST", "/api/batches/{batch}/label-studio"): {ADM, SVC},
    ("POST", "/api/upload"): {ADM, SVC},
    ("GET", "/login"): PUBLIC,
    ("GET", "/"): PEOPLE,
    ("GET", "/annotate"): {ANN},
    ("GET", "/annotate/{annotation_id}"): {ANN},
    ("GET", "/review"): {REV, ADM},
    ("GET", "/review/items/{item_id}"): {REV, ADM},
    ("GET", "/admin"): {ADM},
}
# Ids that exist nowhere, so an admitted call changes nothing (no token revoked, no user changed).
_PLACEHOLDERS = {
    "{annotation_id}": "a" * 32,
    "{item_id}": "b" * 32,
    "{batch}": "b1",
    "{task}": "no_such_task",
    "{user_id}": "999",
    "{token_id}": "999",
}


def _concrete_path(path: str) -> str:
    for placeholder, value in _PLACEHOLDERS.items():
        path = path.replace(placeholder, value)
    return path


def _caller(world: World, role: str | None) -> httpx.Client:
    if role == SVC:
        return world.service()
    if role is None:
        return world.client()
    name = {ANN: "ann1", REV: "rita", ADM: "admin"}[role]
    with Session(world.engine) as session:  # sign a cookie of the account's current generation
        generation = session.get(User, world.users[name].id).session_generation
    client = world.client()
    cookie, csrf = world.app.state.signer.dumps(world.users[name].id, generation)
    client.cookies.set(SESSION_COOKIE, cookie)
    client.headers[CSRF_HEADER] = csrf
    return client


def test_every_route_admits_exactly_its_roles(world: World):
    assert set(ACCESS) == set(_all_routes()), "place every route in ACCESS"
    cells = 0
    for (method, path), allowed in ACCESS.items():
        for role in (None, ANN, REV, ADM, SVC):
            body = {} if method != "GET" else None
            response = _caller(world, role).request(
                method, _concrete_path(path), json=body, headers={"Accept": "text/html"} if path[:5] != "/api/" else {}
            )
            where = (method, path, role, response.status_code, response.text[:120])
            if allowed == PUBLIC:
                assert response.status_code not in (401, 403), where
            elif role is None:
                assert response.status_code == 401, where
            elif role in allowed:
                assert response.status_code not in (401, 403), where
            else:
                assert response.status_code == 403, where
            cells += 1
    assert cells == 5 * len(ACCESS)


# --------------------------------------------------------------------------- durability


def _serve_in_child(url: str, root: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "QWEN_DATABASE_URL": url,
        "QWEN_STORAGE_ROOT": str(root),
        "QWEN_WORKBENCH_SECRET": SECRET,
        "QWEN_WORKBENCH_SECURE_COOKIES": "0",
    }
    command = [sys.executable, "-m", "qwen_dataset.workbench", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the workbench did not start"
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1.0)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise AssertionError("the workbench did not answer within 60 s")


def _edit(target: dict, number: int) -> list[dict]:
    """The number-th edit of an item: a box moved one pixel more, or a video event one frame longer."""
    if target["task"] == "video_event":
        return [{"start": 0.0, "end": 0.5 + number * 0.04, "description": f"edit {number}"}]
    return moved_result(target["opened"], [40 + number % 200, 40, 190 + number % 200, 80], f"edit {number}")


async def _save_until_killed(base: str, target: dict, acknowledged: dict) -> None:
    cookies = {SESSION_COOKIE: target["cookie"]}
    async with httpx.AsyncClient(base_url=base, cookies=cookies, headers={CSRF_HEADER: target["csrf"]}) as client:
        url = f"/api/annotations/{target['annotation_id']}"
        target["opened"] = (await client.get(url)).json()
        version = target["opened"]["version"]
        for number in range(10_000):
            try:
                response = await client.put(url, json={"version": version, "result": _edit(target, number)})
            except httpx.TransportError:
                return  # the server is gone
            assert response.status_code == 200, response.text
            version = response.json()["version"]
            acknowledged[target["annotation_id"]] = (version, number)


async def _burst_then_kill(base: str, targets: list[dict], server: subprocess.Popen) -> dict:
    acknowledged: dict[str, tuple[int, int]] = {}
    clients = [asyncio.create_task(_save_until_killed(base, target, acknowledged)) for target in targets]
    while sum(version for version, _ in acknowledged.values()) < 30 * len(targets):
        await asyncio.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)  # mid-burst: saves are in flight
    await asyncio.gather(*clients)
    return acknowledged


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_no_acknowledged_save_is_lost_when_the_server_is_killed(backend, tmp_path, request):
    url = sqlite_url(tmp_path / "db.sqlite") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    root = tmp_path / "root"
    world = build_world(url, root)
    world.set_double_rate(0.0)
    world.import_batch("b-kill", frames=6)
    world.import_video_batch("b-kill-video")
    targets = []
    for name in ("ann1", "ann2", "ann3"):
        for entry in my_items(world, name):
            cookie, csrf = world.app.state.signer.dumps(world.users[name].id)
            targets.append(
                {"cookie": cookie, "csrf": csrf, "annotation_id": entry["annotation_id"], "task": entry["task"]}
            )
    assert {target["task"] for target in targets} == {"ocr", "video_event"}
    world.engine.dispose()
    port = free_port()
    server = _serve_in_child(url, root, port)
    try:
        acknowledged = asyncio.run(_burst_then_kill(f"http://127.0.0.1:{port}", targets, server))
    finally:
        server.kill()
        server.wait()
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            for target in targets:
                version, number = acknowledged[target["annotation_id"]]
                row = session.get(HumanAnnotation, target["annotation_id"])
                # Every acknowledged save is there; at most the one in flight got in after it, unacknowledged.
                assert row.version in (version, version + 1), (target["task"], row.version, version)
                if row.version == version:
                    stored = json.loads(row.payload)
                    texts = (
                        [e["description"] for e in stored["events"]]
                        if target["task"] == "video_event"
                        else [r["text"] for r in stored["regions"]]
                    )
                    assert texts == [f"edit {number}"]
    finally:
        engine.dispose()
