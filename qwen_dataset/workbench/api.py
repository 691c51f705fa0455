"""JSON API of the workbench. Every endpoint names the roles it admits (see :mod:`.auth`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qwen_dataset.db.models import (
    ROLES,
    ApiToken,
    BatchImport,
    HumanAnnotation,
    ItemStatus,
    ReviewState,
    Role,
    User,
    WorkItem,
)
from qwen_dataset.exporters.label_studio.config import labeling_config
from qwen_dataset.ingest.uploads import HEAD_BYTES, video_container
from qwen_dataset.payloads import BOX_TASKS, TASK_ORDER
from qwen_dataset.quality.event_agreement import events_of
from qwen_dataset.records import Task
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.workbench import admin_settings, consensus, interop, queue, templates_admin, throttle, video, workflow
from qwen_dataset.workbench.assignment import import_batch
from qwen_dataset.workbench.auth import SERVICE, Principal, db_session, require
from qwen_dataset.workbench.editor import EDITABLE_TASKS, config_for, suggest_relations, task_data, to_results
from qwen_dataset.workbench.security import (
    SESSION_COOKIE,
    PasswordHashBusy,
    check_password_strength,
    hash_password,
    needs_rehash,
    new_api_token,
    token_digest,
    verify_password,
)
from qwen_dataset.workbench.thumbnails import NoPicture, thumbnail_jpeg
from qwen_dataset.workbench.upload import UploadLimits, receive_upload

# Request bodies are capped before they are read (FastAPI's max_body_size: an oversize
# Content-Length is refused at once, a chunked body when it passes the limit; 413 either way).
DEFAULT_BODY_BYTES = 1024 * 1024  # settings, users, tokens, templates, reasons
LOGIN_BODY_BYTES = 4 * 1024  # a user name and a password
EDITOR_BODY_BYTES = 8 * 1024 * 1024  # an editor's results: up to MAX_RESULTS regions, an HTML page
LABEL_STUDIO_BODY_BYTES = 256 * 1024 * 1024  # a Label Studio export of a whole batch
router = APIRouter(max_body_size=DEFAULT_BODY_BYTES)
# The upload streams its multipart body and checks the per-request limit of the settings itself.
upload_router = APIRouter()
ANNOTATOR = require(Role.ANNOTATOR)
REVIEWER = require(Role.REVIEWER, Role.ADMIN)
ADMIN = require(Role.ADMIN)
ADMIN_OR_SERVICE = require(Role.ADMIN, SERVICE)
ANY_USER = require(*ROLES)
SIGNED_IN_OR_SERVICE = require(*ROLES, SERVICE)
# Verifying against a real hash when the user does not exist keeps the response time the same,
# so a login attempt does not reveal which user names exist.
_DUMMY_HASH = hash_password("not a real password, only for timing")


def layout_of(request: Request) -> StorageLayout:
    settings = request.app.state.settings
    return StorageLayout(settings.storage_root, storage_options=settings.storage_options)


# --------------------------------------------------------------------------- sign-in


class Credentials(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


@router.post("/api/login", max_body_size=LOGIN_BODY_BYTES)
def login(
    credentials: Credentials, request: Request, response: Response, session: Session = Depends(db_session)
) -> dict:
    settings = request.app.state.settings
    policy = settings.throttle
    account, address = throttle.account_key(credentials.username), throttle.address_key(_client_address(request))
    wait = throttle.locked_for(session, (account, address))
    if wait:
        raise _too_many(
            f"too many failed sign-ins; try again in {wait} s (or ask an admin to reset the password)", wait
        )
    user = session.scalars(select(User).where(User.username == credentials.username)).first()
    try:
        valid = verify_password(user.password_hash if user else _DUMMY_HASH, credentials.password)
    except PasswordHashBusy as busy:
        raise _too_many(str(busy), 2) from None
    if user is None or not valid or not user.active:
        throttle.record_failure(session, account, policy.account_failures, policy.window)
        throttle.record_failure(session, address, policy.address_failures, policy.window)
        raise HTTPException(401, "wrong user name or password")
    throttle.clear(session, account)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(credentials.password)
        session.commit()
    cookie, csrf = request.app.state.signer.dumps(user.id, user.session_generation)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=settings.session_seconds,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return {"username": user.username, "role": user.role, "csrf": csrf}


def _client_address(request: Request) -> str | None:
    # uvicorn puts the proxy's X-Forwarded-For here when the proxy is trusted (--forwarded-allow-ips).
    return request.client.host if request.client else None


def _too_many(message: str, retry_after_s: int) -> HTTPException:
    return HTTPException(429, message, headers={"Retry-After": str(retry_after_s)})


def end_sessions(user: User) -> None:
    """End every session of ``user``: cookies issued before no longer sign anyone in. The caller commits."""
    user.session_generation += 1


@router.post("/api/logout")
def logout(response: Response, who: Principal = Depends(ANY_USER), session: Session = Depends(db_session)) -> dict:
    # Clearing the cookie is a courtesy: a copy replayed later must be dead too, so the session ends here.
    account = session.get(User, who.account.id)  # who.account is a detached copy
    if account is not None:
        end_sessions(account)
    session.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"signed_out": who.name}


@router.get("/api/openapi.json")
def openapi_schema(request: Request, who: Principal = Depends(SIGNED_IN_OR_SERVICE)) -> dict:
    """The API's OpenAPI schema, for signed-in users and API tokens (it lists every route)."""
    return request.app.openapi()


