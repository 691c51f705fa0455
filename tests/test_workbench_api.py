"""The review workbench's API: roles, uploads, assignment, arbitration, concurrency, Label Studio.

Every flow runs on SQLite and on PostgreSQL (``postgres_url``: a fresh database on the server).
Sessions are signed with the app's own signer instead of logging in through argon2 each time
(one test covers the real login), which keeps the suite fast.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.orm import Session

from qwen_dataset.db.engine import sqlite_url
from qwen_dataset.db.models import ApiToken, HumanAnnotation, ItemStatus, ReviewState, User, WorkItem
from qwen_dataset.db.queries import final_annotations
from qwen_dataset.geometry import to_label_studio
from qwen_dataset.ingest.uploads import ingest_batch
from qwen_dataset.records import (
    AnnotationRecord,
    FrameRecord,
    UploadStatus,
    annotation_id_for,
    dump_payload,
    frame_id_for,
    to_frame,
)
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import write_parquet
from qwen_dataset.workbench import api as api_module
from qwen_dataset.workbench import pages as pages_module
from qwen_dataset.workbench.app import create_app
from qwen_dataset.workbench.assignment import assign_frame
from qwen_dataset.workbench.config import WorkbenchSettings
from qwen_dataset.workbench.security import CSRF_HEADER, SESSION_COOKIE, hash_password, new_api_token, token_digest

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)  # once per session: argon2 is slow on purpose
SECRET = "test-secret-" + "x" * 40
WIDTH, HEIGHT = 400, 200
AI_BOX = [40.0, 40.0, 160.0, 80.0]
AI_AUTHOR = "rapidocr-onnxruntime==1.4.4"


# --------------------------------------------------------------------------- the world


def png_bytes(seed: int = 0, size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).rectangle([40 + seed % 50, 40, 160, 80], outline="black", width=3)
    image.putpixel((seed % size[0], 0), (seed // size[0] % 256, 0, 0))  # distinct content for every seed
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def ocr_payload(box=AI_BOX, text: str = "hello") -> dict[str, Any]:
    return {"regions": [{"bbox": list(box), "text": text, "confidence": 0.9, "language": "en", "reading_order": 0}]}


def write_batch(
    layout: StorageLayout,
    batch: str,
    frames: int = 4,
    failed: set[int] = frozenset(),
    task: str = "ocr",
    payload: dict[str, Any] | None = None,
) -> list[str]:
    """Frames and AI manifests of a pre-annotated batch, as the pipeline writes them: every frame
    pre-annotated for ``task`` with ``payload`` (default: one OCR line), or failed."""
    frame_rows, ai_rows = [], []
    for index in range(frames):
        sha, uri = layout.blobs.put_bytes(png_bytes(index))
        upload_id = sha
        frame = FrameRecord(
            frame_id=frame_id_for(upload_id, 0),
            upload_id=upload_id,
            batch=batch,
            kind="image",
            index=0,
            page=None,
            t=None,
            width=WIDTH,
            height=HEIGHT,
            blob_uri=uri,
            low_light=False,
            mean_luma=200.0,
            enhanced_uri="",
        )
        frame_rows.append(frame)
        ok = index not in failed
        ai_rows.append(
            AnnotationRecord(
                annotation_id=annotation_id_for(frame.frame_id, task, "ai", AI_AUTHOR),
                frame_id=frame.frame_id,
                upload_id=upload_id,
                batch=batch,
                task=task,
                source="ai",
                author=AI_AUTHOR,
                template_version="1.0+abc",
                created_at="2026-01-01T00:00:00+00:00",
                status="ok" if ok else "failed",
                error="" if ok else "timeout",
                payload=dump_payload((payload or ocr_payload()) if ok else {}),
                reviewed=False,
            )
        )
    for asset, rows, record_type in (
        ("frames", frame_rows, FrameRecord),
        ("ai_annotations", ai_rows, AnnotationRecord),
    ):
        write_parquet(layout.manifest(asset, batch), to_frame(rows, record_type))
    return [frame.frame_id for frame in frame_rows]


VIDEO_SECONDS, VIDEO_SIZE = 4.0, (320, 180)
#: Two events the way a VLM guesses them, a little off the scene cuts (at 4/3 s and 8/3 s).
AI_EVENTS = [
    {"start": 0.1, "end": 1.2, "description": "a red scene with dark blocks"},
    {"start": 1.5, "end": 2.5, "description": "the picture turns green"},
]


def write_video_batch(
    layout: StorageLayout, batch: str, folder: Path, ai_events: list[dict] | None = AI_EVENTS
) -> dict[str, Any]:
    """A batch of one real H.264 video (three scenes), ingested and sampled at 1 fps by the
    pipeline's own code. With ``ai_events`` the AI row holds them aligned to the cuts of a real
    scan (what the vLLM backend writes); without, there is no video_event row (the CPU backend)."""
    from qwen_dataset.ingest.frames import extract_frames
    from qwen_dataset.prelabel.video_events import event_payload, scan_video
    from qwen_dataset.samples.video import make_h264_video

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clip.mp4"
    make_h264_video(path, VIDEO_SECONDS, 25, *VIDEO_SIZE, seed=7, scenes=3)
    (upload,) = ingest_batch(folder, batch, layout.blobs)
    frames = list(extract_frames(upload, layout.blobs))
    rows = []
    if ai_events is not None:
        times, ids = [float(frame.t) for frame in frames], [frame.frame_id for frame in frames]
        payload = event_payload(ai_events, scan_video(path), times, ids)
        rows.append(
            AnnotationRecord(
                annotation_id=annotation_id_for(frames[0].frame_id, "video_event", "ai", "qwen"),
                frame_id=frames[0].frame_id,
                upload_id=upload.upload_id,
                batch=batch,
                task="video_event",
                source="ai",
                author="Qwen/Qwen3-VL-8B-Instruct",
                template_version="1.0+video",
                created_at="2026-01-01T00:00:00+00:00",
                status="ok",
                error="",
                payload=dump_payload(payload),
                reviewed=False,
            )
        )
    write_parquet(layout.manifest("frames", batch), to_frame(frames, FrameRecord))
    write_parquet(layout.manifest("ai_annotations", batch), to_frame(rows, AnnotationRecord))
    return {"frames": frames, "upload_id": upload.upload_id, "path": path}


@dataclasses.dataclass
class World:
    app: Any
    engine: Any
    layout: StorageLayout
    users: dict[str, User]
    token: str
    clients: list[TestClient]

    def client(self, name: str | None = None, csrf: bool = True) -> TestClient:
        """A client signed in as ``name`` (cookie + CSRF header), or anonymous."""
        client = TestClient(self.app)
        self.clients.append(client)
        if name is not None:
            cookie, token = self.app.state.signer.dumps(self.users[name].id)
            client.cookies.set(SESSION_COOKIE, cookie)
            if csrf:
                client.headers[CSRF_HEADER] = token
        return client

    def service(self) -> TestClient:
        client = TestClient(self.app, headers={"Authorization": f"Bearer {self.token}"})
        self.clients.append(client)
        return client

    def import_batch(self, batch: str, **batch_options) -> dict:
        frame_ids = write_batch(self.layout, batch, **batch_options)
        response = self.client("admin").post(f"/api/batches/{batch}/import")
        assert response.status_code == 200, response.text
        return {"summary": response.json(), "frame_ids": frame_ids}

    def import_video_batch(self, batch: str, ai_events: list[dict] | None = AI_EVENTS) -> dict:
        written = write_video_batch(self.layout, batch, Path(self.layout.root).parent / "incoming" / batch, ai_events)
        response = self.client("admin").post(f"/api/batches/{batch}/import")
        assert response.status_code == 200, response.text
        return {"summary": response.json(), **written}

    def set_double_rate(self, rate: float) -> None:
        response = self.client("admin").put("/api/admin/settings", json={"double_rate": rate})
        assert response.status_code == 200, response.text


def build_world(url: str, root: Path | str, **settings_overrides) -> World:
    settings = WorkbenchSettings(
        **{"database_url": url, "storage_root": root, "secret": SECRET, "secure_cookies": True, **settings_overrides}
    )
    app = create_app(settings)  # its own engine, sized as in production
    engine = app.state.engine
    users = {}
    token = new_api_token()
    with Session(engine, expire_on_commit=False) as session:
        for name, role in (
            ("admin", "admin"),
            ("rita", "reviewer"),
            ("ann1", "annotator"),
            ("ann2", "annotator"),
            ("ann3", "annotator"),
        ):
            user = User(username=name, password_hash=PASSWORD_HASH, role=role, active=True)
            session.add(user)
            users[name] = user
        session.add(ApiToken(name="pipeline", token_hash=token_digest(token), prefix=token[:10]))
        session.commit()
    return World(app, engine, StorageLayout(root), users, token, [])


@contextmanager
def running_server(app) -> Iterator[str]:
    """The app under a real uvicorn server on a free loopback port (a thread); yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the workbench server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request, tmp_path):
    url = (
        sqlite_url(tmp_path / "db" / "annotations.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    built = build_world(url, tmp_path / "root", max_file_bytes=64 * 1024, max_request_bytes=512 * 1024)
    yield built
    for client in built.clients:
        client.close()
    built.engine.dispose()


def my_items(world: World, name: str) -> list[dict]:
    response = world.client(name).get("/api/tasks")
    assert response.status_code == 200, response.text
    return response.json()


def moved_result(annotation: dict, box: list[float], text: str | None = None) -> list[dict]:
    """The editor's results after the user moved the first box (and maybe retyped its text)."""
    result = copy.deepcopy(annotation["result"])
    geometry = to_label_studio(box, WIDTH, HEIGHT)
    for entry in result:
        if entry.get("id") == "r0":
            entry["value"].update(geometry)
            if text is not None and entry["from_name"] == "transcription":
                entry["value"]["text"] = [text]
    return result


def open_annotation(client: TestClient, annotation_id: str) -> dict:
    response = client.get(f"/api/annotations/{annotation_id}")
    assert response.status_code == 200, response.text
    return response.json()


def rows_of(world: World, item_id: str) -> list[HumanAnnotation]:
    with Session(world.engine) as session:
        return list(session.scalars(select(HumanAnnotation).where(HumanAnnotation.item_id == item_id)))


def item_of(world: World, annotation_id: str) -> WorkItem:
    with Session(world.engine) as session:
        return session.get(WorkItem, session.get(HumanAnnotation, annotation_id).item_id)


# --------------------------------------------------------------------------- roles


#: Every router the app includes (create_app), so every route is checked.
ROUTERS = (api_module.router, api_module.upload_router, pages_module.router)


def _all_routes():
    """Every (method, path) the app serves (its API and page routes, not the static mounts)."""
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                for method in sorted(route.methods - {"HEAD"}):
                    yield method, route.path


def _concrete(path: str) -> str:
    return (
        path.replace("{annotation_id}", "a" * 32)
        .replace("{item_id}", "b" * 32)
        .replace("{batch}", "b1")
        .replace("{task}", "ocr")
        .replace("{user_id}", "1")
        .replace("{token_id}", "1")
    )


def test_anonymous_gets_401_everywhere(world):
    client = world.client()
    public = {("GET", "/login")}
    checked = 0
    for method, path in _all_routes():
        if (method, path) in public:
            continue
        response = client.request(method, _concrete(path), json={} if method != "GET" else None)
        if path == "/api/login":
            assert response.status_code in (401, 422), (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code, response.text[:200])
        checked += 1
    assert checked > 30
    # A browser asking for a page gets the sign-in form, still with 401.
    page = client.get("/annotate", headers={"Accept": "text/html"})
    assert page.status_code == 401 and 'id="login-form"' in page.text
    assert client.get("/login").status_code == 200
    # Forged and tampered cookies are anonymous too.
    client.cookies.set(SESSION_COOKIE, "forged.cookie.value")
    assert client.get("/api/me").status_code == 401


def test_role_rules(world):
    annotator, reviewer, admin, service = (
        world.client("ann1"),
        world.client("rita"),
        world.client("admin"),
        world.service(),
    )
    review = ["/api/review/queue", "/api/review/sample", f"/api/review/items/{'b' * 32}"]
    admin_only = [
        "/api/admin/users",
        "/api/admin/tokens",
        "/api/admin/settings",
        "/api/admin/templates",
        "/api/batches",
    ]
    for path in review + admin_only:
        assert annotator.get(path).status_code == 403, path
    for path in admin_only:
        assert reviewer.get(path).status_code == 403, path
        assert service.get(path).status_code == 403, path
        assert admin.get(path).status_code == 200, path
    for path in review[:2]:
        assert reviewer.get(path).status_code == 200 and admin.get(path).status_code == 200
        assert service.get(path).status_code == 403
    for client in (reviewer, admin, service):
        assert client.get("/api/tasks").status_code == 403
    assert annotator.post("/api/review/items/x/resolve", json={"choice": "a"}).status_code == 403
    assert annotator.post("/api/batches/b1/import").status_code == 403
    assert reviewer.post("/api/upload", files=[("files", ("a.png", png_bytes()))]).status_code == 403
    assert annotator.get("/admin", headers={"Accept": "text/html"}).status_code == 403
    # Tokens reach only the machine endpoints; revoked or unknown tokens are 401.
    assert (
        TestClient(world.app, headers={"Authorization": "Bearer qwb_nope"})
        .get("/api/batches/b1/labeling-config")
        .status_code
        == 401
    )
    assert service.get("/api/batches/b1/labeling-config").status_code == 200


def test_csrf_is_required_for_cookie_writes(world):
    no_csrf = world.client("admin", csrf=False)
    assert no_csrf.get("/api/admin/settings").status_code == 200  # reads need no token
    refused = no_csrf.put("/api/admin/settings", json={"double_rate": 0.5})
    assert refused.status_code == 403 and CSRF_HEADER in refused.json()["detail"]
    wrong = no_csrf.put("/api/admin/settings", json={"double_rate": 0.5}, headers={CSRF_HEADER: "guess"})
    assert wrong.status_code == 403
    assert world.client("admin").get("/api/admin/settings").json()["double_rate"] == pytest.approx(0.1)
    # Bearer tokens carry no cookie, so they need no CSRF token.
    assert world.service().post("/api/upload", files=[("files", ("a.png", png_bytes()))]).status_code == 201


def test_login_sets_a_hardened_cookie_and_logout(world):
    client = world.client()
    assert client.post("/api/login", json={"username": "ann1", "password": "wrong password"}).status_code == 401
    assert client.post("/api/login", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    form = client.post("/api/login", data={"username": "ann1", "password": PASSWORD})
    assert form.status_code == 422  # JSON only: a cross-site HTML form cannot sign anyone in
    response = client.post("/api/login", json={"username": "ann1", "password": PASSWORD})
    assert response.status_code == 200 and response.json()["role"] == "annotator"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
    value = response.cookies.get(SESSION_COOKIE) or cookie.split(";")[0].split("=", 1)[1]
    signed_in = world.client()
    signed_in.cookies.set(SESSION_COOKIE, value)
    assert signed_in.get("/api/me").json()["username"] == "ann1"
    assert signed_in.post("/api/logout").status_code == 403  # no CSRF header
    assert signed_in.post("/api/logout", headers={CSRF_HEADER: response.json()["csrf"]}).status_code == 200
    # A deactivated user's session stops working at once.
    admin = world.client("admin")
    assert admin.patch(f"/api/admin/users/{world.users['ann1'].id}", json={"active": False}).status_code == 200
    assert signed_in.get("/api/me").status_code == 401


# --------------------------------------------------------------------------- upload


def _files(*entries):
    return [("files", entry) for entry in entries]


def test_upload_edge_cases(world):
    service = world.service()
    png, other_png = png_bytes(1), png_bytes(2)
    big = png_bytes(3, size=(1200, 1200)) + bytes(80 * 1024)  # a valid PNG head, over the 64 KiB per-file limit
    response = service.post(
        "/api/upload",
        files=_files(
            ("cat.png", png),
            ("../../etc/evil.png", png),
            ("..\\..\\evil2.png", other_png),
            ("/abs/path.png", other_png),
            ("bell\x07.png", other_png),
            ("copy.png", png),
            ("notes.png", b"just text, not an image"),
            ("empty.png", b""),
            ("huge.png", big),
            ("photos/dog.png", other_png),
            ("_READY", png_bytes(4)),
            ("cat.png", png_bytes(5)),
        ),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    by_name = {}
    for entry in body["files"]:
        by_name.setdefault(entry["name"], []).append(entry)
    assert [e["status"] for e in by_name["cat.png"]] == ["accepted", "accepted"]
    assert by_name["cat.png"][1]["stored_as"].startswith("cat-") and by_name["cat.png"][1]["stored_as"].endswith(".png")
    for name in ("../../etc/evil.png", "..\\..\\evil2.png", "/abs/path.png", "bell\x07.png"):
        assert by_name[name][0]["status"] == "rejected" and by_name[name][0]["reason"].startswith("unsafe_name"), name
    assert by_name["copy.png"][0]["status"] == "duplicate" and "cat.png" in by_name["copy.png"][0]["reason"]
    assert by_name["notes.png"][0]["reason"].startswith("unknown_type")
    assert by_name["empty.png"][0]["reason"].startswith("empty")
    assert by_name["huge.png"][0]["reason"].startswith("too_large")
    assert by_name["photos/dog.png"][0]["stored_as"] == "dog.png"
    assert by_name["_READY"][0]["stored_as"] == "file_READY"  # never a premature marker
    batch = body["batch"]
    folder = world.layout.batch_inbox(batch)
    stored = sorted(path.name for path in folder.iterdir())
    assert stored == sorted(["_READY", "cat.png", by_name["cat.png"][1]["stored_as"], "dog.png", "file_READY"])
    # Nothing was written anywhere else under the root, and no staging folder is left.
    assert sorted(p.name for p in world.layout.inbox.iterdir()) == [batch]
    assert not (world.layout.root / "etc").exists()
    # The pipeline's own ingest takes the batch as it is.
    records = ingest_batch(folder, batch, world.layout.blobs)
    assert [record.status for record in records] == [UploadStatus.OK] * 4


def test_upload_refusals_leave_nothing(world):
    service = world.service()
    too_much = _files(*[(f"f{i}.png", png_bytes(i, size=(150, 150)) + bytes(60 * 1024)) for i in range(10)])
    assert service.post("/api/upload", files=too_much).status_code == 413  # over the 512 KiB per-request limit
    none_ok = service.post("/api/upload", files=_files(("a.txt", b"text"), ("../b.png", png_bytes())))
    assert none_ok.status_code == 422 and none_ok.json()["batch"] is None
    assert (
        service.post("/api/upload", data={"other": "field"}, files=[("other", ("x.png", png_bytes()))]).status_code
        == 400
    )
    assert (
        service.post("/api/upload", content=b"raw", headers={"Content-Type": "application/octet-stream"}).status_code
        == 415
    )
    inbox = world.layout.inbox
    assert not inbox.exists() or list(inbox.iterdir()) == []


# --------------------------------------------------------------------------- assignment


def test_import_assigns_every_frame_deterministically_and_blind(world):
    world.set_double_rate(0.5)
    imported = world.import_batch("b-assign", frames=12, failed={3})
    summary, frame_ids = imported["summary"], imported["frame_ids"]
    assert summary["items_created"] == 12 and summary["skipped_tasks"] == {}
    names = ["ann1", "ann2", "ann3"]
    expected = {fid: assign_frame(fid, 3, 0.5, "qwen-workbench") for fid in frame_ids}
    assert summary["double_blind_items"] == sum(choice.double_blind for choice in expected.values()) > 0
    seen: dict[str, list[str]] = {fid: [] for fid in frame_ids}
    ids_by_user = {}
    for name in names:
        items = my_items(world, name)
        ids_by_user[name] = {entry["annotation_id"] for entry in items}
        for entry in items:
            seen[entry["frame_id"]].append(name)
            assert entry["state"] == "draft" and "double_blind" not in entry
    for fid, choice in expected.items():
        assert sorted(seen[fid]) == sorted(names[i] for i in choice.annotators)
    # Importing again adds nothing.
    again = world.client("admin").post("/api/batches/b-assign/import").json()
    assert again["items_created"] == 0 and again["items_existing"] == 12
    # A double-blind frame: neither annotator can reach the other's version by any route.
    double = next(fid for fid, choice in expected.items() if choice.double_blind)
    first, second = (names[i] for i in expected[double].annotators)
    mine = next(e for e in my_items(world, first) if e["frame_id"] == double)
    theirs = next(e for e in my_items(world, second) if e["frame_id"] == double)
    me = world.client(first)
    assert me.get(f"/api/annotations/{theirs['annotation_id']}").status_code == 404
    assert me.put(f"/api/annotations/{theirs['annotation_id']}", json={"version": 1, "result": []}).status_code == 404
    assert me.post(f"/api/annotations/{theirs['annotation_id']}/submit", json={"version": 1}).status_code == 404
    everything = json.dumps(me.get("/api/tasks").json()) + json.dumps(open_annotation(me, mine["annotation_id"]))
    for other in ids_by_user[second]:
        assert other not in everything
    # Frames: an annotator sees only frames assigned to them.
    outsider = next(name for name in names if name not in (first, second))
    item_id = item_of(world, mine["annotation_id"]).item_id
    assert me.get(f"/media/items/{item_id}").status_code == 200
    assert me.get(f"/media/items/{item_id}").headers["content-type"] == "image/png"
    if not any(e["frame_id"] == double for e in my_items(world, outsider)):
        assert world.client(outsider).get(f"/media/items/{item_id}").status_code == 404
    # The failed pre-annotation starts empty and says why.
    failed_frame = frame_ids[3]
    owner = names[expected[failed_frame].annotators[0]]
    entry = next(e for e in my_items(world, owner) if e["frame_id"] == failed_frame)
    opened = open_annotation(world.client(owner), entry["annotation_id"])
    assert opened["result"] == [] and opened["ai_error"] == "timeout"


def test_import_refuses_without_manifests_or_annotators(world):
    admin = world.client("admin")
    missing = admin.post("/api/batches/never-made/import")
    assert missing.status_code == 409 and "materialize" in missing.json()["detail"]
    assert admin.post("/api/batches/..%2Fetc/import").status_code in (404, 409)
    for name in ("ann1", "ann2", "ann3"):
        admin.patch(f"/api/admin/users/{world.users[name].id}", json={"active": False})
    write_batch(world.layout, "b-nobody", frames=1)
    nobody = admin.post("/api/batches/b-nobody/import")
    assert nobody.status_code == 409 and "annotator" in nobody.json()["detail"]


# --------------------------------------------------------------------------- flows


def test_single_annotation_flow_with_rejection(world):
    world.set_double_rate(0.0)
    imported = world.import_batch("b-single", frames=2)
    assert imported["summary"]["double_blind_items"] == 0
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    client = world.client(owner)
    entry = my_items(world, owner)[0]
    annotation = open_annotation(client, entry["annotation_id"])
    assert annotation["result"] and annotation["config"].startswith("<View>")
    new_box = [60.0, 50.0, 190.0, 95.0]
    saved = client.put(
        f"/api/annotations/{entry['annotation_id']}",
        json={"version": annotation["version"], "result": moved_result(annotation, new_box, "hullo")},
    )
    assert saved.status_code == 200 and saved.json()["version"] == annotation["version"] + 1
    assert final_annotations(world.engine, "b-single").empty  # drafts never reach the pipeline
    submitted = client.post(
        f"/api/annotations/{entry['annotation_id']}/submit", json={"version": saved.json()["version"]}
    )
    assert submitted.status_code == 200 and submitted.json()["state"] == ReviewState.SUBMITTED  # final inside
    final = final_annotations(world.engine, "b-single")
    assert len(final) == 1
    region = json.loads(final["payload"].iloc[0])["regions"][0]
    assert region["bbox"] == pytest.approx(new_box) and region["text"] == "hullo"
    assert final["source"].tolist() == ["human"] and final["author"].tolist() == [owner]
    # Submitted work is read-only.
    late = client.put(
        f"/api/annotations/{entry['annotation_id']}", json={"version": submitted.json()["version"], "result": []}
    )
    assert late.status_code == 409
    # A reviewer samples it and sends it back with a reason.
    reviewer = world.client("rita")
    sample = reviewer.get("/api/review/sample", params={"batch": "b-single"}).json()
    item_id = item_of(world, entry["annotation_id"]).item_id
    assert item_id in {row["item_id"] for row in sample}
    assert reviewer.post(f"/api/review/items/{item_id}/reject", json={"reason": " "}).status_code == 422
    rejected = reviewer.post(f"/api/review/items/{item_id}/reject", json={"reason": "the text is 'hello'"})
    assert rejected.status_code == 200 and rejected.json()["returned_to"] == owner
    assert final_annotations(world.engine, "b-single").empty
    back = next(e for e in my_items(world, owner) if e["annotation_id"] == entry["annotation_id"])
    assert back["state"] == "draft" and "the text is 'hello'" in back["note"]
    again = open_annotation(client, entry["annotation_id"])
    fixed = moved_result(again, new_box, "hello")
    assert (
        client.post(
            f"/api/annotations/{entry['annotation_id']}/submit", json={"version": again["version"], "result": fixed}
        ).status_code
        == 200
    )
    assert json.loads(final_annotations(world.engine, "b-single")["payload"].iloc[0])["regions"][0]["text"] == "hello"


def _double_pair(world: World, batch: str) -> tuple[tuple[str, dict], tuple[str, dict]]:
    world.set_double_rate(1.0)
    imported = world.import_batch(batch, frames=1)
    assert imported["summary"]["double_blind_items"] == 1
    pairs = [(name, my_items(world, name)[0]) for name in ("ann1", "ann2", "ann3") if my_items(world, name)]
    assert len(pairs) == 2
    return pairs[0], pairs[1]


def _submit(world: World, name: str, entry: dict, box=None, text=None) -> dict:
    client = world.client(name)
    annotation = open_annotation(client, entry["annotation_id"])
    result = moved_result(annotation, box or AI_BOX, text)
    response = client.post(
        f"/api/annotations/{entry['annotation_id']}/submit", json={"version": annotation["version"], "result": result}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_agreeing_double_annotations_become_final(world):
    (first, entry_a), (second, entry_b) = _double_pair(world, "b-agree")
    assert _submit(world, first, entry_a, [41, 40, 160, 80])["state"] == ReviewState.SUBMITTED
    assert final_annotations(world.engine, "b-agree").empty  # waits for the second version
    assert _submit(world, second, entry_b, [40, 41, 160, 80])["state"] == ReviewState.SUBMITTED
    item = item_of(world, entry_a["annotation_id"])
    assert item.status == ItemStatus.FINAL
    final = final_annotations(world.engine, "b-agree")
    assert final["author"].tolist() == [first]  # the version submitted first
    assert world.client("rita").get("/api/review/queue").json() == []


def test_annotators_cannot_tell_single_from_double_blind_items(world):
    (first, double_entry), (second, other_entry) = _double_pair(world, "b-blind-d")
    world.set_double_rate(0.0)
    world.import_batch("b-blind-s", frames=4)
    single_entry = next(entry for entry in my_items(world, first) if entry["batch"] == "b-blind-s")
    entries = (single_entry, double_entry)
    single = _submit(world, first, single_entry)
    double = _submit(world, first, double_entry)
    _submit(world, second, other_entry)  # agrees: the first version is now final inside as well
    with Session(world.engine) as session:
        assert [session.get(HumanAnnotation, e["annotation_id"]).state for e in entries] == ["final"] * 2
    # The submit answers look the same...
    assert single["state"] == double["state"] == ReviewState.SUBMITTED and single.keys() == double.keys()
    # ...and so do the task list, its state filter, the opened annotation, a late edit and the HTML list.
    client = world.client(first)
    listed = {entry["annotation_id"]: entry for entry in my_items(world, first)}
    shown = [listed[entry["annotation_id"]] for entry in entries]
    assert [entry["state"] for entry in shown] == ["submitted"] * 2 and shown[0].keys() == shown[1].keys()
    assert client.get("/api/tasks", params={"state": "final"}).json() == []
    submitted_ids = {entry["annotation_id"] for entry in client.get("/api/tasks", params={"state": "submitted"}).json()}
    assert submitted_ids == {entry["annotation_id"] for entry in entries}
    for entry in entries:
        assert open_annotation(client, entry["annotation_id"])["state"] == "submitted"
        late = client.put(f"/api/annotations/{entry['annotation_id']}", json={"version": 1, "result": []})
        assert late.status_code == 409 and late.json()["state"] == "submitted" and "final" not in late.text
    listing = client.get("/annotate", headers={"Accept": "text/html"}).text
    assert listing.count('data-state="submitted"') == 2 and "final" not in listing
    # Reviewers still see the real state.
    single_item = item_of(world, single_entry["annotation_id"]).item_id
    detail = world.client("rita").get(f"/api/review/items/{single_item}").json()
    assert detail["status"] == "final" and detail["versions"][0]["state"] == "final"


def test_disagreement_goes_to_arbitration(world):
    (first, entry_a), (second, entry_b) = _double_pair(world, "b-arb")
    _submit(world, first, entry_a, [40, 40, 160, 80], "hello")
    _submit(world, second, entry_b, [200, 100, 300, 150], "help")
    item = item_of(world, entry_a["annotation_id"])
    assert item.status == ItemStatus.ARBITRATION and "counterpart" in item.disagreement
    assert final_annotations(world.engine, "b-arb").empty
    # Annotators still see only their own version.
    mine = open_annotation(world.client(first), entry_a["annotation_id"])
    assert entry_b["annotation_id"] not in json.dumps(mine) and "help" not in json.dumps(mine)
    reviewer = world.client("rita")
    queue = reviewer.get("/api/review/queue").json()
    assert [row["item_id"] for row in queue] == [item.item_id]
    detail = reviewer.get(f"/api/review/items/{item.item_id}").json()
    assert {version["author"] for version in detail["versions"]} == {first, second}
    assert detail["task"]["predictions"][0]["result"]  # the AI's version is shown too
    assert reviewer.post(f"/api/review/items/{item.item_id}/resolve", json={}).status_code == 422
    assert reviewer.post(f"/api/review/items/{item.item_id}/resolve", json={"choice": "c"}).status_code == 422
    merged = moved_result({"result": detail["versions"][0]["result"]}, [45, 42, 158, 79], "hello")
    resolved = reviewer.post(f"/api/review/items/{item.item_id}/resolve", json={"result": merged})
    assert resolved.status_code == 200 and resolved.json()["source"] == "arbitrated"
    final = final_annotations(world.engine, "b-arb")
    assert final["source"].tolist() == ["arbitrated"] and final["author"].tolist() == ["rita"]
    assert json.loads(final["payload"].iloc[0])["regions"][0]["bbox"] == pytest.approx([45, 42, 158, 79])
    assert reviewer.post(f"/api/review/items/{item.item_id}/resolve", json={"choice": "a"}).status_code == 409
    assert reviewer.get("/api/review/queue").json() == []
    # Reviewers cannot send double-blind work back: it was settled by arbitration.
    assert reviewer.post(f"/api/review/items/{item.item_id}/reject", json={"reason": "x"}).status_code == 409


def _slot(row: HumanAnnotation) -> int:
    return row.slot or 0


def test_arbitration_by_choosing_the_ai_version(world):
    (first, entry_a), (second, entry_b) = _double_pair(world, "b-arb-ai")
    _submit(world, first, entry_a, [40, 40, 160, 80], "hallo")
    _submit(world, second, entry_b, [40, 40, 160, 80], "hullo")
    item = item_of(world, entry_a["annotation_id"])
    # The reasons' A is the version in slot 1 (the reviewer's A), whoever submitted first.
    texts = {entry_a["annotation_id"]: "hallo", entry_b["annotation_id"]: "hullo"}
    text_a, text_b = (texts[row.annotation_id] for row in sorted(rows_of(world, item.item_id), key=_slot) if row.slot)
    assert item.status == ItemStatus.ARBITRATION and f"{text_a!r} vs {text_b!r}" in item.disagreement
    assert (
        world.client("rita").post(f"/api/review/items/{item.item_id}/resolve", json={"choice": "ai"}).status_code == 200
    )
    final = final_annotations(world.engine, "b-arb-ai")
    assert json.loads(final["payload"].iloc[0]) == json.loads(dump_payload(ocr_payload()))


# --------------------------------------------------------------------------- concurrency


def test_stale_versions_are_refused(world):
    world.set_double_rate(0.0)
    world.import_batch("b-conc", frames=1)
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    entry = my_items(world, owner)[0]
    tab_one, tab_two = world.client(owner), world.client(owner)
    start = open_annotation(tab_one, entry["annotation_id"])
    first = tab_one.put(
        f"/api/annotations/{entry['annotation_id']}",
        json={"version": start["version"], "result": moved_result(start, [50, 50, 150, 90])},
    )
    assert first.status_code == 200
    stale = tab_two.put(
        f"/api/annotations/{entry['annotation_id']}",
        json={"version": start["version"], "result": moved_result(start, [10, 10, 90, 90])},
    )
    assert stale.status_code == 409
    assert stale.json()["current_version"] == first.json()["version"] and "reload" in stale.json()["detail"]
    stale_submit = tab_two.post(f"/api/annotations/{entry['annotation_id']}/submit", json={"version": start["version"]})
    assert stale_submit.status_code == 409
    kept = open_annotation(tab_two, entry["annotation_id"])
    assert kept["payload"]["regions"][0]["bbox"] == pytest.approx([50, 50, 150, 90])


def test_simultaneous_saves_let_exactly_one_win(world):
    world.set_double_rate(0.0)
    world.import_batch("b-race", frames=1)
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    entry = my_items(world, owner)[0]
    start = open_annotation(world.client(owner), entry["annotation_id"])
    tabs = [world.client(owner) for _ in range(6)]
    barrier = threading.Barrier(len(tabs))
    statuses: list[int] = []

    def save(index: int) -> None:
        body = {"version": start["version"], "result": moved_result(start, [20 + index, 20, 150, 90])}
        barrier.wait()
        statuses.append(tabs[index].put(f"/api/annotations/{entry['annotation_id']}", json=body).status_code)

    threads = [threading.Thread(target=save, args=(index,)) for index in range(len(tabs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [409] * (len(tabs) - 1)
    assert open_annotation(tabs[0], entry["annotation_id"])["version"] == start["version"] + 1


def test_invalid_editor_results_are_refused(world):
    world.set_double_rate(0.0)
    world.import_batch("b-bad", frames=1)
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    entry = my_items(world, owner)[0]
    client = world.client(owner)
    start = open_annotation(client, entry["annotation_id"])
    outside = copy.deepcopy(start["result"])
    for result in outside:
        result["value"].update({"x": 150.0, "y": 150.0})  # entirely outside the frame
    refused = client.put(
        f"/api/annotations/{entry['annotation_id']}", json={"version": start["version"], "result": outside}
    )
    assert refused.status_code == 422 and "outside" in refused.json()["detail"]
    assert (
        client.put(f"/api/annotations/{entry['annotation_id']}", json={"version": 1, "result": "boxes"}).status_code
        == 422
    )
    assert open_annotation(client, entry["annotation_id"])["version"] == start["version"]


# --------------------------------------------------------------------------- Label Studio


def test_label_studio_round_trip(world):
    world.set_double_rate(0.0)
    world.import_batch("b-ls", frames=3)
    owner_entry = next((name, my_items(world, name)[0]) for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    _submit(world, owner_entry[0], owner_entry[1], [50, 45, 170, 85], "corrected")
    service = world.service()
    exported = service.get("/api/batches/b-ls/label-studio", params={"task": "ocr"})
    assert exported.status_code == 200
    tasks = exported.json()
    assert len(tasks) == 3 and all(task["predictions"][0]["result"] for task in tasks)
    by_frame = {task["data"]["frame_id"]: task for task in tasks}
    corrected = by_frame[item_of(world, owner_entry[1]["annotation_id"]).frame_id]
    assert corrected["predictions"][0]["result"][1]["value"]["text"] == ["corrected"]  # final human rows win
    assert tasks[0]["data"]["image"].startswith("/data/local-files/?d=blobs/sha256/")
    config = service.get("/api/batches/b-ls/labeling-config", params={"task": "ocr"})
    assert config.status_code == 200 and "<RectangleLabels" in config.text
    # What Label Studio exports after a reviewer there moved one box of every task.
    export = copy.deepcopy(tasks)
    for number, task in enumerate(export, start=1):
        task["id"] = number
        result = copy.deepcopy(task["predictions"][0]["result"])
        for entry in result:
            if entry.get("id") == "r0":
                entry["value"].update(to_label_studio([10, 10, 110, 60], WIDTH, HEIGHT))
        task["annotations"] = [{"id": number, "completed_by": {"email": "ls@example.org"}, "result": result}]
    first = service.post("/api/batches/b-ls/label-studio", json=export)
    assert first.status_code == 200, first.text
    assert first.json()["imported"] == 3 and first.json()["failed"] == []
    second = service.post("/api/batches/b-ls/label-studio", json=export)
    assert second.json()["imported"] == 0 and second.json()["updated"] == 3
    final = final_annotations(world.engine, "b-ls")
    from_ls = final[final["author"] == "label-studio:ls@example.org"]
    assert len(from_ls) == 3
    for payload in from_ls["payload"]:
        assert json.loads(payload)["regions"][0]["bbox"] == pytest.approx([10, 10, 110, 60])
    broken = copy.deepcopy(export[:1])
    broken[0]["annotations"][0]["result"][0]["value"].update({"x": 150.0})
    report = service.post("/api/batches/b-ls/label-studio", json=broken).json()
    assert len(report["failed"]) == 1 and "outside" in report["failed"][0]["error"]
    assert (
        service.post(
            "/api/batches/b-ls/label-studio", content=b"{not json", headers={"Content-Type": "application/json"}
        ).status_code
        == 422
    )


# --------------------------------------------------------------------------- admin


def test_admin_users_settings_tokens_templates(world):
    admin = world.client("admin")
    weak = admin.post("/api/admin/users", json={"username": "newbie", "password": "short", "role": "annotator"})
    assert weak.status_code == 422
    assert (
        admin.post("/api/admin/users", json={"username": "newbie", "password": PASSWORD, "role": "boss"}).status_code
        == 422
    )
    created = admin.post("/api/admin/users", json={"username": "newbie", "password": PASSWORD, "role": "annotator"})
    assert created.status_code == 201
    assert (
        admin.post(
            "/api/admin/users", json={"username": "newbie", "password": PASSWORD, "role": "annotator"}
        ).status_code
        == 409
    )
    with Session(world.engine) as session:
        stored = session.scalars(select(User).where(User.username == "newbie")).one().password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert admin.put("/api/admin/settings", json={"double_rate": 1.5}).status_code == 422
    assert admin.put("/api/admin/settings", json={"colour": "red"}).status_code == 422
    assert admin.put("/api/admin/settings", json={"agreement_iou": 0.7}).json()["agreement_iou"] == pytest.approx(0.7)
    # Tokens: shown once, stored hashed, revocable.
    token = admin.post("/api/admin/tokens", json={"name": "uploader"}).json()["token"]
    listed = admin.get("/api/admin/tokens").json()
    assert token not in json.dumps(listed)
    uploader = TestClient(world.app, headers={"Authorization": f"Bearer {token}"})
    world.clients.append(uploader)
    assert uploader.post("/api/upload", files=_files(("a.png", png_bytes()))).status_code == 201
    token_id = next(entry["id"] for entry in listed if entry["name"] == "uploader")
    assert admin.delete(f"/api/admin/tokens/{token_id}").status_code == 200
    assert uploader.post("/api/upload", files=_files(("b.png", png_bytes(7)))).status_code == 401
    # Templates: an edit is checked, stored, and materialized for the prelabel backend.
    template = admin.get("/api/admin/templates/ocr").json()
    assert template["overridden"] is False
    broken = admin.put("/api/admin/templates/ocr", json={"schema.json": "{not json"})
    assert broken.status_code == 422 and "schema.json" in broken.json()["detail"]
    prompt = template["files"]["prompt.txt"] + "\nBe exhaustive."
    saved = admin.put("/api/admin/templates/ocr", json={"prompt.txt": prompt})
    assert saved.status_code == 200 and saved.json()["overridden"] is True
    assert saved.json()["version_tag"] != template["version_tag"]
    materialized = world.layout.root / "templates" / "ocr" / "prompt.txt"
    assert materialized.read_text(encoding="utf-8") == prompt
    from qwen_dataset.prelabel.templates import load_template

    assert load_template("ocr", world.layout.root / "templates").prompt.endswith("Be exhaustive.")
    assert load_template("ocr").prompt == template["files"]["prompt.txt"].strip()  # packaged files untouched
    assert admin.delete("/api/admin/templates/ocr").json()["overridden"] is False
    assert materialized.read_text(encoding="utf-8") == template["files"]["prompt.txt"]


def test_pages_render_for_each_role(world):
    world.set_double_rate(0.0)
    world.import_batch("b-pages", frames=1)
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    entry = my_items(world, owner)[0]
    html = {"Accept": "text/html"}
    annotator = world.client(owner)
    listing = annotator.get("/annotate", headers=html)
    assert listing.status_code == 200 and entry["annotation_id"] in listing.text
    editor = annotator.get(f"/annotate/{entry['annotation_id']}", headers=html)
    assert editor.status_code == 200 and 'data-mode="annotate"' in editor.text
    assert annotator.get("/", headers=html, follow_redirects=False).headers["location"] == "/annotate"
    assert world.client("rita").get("/review", headers=html).status_code == 200
    assert world.client("admin").get("/admin", headers=html).status_code == 200
    assert world.client("rita").get("/admin", headers=html).status_code == 403
    assert "X-Frame-Options" in listing.headers
    # A path-relative "next" cannot send a fresh sign-in elsewhere.
    assert 'data-next="/"' in world.client().get("/login", params={"next": "//evil.example/"}).text
    assert 'data-next="/"' in world.client().get("/login", params={"next": "/\\evil.example"}).text


# --------------------------------------------------------------------------- spatial relations


def test_drawn_boxes_get_relations_from_the_default_engines_rules(world):
    world.set_double_rate(0.0)
    objects = [
        {"bbox": [20.0, 40.0, 100.0, 120.0], "label": "cup"},
        {"bbox": [200.0, 40.0, 300.0, 150.0], "label": "tray"},
    ]
    world.import_batch("b-spatial", frames=1, task="spatial", payload={"objects": objects, "relations": []})
    owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
    client = world.client(owner)
    entry = my_items(world, owner)[0]
    annotation = open_annotation(client, entry["annotation_id"])
    # The annotator draws a third box, inside the tray, as the editor serializes it.
    drawn = {**to_label_studio([220.0, 60.0, 260.0, 100.0], WIDTH, HEIGHT), "rotation": 0}
    result = annotation["result"] + [
        {
            "id": "new1",
            "from_name": "object",
            "to_name": "image",
            "type": "rectanglelabels",
            "value": {**drawn, "rectanglelabels": ["object"]},
        },
        {
            "id": "new1",
            "from_name": "label",
            "to_name": "image",
            "type": "textarea",
            "value": {**drawn, "text": ["spoon"]},
        },
    ]
    url = f"/api/annotations/{entry['annotation_id']}/spatial-relations"
    suggested = client.post(url, json={"result": result})
    assert suggested.status_code == 200, suggested.text
    relations = {
        (r["from_id"], tuple(r["labels"]), r["to_id"]) for r in suggested.json()["result"] if r["type"] == "relation"
    }
    assert ("o0", ("left_of",), "o1") in relations and ("o2", ("inside",), "o1") in relations
    # A pair the annotator related already keeps exactly what they said.
    mine = [*result, {"from_id": "o1", "to_id": "o0", "type": "relation", "direction": "right", "labels": ["right_of"]}]
    kept = client.post(url, json={"result": mine}).json()["result"]
    pair = [r["labels"] for r in kept if r["type"] == "relation" and {r["from_id"], r["to_id"]} == {"o0", "o1"}]
    assert pair == [["right_of"]]
    # Nothing was saved: the editor saves as usual.
    assert open_annotation(client, entry["annotation_id"])["version"] == annotation["version"]
    assert world.client("ann1" if owner != "ann1" else "ann2").post(url, json={"result": result}).status_code == 404
