"""Server-rendered pages (Jinja2); the editor pages load the Label Studio editor and static/editor.js."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from qwen_dataset.db.models import ItemStatus, Role, WorkItem
from qwen_dataset.workbench import queue, workflow
from qwen_dataset.workbench.api import ADMIN, ANNOTATOR, ANY_USER, REVIEWER
from qwen_dataset.workbench.auth import Principal, db_session
from qwen_dataset.workbench.editor import EDITABLE_TASKS

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
router = APIRouter(max_body_size=0)  # pages are read with GET: no body
HOME: dict[str, str] = {Role.ANNOTATOR: "/annotate", Role.REVIEWER: "/review", Role.ADMIN: "/admin"}
# Browsers read a backslash as "/" and drop tabs and newlines from URLs, so "/<backslash>evil.example"
# or "/<tab>/evil.example" would leave the site. static/app.js (safeNext) applies the same rule.
_UNSAFE_IN_NEXT = re.compile(r"[\\\x00-\x1f\x7f-\x9f]")


def safe_next(next: str) -> str:
    """``next`` when it is a path on this site, else ``"/"``: a crafted link must not send a fresh sign-in elsewhere."""
    parts = urlsplit(next)
    local = (
        not parts.scheme
        and not parts.netloc
        and next.startswith("/")
        and not next.startswith("//")
        and not _UNSAFE_IN_NEXT.search(next)
    )
    return next if local else "/"


def wants_html(request: Request) -> bool:
    path = request.url.path
    return (
        request.method == "GET"
        and not path.startswith(("/api/", "/media/", "/static/"))
        and "text/html" in request.headers.get("accept", "")
    )


def render(request: Request, name: str, who: Principal | None, status_code: int = 200, **context) -> HTMLResponse:
    settings = request.app.state.settings
    ready = {
        "editor_ready": (settings.editor_dir / "js" / "main.js").is_file(),
        "timeline_ready": (settings.timeline_dir / "wavesurfer.min.js").is_file(),
    }
    return templates.TemplateResponse(request, name, {"who": who, **ready, **context}, status_code=status_code)


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    if status_code == 401:
        return render(request, "login.html", None, status_code=401, next=safe_next(request.url.path))
    return render(request, "error.html", None, status_code=status_code, status=status_code, message=message)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, next=safe_next(next))


@router.get("/")
def home(who: Principal = Depends(ANY_USER)) -> RedirectResponse:
    return RedirectResponse(HOME.get(who.role, "/login"), status_code=303)


@router.get("/annotate", response_class=HTMLResponse)
def annotate_list(
    request: Request, who: Principal = Depends(ANNOTATOR), session: Session = Depends(db_session)
) -> HTMLResponse:
    rows = queue.queue_rows(session, who.account)
    following = queue.next_draft(rows, None)
    return render(
        request,
        "annotate_list.html",
        who,
        rows=rows,
        mine=queue.progress_of(rows),
        batches=queue.batch_progress(session, rows),
        next_row=following,
    )


@router.get("/annotate/{annotation_id}", response_class=HTMLResponse)
def annotate_page(
    annotation_id: str, request: Request, who: Principal = Depends(ANNOTATOR), session: Session = Depends(db_session)
) -> HTMLResponse:
    annotation = workflow.own_annotation(session, annotation_id, who.account)
    return render(
        request,
        "editor.html",
        who,
        mode="annotate",
        target=annotation.annotation_id,
        task=annotation.task,
        title=f"{annotation.task} · {annotation.frame_id}",
    )


@router.get("/review", response_class=HTMLResponse)
def review_page(
    request: Request, who: Principal = Depends(REVIEWER), session: Session = Depends(db_session)
) -> HTMLResponse:
    queue = session.scalars(
        select(WorkItem).where(WorkItem.status == ItemStatus.ARBITRATION).order_by(WorkItem.batch, WorkItem.frame_id)
    ).all()
    return render(request, "review.html", who, queue=queue)


@router.get("/review/items/{item_id}", response_class=HTMLResponse)
def review_item_page(
    item_id: str, request: Request, who: Principal = Depends(REVIEWER), session: Session = Depends(db_session)
) -> HTMLResponse:
    item = session.get(WorkItem, item_id)
    if item is None:
        return error_page(request, 404, f"no work item {item_id}")
    mode = "arbitrate" if item.status == ItemStatus.ARBITRATION else "inspect"
    title = f"{item.task} · {item.frame_id}"
    return render(request, "editor.html", who, mode=mode, target=item.item_id, task=item.task, title=title)


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, who: Principal = Depends(ADMIN)) -> HTMLResponse:
    return render(request, "admin.html", who, tasks=EDITABLE_TASKS)