@router.get("/api/me")
def me(who: Principal = Depends(ANY_USER)) -> dict:
    return {"username": who.account.username, "role": who.role, "csrf": who.csrf}


# --------------------------------------------------------------------------- annotators


def _own_view(item: WorkItem, annotation: HumanAnnotation) -> dict[str, Any]:
    # What an annotator may see: never whether the item is double-blind, nor the other version.
    return {
        "annotation_id": annotation.annotation_id,
        "batch": item.batch,
        "frame_id": item.frame_id,
        "task": item.task,
        "state": workflow.annotator_state(annotation.state),
        "version": annotation.version,
        "note": annotation.note,
        "updated_at": annotation.updated_at.isoformat(timespec="seconds"),
    }


@router.get("/api/tasks")
def my_tasks(
    state: str | None = None, who: Principal = Depends(ANNOTATOR), session: Session = Depends(db_session)
) -> list[dict]:
    query = (
        select(WorkItem, HumanAnnotation)
        .join(HumanAnnotation, HumanAnnotation.item_id == WorkItem.item_id)
        .where(HumanAnnotation.assignee_id == who.account.id)
        .order_by(WorkItem.batch, WorkItem.frame_id, WorkItem.task)
    )
    views = [
        {**_own_view(item, annotation), "name": item.source_name or item.frame_id}
        for item, annotation in session.execute(query).all()
    ]
    # Filtered on the state annotators see, so "?state=final" cannot single out the single items.
    return [view for view in views if view["state"] == state] if state else views


@router.get("/api/tasks/progress")
def my_progress(who: Principal = Depends(ANNOTATOR), session: Session = Depends(db_session)) -> dict:
    """How far the annotator has come, overall and per batch (see :mod:`.queue`)."""
    rows = queue.queue_rows(session, who.account)
    return {
        "mine": dataclasses.asdict(queue.progress_of(rows)),
        "batches": [dataclasses.asdict(entry) for entry in queue.batch_progress(session, rows)],
    }


@router.get("/api/tasks/next")
def my_next_task(
    after: str | None = None, who: Principal = Depends(ANNOTATOR), session: Session = Depends(db_session)
) -> dict:
    """The annotator's next draft after ``after`` in queue order ("submit and next"); null when none is left."""
    rows = queue.queue_rows(session, who.account)
    following = queue.next_draft(rows, after)
    left = sum(row.state == ReviewState.DRAFT and row.annotation_id != after for row in rows)
    if following is None:
        return {"annotation_id": None, "url": None, "drafts_left": left}
    return {
        "annotation_id": following.annotation_id,
        "url": f"/annotate/{following.annotation_id}",
        "drafts_left": left,
    }


