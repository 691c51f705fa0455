"""The review workbench's FastAPI application.

``create_app(settings)`` builds it; ``python -m qwen_dataset.workbench serve`` (``make workbench``)
runs it under uvicorn with settings from the environment (:mod:`.config`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen_dataset.db.engine import make_engine
from qwen_dataset.prelabel.templates import TemplateError
from qwen_dataset.workbench import api, pages
from qwen_dataset.workbench.admin_settings import SettingError
from qwen_dataset.workbench.assignment import ImportProblem
from qwen_dataset.workbench.config import WorkbenchSettings
from qwen_dataset.workbench.editor import EditorError
from qwen_dataset.workbench.limits import AdmissionGate, AnonymousBodyGuard
from qwen_dataset.workbench.security import SessionSigner
from qwen_dataset.workbench.upload import UploadRefused
from qwen_dataset.workbench.workflow import WorkflowError

STATIC_DIR = Path(__file__).with_name("static")
# Only this site's own scripts run (the editor build is served from here too); styles may be
# inline because the Label Studio editor sets them on its elements; a generated page previewed in
# the HTML editor is a sandboxed srcdoc frame, which inherits the policy, so it loads nothing
# from elsewhere either. blob: media is the timeline's own video buffer.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
# Browsers only honour it over HTTPS, which Secure cookies mean.
_HSTS = "max-age=31536000"


class SecurityHeaders:
    """Pure ASGI middleware: the security headers on every answer (each unless the route set its
    own), ``Strict-Transport-Security`` with Secure cookies, ``Cache-Control: no-store`` on the API.

    Starlette's ``@app.middleware("http")`` would do the same through a task group and a memory
    stream per request, a noticeable share of a save's CPU; this only edits the response start.
    """

    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app = app
        extra = {"Strict-Transport-Security": _HSTS} if hsts else {}
        self._headers = [
            (name.lower().encode(), value.encode()) for name, value in {**_SECURITY_HEADERS, **extra}.items()
        ]
        self._api_headers = [*self._headers, (b"cache-control", b"no-store")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = self._api_headers if scope["path"].startswith("/api/") else self._headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in wanted if header[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: WorkbenchSettings, engine: Engine | None = None) -> FastAPI:
    """The workbench app; ``engine`` defaults to :func:`make_engine` of ``settings.database_url``."""
    # The schema is served by api.openapi_schema, behind sign-in like every other route.
    app = FastAPI(title="qwen-dataset review workbench", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.engine = engine if engine is not None else workbench_engine(settings)
    app.state.signer = SessionSigner(settings.secret, settings.session_seconds)
    app.include_router(api.router)
    app.include_router(api.upload_router)
    app.include_router(pages.router)
    app.mount("/static/wb", StaticFiles(directory=STATIC_DIR), name="static")
    # The Label Studio editor's build, installed by `npm ci --ignore-scripts` (not committed).
    app.mount("/static/editor", StaticFiles(directory=settings.editor_dir, check_dir=False), name="editor")
    # wavesurfer.js, the video-event editor's timeline (npm, not committed either).
    app.mount("/static/wavesurfer", StaticFiles(directory=settings.timeline_dir, check_dir=False), name="timeline")
    _install_handlers(app)

    app.add_middleware(SecurityHeaders, hsts=settings.secure_cookies)
    # Outermost: a request waiting for its turn has done nothing yet, a refused one never waits.
    app.add_middleware(AdmissionGate, limit=settings.threads, exempt=UNGATED_PATHS)
    app.add_middleware(AnonymousBodyGuard, open_paths=("/api/login",))
    return app


def app_from_environment() -> FastAPI:
    """The app with settings from the environment: what each server process builds when
    ``serve --workers N`` runs several (uvicorn imports it by name in every worker)."""
    return create_app(WorkbenchSettings.from_env())


#: Paths the admission gate lets through freely (see :class:`.limits.AdmissionGate`).
UNGATED_PATHS = ("/static/", "/api/upload")


def workbench_engine(settings: WorkbenchSettings) -> Engine:
    """The database engine sized to the server: a connection for every request served at once,
    and as many again for requests that open a second session (see :mod:`.limits`)."""
    return make_engine(settings.database_url, pool_size=settings.threads)


def _error(status: int, message: str, **details) -> JSONResponse:
    return JSONResponse({"detail": message, **details}, status_code=status)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(WorkflowError)
    async def workflow_error(request: Request, error: WorkflowError):
        if pages.wants_html(request):
            return pages.error_page(request, error.status, str(error))
        return _error(error.status, str(error), **error.details)

    @app.exception_handler(EditorError)
    async def editor_error(_request: Request, error: EditorError) -> JSONResponse:
        return _error(422, f"not saved: {error}")

    @app.exception_handler(TemplateError)
    async def template_error(_request: Request, error: TemplateError) -> JSONResponse:
        return _error(422, str(error))

    @app.exception_handler(SettingError)
    async def setting_error(_request: Request, error: SettingError) -> JSONResponse:
        return _error(422, str(error))

    @app.exception_handler(ImportProblem)
    async def import_problem(_request: Request, error: ImportProblem) -> JSONResponse:
        return _error(409, str(error))

    @app.exception_handler(UploadRefused)
    async def upload_refused(_request: Request, error: UploadRefused) -> JSONResponse:
        return _error(error.status, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()]
        return _error(422, "invalid request: " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        # Browsers get pages (the sign-in form on 401), programs get JSON.
        if pages.wants_html(request):
            return pages.error_page(request, error.status_code, str(error.detail))
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