def _ai_prediction(item: WorkItem) -> list[dict[str, Any]]:
    if item.ai_status != "ok":
        return []
    return [
        {
            "model_version": f"{item.ai_author}@{item.ai_template_version}",
            # The name the editor shows on the prediction's tab (else "Admin").
            "createdBy": f"AI: {item.ai_author}",
            "result": to_results(item, item.ai_payload, item.ai_author, item.ai_template_version),
        }
    ]


def _editor_task(item: WorkItem) -> dict[str, Any]:
    media = f"/media/items/{item.item_id}"
    if item.task == Task.VIDEO_EVENT:
        timeline = video.VideoContext.from_json(item.context).for_editor()
        data = {**task_data(item), "video": media, "timeline": timeline}
    else:
        data = {**task_data(item), "image": media}
    return {"data": data, "predictions": _ai_prediction(item)}


@router.get("/api/annotations/{annotation_id}")
def my_annotation(
    annotation_id: str, who: Principal = Depends(ANNOTATOR), session: Session = Depends(db_session)
) -> dict:
    annotation = workflow.own_annotation(session, annotation_id, who.account)
    item = workflow.assigned_item(session, annotation)
    return {
        **_own_view(item, annotation),
        "config": config_for(item.task),
        "task": _editor_task(item),
        "result": to_results(item, annotation.payload, annotation.author, annotation.template_version),
        "payload": json.loads(annotation.payload or "{}"),
        "ai_error": item.ai_error if item.ai_status != "ok" else "",
    }


class Save(BaseModel):
    version: int
    result: list[dict[str, Any]] | None = None


@router.put("/api/annotations/{annotation_id}", max_body_size=EDITOR_BODY_BYTES)
def save_annotation(
    annotation_id: str, body: Save, who: Principal = Depends(ANNOTATOR), session: Session = Depends(db_session)
) -> dict:
    if body.result is None:
        raise HTTPException(422, "send 'result': the editor's current results")
    annotation = workflow.save_draft(session, who.account, annotation_id, body.version, body.result)
    return {
        "annotation_id": annotation.annotation_id,
        "version": annotation.version,
        "state": workflow.annotator_state(annotation.state),
    }


@router.post("/api/annotations/{annotation_id}/submit", max_body_size=EDITOR_BODY_BYTES)
def submit_annotation(
    annotation_id: str, body: Save, who: Principal = Depends(ANNOTATOR), session: Session = Depends(db_session)
) -> dict:
    annotation = workflow.submit(session, who.account, annotation_id, body.version, body.result)
    return {
        "annotation_id": annotation.annotation_id,
        "version": annotation.version,
        "state": workflow.annotator_state(annotation.state),
    }


class Boxes(BaseModel):
    result: list[dict[str, Any]]


@router.post("/api/annotations/{annotation_id}/spatial-relations", max_body_size=EDITOR_BODY_BYTES)
def spatial_relations(
    annotation_id: str, body: Boxes, who: Principal = Depends(ANNOTATOR), session: Session = Depends(db_session)
) -> dict:
    """The editor's boxes with the relations and depth order the default engine computes from them,
    for the pairs the annotator has not related yet; nothing is saved (the editor saves as usual)."""
    annotation = workflow.own_annotation(session, annotation_id, who.account)
    item = workflow.assigned_item(session, annotation)
    return {"result": suggest_relations(item, body.result)}


# --------------------------------------------------------------------------- frames


_IMAGE_TYPES = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def _media_type(head: bytes) -> str:
    """The Content-Type of a frame picture or a video file, from its first bytes."""
    video_type = video_container(head)[1]
    if video_type:
        return video_type
    return next((kind for magic, kind in _IMAGE_TYPES if head.startswith(magic)), "application/octet-stream")


def _visible_item(session: Session, who: Principal, item_id: str) -> WorkItem:
    """The item, if ``who`` may see it: reviewers and admins every item, annotators their own."""
    item = session.get(WorkItem, item_id)
    if item is not None and who.role == Role.ANNOTATOR:
        assigned = session.scalars(
            select(HumanAnnotation.annotation_id).where(
                HumanAnnotation.item_id == item_id, HumanAnnotation.assignee_id == who.account.id
            )
        ).first()
        item = item if assigned else None
    if item is None:
        raise HTTPException(404, "no such item among the items you may see")
    return item


def _stored_file(request: Request, blob_uri: str) -> Path:
    try:
        return layout_of(request).blobs.regular_file(blob_uri)
    except (ValueError, FileNotFoundError):
        raise HTTPException(404, f"the item's file {blob_uri} is missing from the storage root") from None


@router.get("/media/items/{item_id}/thumbnail")
def item_thumbnail(
    item_id: str, request: Request, who: Principal = Depends(ANY_USER), session: Session = Depends(db_session)
) -> Response:
    """A small JPEG of the item's picture (a video's first sampled frame), for the queue."""
    item = _visible_item(session, who, item_id)
    path = _stored_file(request, item.preview_uri or item.blob_uri)
    session.close()
    try:
        picture = thumbnail_jpeg(path)
    except NoPicture as missing:
        raise HTTPException(404, f"no thumbnail: {missing}") from None
    return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@router.get("/media/items/{item_id}")
def item_media(
    item_id: str, request: Request, who: Principal = Depends(ANY_USER), session: Session = Depends(db_session)
) -> FileResponse:
    item = _visible_item(session, who, item_id)
    path = _stored_file(request, item.blob_uri)
    session.close()  # the file may stream for minutes: its database connection goes back to the pool now
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    media_type = _media_type(head)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


# --------------------------------------------------------------------------- reviewers


def _item_summary(item: WorkItem) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "batch": item.batch,
        "frame_id": item.frame_id,
        "task": item.task,
        "status": item.status,
        "double_blind": item.double_blind,
        "disagreement": item.disagreement,
    }


@router.get("/api/review/queue")
def arbitration_queue(
    batch: str | None = None, who: Principal = Depends(REVIEWER), session: Session = Depends(db_session)
) -> list[dict]:
    query = (
        select(WorkItem).where(WorkItem.status == ItemStatus.ARBITRATION).order_by(WorkItem.batch, WorkItem.frame_id)
    )
    if batch:
        query = query.where(WorkItem.batch == batch)
    return [_item_summary(item) for item in session.scalars(query)]


def _version_view(item: WorkItem, row: HumanAnnotation, label: str) -> dict[str, Any]:
    return {
        "label": label,
        "author": row.author,
        "state": row.state,
        "source": row.source,
        "submitted_at": row.submitted_at.isoformat(timespec="seconds") if row.submitted_at else None,
        "result": to_results(item, row.payload, row.author, row.template_version),
        "payload": json.loads(row.payload or "{}"),
    }


def _mark_view(task: str, mark: consensus.BoxMark) -> dict[str, Any]:
    return {
        "number": mark.number,
        "bbox": mark.bbox,
        "label": mark.label,
        "content": mark.content,
        "partner": mark.partner,
        "issues": list(mark.issues),
        "status": mark.status,
        "where": mark.describe(task),
    }


def _event_view(mark: consensus.EventMark) -> dict[str, Any]:
    return {
        "number": mark.number,
        "start": mark.start,
        "end": mark.end,
        "description": mark.description,
        "partner": mark.partner,
        "issues": list(mark.issues),
        "status": mark.status,
        "where": mark.describe(),
    }


def _comparison_view(session: Session, item: WorkItem, rows: list[HumanAnnotation]) -> dict[str, Any] | None:
    """Both blind versions box by box, or event by event for a video (paired as agreement pairs
    them), and the AI's, for the arbitration view; None for an item without two versions."""
    if len(rows) < 2:
        return None
    settings = admin_settings.load_settings(session)
    payload_a, payload_b = json.loads(rows[0].payload or "{}"), json.loads(rows[1].payload or "{}")
    ai_payload = item.ai_payload if item.ai_status == "ok" else "{}"
    if item.task == Task.VIDEO_EVENT:
        events_a, events_b = consensus.compare_events(
            events_of(payload_a), events_of(payload_b), settings.agreement_tiou, settings.agreement_text
        )
        return {
            "kind": "events",
            "a": [_event_view(mark) for mark in events_a],
            "b": [_event_view(mark) for mark in events_b],
            "ai": [_event_view(mark) for mark in consensus.version_events(ai_payload or "{}")],
        }
    if item.task not in BOX_TASKS:
        return None
    compared = consensus.compare_boxes(item.task, payload_a, payload_b, settings.agreement_iou)
    return {
        "kind": "boxes",
        "width": item.width,
        "height": item.height,
        "min_iou": settings.agreement_iou,
        "a": [_mark_view(item.task, mark) for mark in compared.a],
        "b": [_mark_view(item.task, mark) for mark in compared.b],
        "ai": [_mark_view(item.task, mark) for mark in consensus.version_marks(item.task, ai_payload or "{}")],
    }


@router.get("/api/review/items/{item_id}")
def review_item(item_id: str, who: Principal = Depends(REVIEWER), session: Session = Depends(db_session)) -> dict:
    item = session.get(WorkItem, item_id)
    if item is None:
        raise HTTPException(404, f"no work item {item_id}")
    rows = workflow.versions_of(session, item)
    versions = [_version_view(item, row, label) for row, label in zip(rows, ("a", "b"))]
    final = workflow.final_row(session, item)
    return {
        **_item_summary(item),
        "config": config_for(item.task),
        "task": _editor_task(item),
        "versions": versions,
        "comparison": _comparison_view(session, item, rows),
        "final": _version_view(item, final, "final") if final is not None else None,
        "ai": {
            "author": item.ai_author,
            "status": item.ai_status,
            "error": item.ai_error,
            "payload": json.loads(item.ai_payload or "{}"),
        },
    }


class Resolution(BaseModel):
    choice: str | None = None
    result: list[dict[str, Any]] | None = None


@router.post("/api/review/items/{item_id}/resolve", max_body_size=EDITOR_BODY_BYTES)
def resolve_item(
    item_id: str, body: Resolution, who: Principal = Depends(REVIEWER), session: Session = Depends(db_session)
) -> dict:
    row = workflow.resolve(session, who.account, item_id, body.choice, body.result)
    return {"item_id": item_id, "status": ItemStatus.FINAL, "source": row.source, "author": row.author}


@router.get("/api/review/sample")
def review_sample(
    batch: str | None = None,
    limit: int = Query(20, ge=1, le=500),
    who: Principal = Depends(REVIEWER),
    session: Session = Depends(db_session),
) -> list[dict]:
    """A random sample of final single-annotated items, for spot checks."""
    query = (
        select(WorkItem, HumanAnnotation)
        .join(HumanAnnotation, HumanAnnotation.item_id == WorkItem.item_id)
        .where(
            WorkItem.status == ItemStatus.FINAL,
            WorkItem.double_blind.is_(False),
            HumanAnnotation.state == ReviewState.FINAL,
            HumanAnnotation.assignee_id.is_not(None),
        )
        .order_by(func.random())
        .limit(limit)
    )
    if batch:
        query = query.where(WorkItem.batch == batch)
    return [{**_item_summary(item), "author": row.author} for item, row in session.execute(query).all()]


class Rejection(BaseModel):
    reason: str = Field(max_length=2000)


@router.post("/api/review/items/{item_id}/reject")
def reject_item(
    item_id: str, body: Rejection, who: Principal = Depends(REVIEWER), session: Session = Depends(db_session)
) -> dict:
    row = workflow.reject(session, who.account, item_id, body.reason)
    return {"item_id": item_id, "status": ItemStatus.OPEN, "returned_to": row.author}


# --------------------------------------------------------------------------- admins


class NewUser(BaseModel):
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    password: str = Field(max_length=1024)
    role: str


def _user_view(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "role": user.role, "active": user.active}


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise HTTPException(422, f"role must be one of {list(ROLES)}")


def create_user(session: Session, username: str, password: str, role: str) -> User:
    """Create an account (the CLI and the admin API share it); the caller commits."""
    _check_role(role)
    weak = check_password_strength(password)
    if weak:
        raise HTTPException(422, weak)
    if session.scalars(select(User).where(User.username == username)).first() is not None:
        raise HTTPException(409, f"user {username!r} exists already")
    user = User(username=username, password_hash=hash_password(password), role=role, active=True)
    session.add(user)
    return user


@router.get("/api/admin/users")
def list_users(who: Principal = Depends(ADMIN), session: Session = Depends(db_session)) -> list[dict]:
    return [_user_view(user) for user in session.scalars(select(User).order_by(User.id))]


@router.post("/api/admin/users", status_code=201)
def add_user(body: NewUser, who: Principal = Depends(ADMIN), session: Session = Depends(db_session)) -> dict:
    user = create_user(session, body.username, body.password, body.role)
    session.commit()
    return _user_view(user)


class UserChange(BaseModel):
    active: bool | None = None
    role: str | None = None
    password: str | None = Field(default=None, max_length=1024)


@router.patch("/api/admin/users/{user_id}")
def change_user(
    user_id: int, body: UserChange, who: Principal = Depends(ADMIN), session: Session = Depends(db_session)
) -> dict:
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(404, f"no user {user_id}")
    if body.role is not None:
        _check_role(body.role)
        user.role = body.role
    if body.active is not None:
        if not body.active and user.active:
            end_sessions(user)
        user.active = body.active
    if body.password is not None:
        weak = check_password_strength(body.password)
        if weak:
            raise HTTPException(422, weak)
        user.password_hash = hash_password(body.password)
        end_sessions(user)  # whoever knew the old password is signed out too
    session.commit()
    return _user_view(user)


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=100)


def create_token(session: Session, name: str, created_by: int | None) -> str:
    """A new API token; only its digest is stored, the secret is returned once. The caller commits."""
    secret = new_api_token()
    session.add(ApiToken(name=name, token_hash=token_digest(secret), prefix=secret[:10], created_by=created_by))
    return secret


def _token_view(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "revoked": token.revoked,
        "created_at": token.created_at.isoformat(timespec="seconds"),
        "last_used_at": token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else None,
    }


@router.get("/api/admin/tokens")
def list_tokens(who: Principal = Depends(ADMIN), session: Session = Depends(db_session)) -> list[dict]:
    return [_token_view(token) for token in session.scalars(select(ApiToken).order_by(ApiToken.id))]


@router.post("/api/admin/tokens", status_code=201)
def add_token(body: NewToken, who: Principal = Depends(ADMIN), session: Session = Depends(db_session)) -> dict:
    secret = create_token(session, body.name, who.account.id)
    session.commit()
    return {"name": body.name, "token": secret, "note": "shown once: store it now; only its hash is kept"}


@router.delete("/api/admin/tokens/{token_id}")
def revoke_token(token_id: int, who: Principal = Depends(ADMIN), session: Session = Depends(db_session)) -> dict:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise HTTPException(404, f"no token {token_id}")
    token.revoked = True
    session.commit()
    return _token_view(token)


@router.get("/api/admin/settings")
def get_settings(who: Principal = Depends(ADMIN), session: Session = Depends(db_session)) -> dict:
    return admin_settings.load_settings(session).__dict__


@router.put("/api/admin/settings")
def put_settings(
    changes: dict[str, Any], who: Principal = Depends(ADMIN), session: Session = Depends(db_session)
) -> dict:
    settings = admin_settings.update_settings(session, changes, who.account.id)
    session.commit()
    return settings.__dict__


@router.get("/api/admin/templates")
def list_templates(who: Principal = Depends(ADMIN), session: Session = Depends(db_session)) -> list[dict]:
    return [templates_admin.view(session, task).__dict__ for task in TASK_ORDER]


@router.get("/api/admin/templates/{task}")
def get_template(task: str, who: Principal = Depends(ADMIN), session: Session = Depends(db_session)) -> dict:
    return templates_admin.view(session, task).__dict__


@router.put("/api/admin/templates/{task}")
def put_template(
    task: str,
    files: dict[str, str],
    request: Request,
    who: Principal = Depends(ADMIN),
    session: Session = Depends(db_session),
) -> dict:
    return templates_admin.save_override(session, task, files, who.account.id, layout_of(request).root).__dict__


@router.delete("/api/admin/templates/{task}")
def reset_template(
    task: str, request: Request, who: Principal = Depends(ADMIN), session: Session = Depends(db_session)
) -> dict:
    templates_admin.reset_override(session, task, layout_of(request).root)
    return templates_admin.view(session, task).__dict__


# --------------------------------------------------------------------------- batches


@router.get("/api/batches")
def list_batches(request: Request, who: Principal = Depends(ADMIN), session: Session = Depends(db_session)) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for batch, status, count in session.execute(
        select(WorkItem.batch, WorkItem.status, func.count()).group_by(WorkItem.batch, WorkItem.status)
    ):
        counts.setdefault(batch, {})[status] = count
    imported = [
        {
            "batch": row.batch,
            "imported_at": row.imported_at.isoformat(timespec="seconds"),
            "double_rate": row.double_rate,
            "items": counts.get(row.batch, {}),
        }
        for row in session.scalars(select(BatchImport).order_by(BatchImport.imported_at.desc()))
    ]
    folder = layout_of(request).root / "manifests" / "ai_annotations"
    ready = sorted(path.stem for path in folder.glob("*.parquet")) if folder.is_dir() else []
    known = {row["batch"] for row in imported}
    return {"imported": imported, "not_imported": [name for name in ready if name not in known]}


@router.post("/api/batches/{batch}/import")
def import_batch_endpoint(
    batch: str, request: Request, who: Principal = Depends(ADMIN_OR_SERVICE), session: Session = Depends(db_session)
) -> dict:
    summary = import_batch(session, layout_of(request), batch, admin_settings.load_settings(session), who.name)
    session.commit()
    return summary.__dict__


def _check_task(task: str) -> None:
    if task not in EDITABLE_TASKS:
        raise HTTPException(422, f"task must be one of {list(EDITABLE_TASKS)}")


@router.get("/api/batches/{batch}/label-studio")
def export_label_studio(
    batch: str, request: Request, task: str = "ocr", who: Principal = Depends(ADMIN_OR_SERVICE)
) -> JSONResponse:
    _check_task(task)
    prefix = request.app.state.settings.ls_image_prefix
    tasks = interop.export_batch_tasks(request.app.state.engine, layout_of(request), batch, task, prefix)
    return JSONResponse(
        tasks, headers={"Content-Disposition": f'attachment; filename="{batch}-{task}-label-studio.json"'}
    )


@router.get("/api/batches/{batch}/labeling-config")
def labeling_config_endpoint(batch: str, task: str = "ocr", who: Principal = Depends(ADMIN_OR_SERVICE)) -> Response:
    _check_task(task)
    return Response(labeling_config(task), media_type="application/xml")


@router.post("/api/batches/{batch}/label-studio", max_body_size=LABEL_STUDIO_BODY_BYTES)
def import_label_studio(
    batch: str,
    request: Request,
    export: list[dict[str, Any]] | dict[str, Any] = Body(...),
    who: Principal = Depends(ADMIN_OR_SERVICE),
    session: Session = Depends(db_session),
) -> dict:
    """A Label Studio JSON export (the project exported as JSON) -> final human rows of ``batch``."""
    return interop.import_export_file(session, layout_of(request), batch, export).__dict__


# --------------------------------------------------------------------------- upload


@upload_router.post("/api/upload", status_code=201)
async def upload(
    request: Request, who: Principal = Depends(ADMIN_OR_SERVICE), session: Session = Depends(db_session)
) -> JSONResponse:
    # The body may take minutes to arrive: the sign-in check's connection goes back to the pool first.
    await run_in_threadpool(session.close)
    settings = request.app.state.settings
    limits = UploadLimits(settings.max_file_bytes, settings.max_request_bytes, settings.max_image_pixels)
    outcome = await receive_upload(
        request.headers.get("content-type", ""),
        request.headers.get("content-length"),
        request.stream(),
        layout_of(request),
        limits,
    )
    body = {
        "batch": outcome.batch,
        "accepted": outcome.accepted,
        "files": [result.as_dict() for result in outcome.files],
    }
    if outcome.batch is None:
        body["detail"] = "no file was accepted, so no batch was created; see each file's reason"
        return JSONResponse(body, status_code=422)
    return JSONResponse(body, status_code=201)
