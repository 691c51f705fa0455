"""The upload API's work: stream a multipart request into a new inbox batch.

Each file part is streamed (never held in memory) into a temp file inside a staging folder
``inbox/.upload-<batch>/`` while its SHA-256 and first bytes are taken; then it is kept or refused:

* ``rejected`` - an unsafe name (:func:`qwen_dataset.ingest.sanitize_name`: traversal, absolute
  path, control characters), more than the per-file limit, empty, content whose magic bytes are
  no supported image, PDF or video (:func:`qwen_dataset.ingest.sniff_media_type`), or an image
  whose header declares more pixels than the ingest takes (``decompression_bomb``);
* ``duplicate`` - the same SHA-256 as an earlier file of the request (its bytes are dropped);
* ``accepted`` - renamed to its sanitized name (``-<sha256[:8]>`` added before the extension when
  the name is taken; names starting with ``.`` or ``_``, so that none can pass for a marker such as
  ``_READY``, get a ``file`` prefix).

When the request is complete the staging folder is renamed to ``inbox/<batch>/`` in one step and
the ``_READY`` marker is written last (:func:`qwen_dataset.store.inbox.mark_ready`), so the pipeline's
sensor never sees half a batch, even if a client stalls for minutes. A request over the
per-request limit, malformed, or cut off leaves nothing behind. Nothing is written outside the inbox.

On an object-store root the staging folder is a local temporary folder; when the request is
complete its files are uploaded to ``inbox/<batch>/`` between an ``_UPLOADING`` marker (first,
deleted last) and ``_READY`` (after the files); an upload that fails is deleted from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote

from python_multipart.multipart import MultipartParser
from upath import UPath

from qwen_dataset.ingest.uploads import (
    HEAD_BYTES,
    UPLOAD_PART_PREFIX,
    UPLOAD_PART_SUFFIX,
    UPLOAD_STAGING_PREFIX,
    IngestLimits,
    Quarantine,
    check_image_header,
    sanitize_name,
    sniff_media_type,
)
from qwen_dataset.records import MediaType
from qwen_dataset.store.inbox import BATCH_NAME, READY_MARKER, UPLOADING_MARKER, mark_ready
from qwen_dataset.store.layout import StorageLayout, upload_folder
from qwen_dataset.store.paths import FILE_MODE, atomic_write_bytes, is_remote

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks  # a typing-only name there

FIELD = "files"
MAX_PARTS = 10_000
STAGING_PREFIX = UPLOAD_STAGING_PREFIX  # ingest skips these folders and the part files
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
# Browsers (HTML5) percent-escape '"', CR and LF in file names; httpx escapes every control character.
_CLIENT_ESCAPES = re.compile(r"%(0[0-9A-Fa-f]|1[0-9A-Fa-f]|22|7[Ff])")


class UploadRefused(Exception):
    """The whole request is refused; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_request_bytes: int
    max_image_pixels: int = IngestLimits.max_image_pixels  # what the ingest would quarantine


@dataclasses.dataclass
class FileResult:
    name: str  # the name as sent (control characters escaped by JSON)
    status: str  # accepted | duplicate | rejected
    reason: str = ""
    stored_as: str = ""
    sha256: str = ""
    bytes: int = 0
    media_type: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value not in ("", None)} | {
            "bytes": self.bytes
        }


@dataclasses.dataclass(frozen=True)
class UploadOutcome:
    batch: str | None  # None when no file was accepted (and no batch was created)
    files: list[FileResult]

    @property
    def accepted(self) -> int:
        return sum(result.status == "accepted" for result in self.files)


def new_batch_id(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    batch = f"upload-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
    assert BATCH_NAME.match(batch)
    return batch


def boundary_of(content_type: str) -> bytes:
    if not content_type.lower().startswith("multipart/form-data"):
        raise UploadRefused(415, "send the files as multipart/form-data in the field 'files'")
    match = _BOUNDARY.search(content_type)
    if not match:
        raise UploadRefused(400, "the multipart Content-Type has no boundary")
    return match.group(1).encode("latin-1")


def parse_disposition(value: bytes) -> tuple[str | None, str | None, str | None]:
    """``(field name, file name, problem)`` of a Content-Disposition header.

    Handles quoted values (``\\"`` and ``\\\\`` escapes), the percent escapes clients use for ``"`` and
    control characters, and RFC 5987 ``filename*=utf-8''...``. The file name is kept raw (directories
    included) so that :func:`sanitize_name` can judge it.
    """
    params: dict[str, str] = {}
    text = value.decode("latin-1")
    for key, raw in re.findall(r';\s*([A-Za-z0-9*_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', text):
        # Browsers and requests send backslashes raw and percent-escape quotes; only \" and \\ are escapes.
        text_value = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if raw.startswith('"') else raw.strip()
        params[key.lower()] = text_value
    name = _utf8(params.get("name"))
    if "filename*" in params:
        charset, _, encoded = params["filename*"].partition("''")
        if charset.lower() != "utf-8":
            return name, None, f"unsafe_name: file name encoded as {charset!r}; send UTF-8"
        try:
            return name, unquote(encoded, encoding="utf-8", errors="strict"), None
        except UnicodeDecodeError:
            return name, None, "unsafe_name: the file name is not valid UTF-8; rename the file and upload it again"
    if "filename" not in params:
        return name, None, None
    filename = _utf8(params["filename"])
    if filename is None:
        return name, None, "unsafe_name: the file name is not valid UTF-8; rename the file and upload it again"
    return name, _CLIENT_ESCAPES.sub(lambda match: chr(int(match.group(1), 16)), filename), None


def _utf8(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


def storable_name(safe_name: str) -> str:
    # Markers and upload artefacts ("_READY", ".part-*.tmp") start with "_" or ".": a prefix means an
    # uploaded file can never be mistaken for one.
    return f"file{safe_name}" if safe_name.startswith((".", "_")) else safe_name


class _Receiver:
    """Multipart callbacks writing file parts into the staging folder."""

    def __init__(self, folder: Path, limits: UploadLimits) -> None:
        self.folder, self.limits = folder, limits
        self.results: list[FileResult] = []
        self.first_name_by_sha: dict[str, str] = {}
        self.taken: set[str] = set()
        self.parts = 0
        self._reset()

    def _reset(self) -> None:
        self.header_field = b""
        self.header_value = b""
        self.disposition = b""
        self.result: FileResult | None = None
        self.handle: IO[bytes] | None = None
        self.temp_path: Path | None = None
        self.digest = hashlib.sha256()
        self.head = b""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: setattr(
                self, "header_field", self.header_field + data[start:end]
            ),
            "on_header_value": lambda data, start, end: setattr(
                self, "header_value", self.header_value + data[start:end]
            ),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._reset()
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise UploadRefused(413, f"at most {MAX_PARTS} files per request; split the upload")

    def on_header_end(self) -> None:
        if self.header_field.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_field, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        field, filename, problem = parse_disposition(self.disposition)
        if field != FIELD:
            return  # other form fields are ignored
        if filename is None and problem is None:
            return
        self.result = FileResult(name=filename or "", status="rejected")
        self.results.append(self.result)
        if filename is not None and problem is None:
            _, problem = sanitize_name(filename)
        if problem:
            self.result.reason = problem
            return
        fd, temp_name = tempfile.mkstemp(prefix=UPLOAD_PART_PREFIX, suffix=UPLOAD_PART_SUFFIX, dir=self.folder)
        os.fchmod(fd, FILE_MODE)
        self.handle, self.temp_path = os.fdopen(fd, "wb"), Path(temp_name)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.result is None:
            return
        self.result.bytes += end - start
        if self.handle is None:
            return
        if self.result.bytes > self.limits.max_file_bytes:
            self._drop_temp()
            self.result.reason = (
                f"too_large: more than {self.limits.max_file_bytes} bytes (the per-file limit); "
                "split or compress the file"
            )
            return
        chunk = data[start:end]
        self.handle.write(chunk)
        self.digest.update(chunk)
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]

    def _drop_temp(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self.temp_path is not None:
            self.temp_path.unlink(missing_ok=True)
            self.temp_path = None

    def on_part_end(self) -> None:
        result = self.result
        if result is None or self.handle is None:
            self._drop_temp()
            return
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        self.handle = None
        media_type = sniff_media_type(self.head)
        sha256 = self.digest.hexdigest()
        result.sha256 = sha256
        if result.bytes == 0:
            result.reason = "empty: the file has 0 bytes; upload it again"
        elif media_type == MediaType.UNKNOWN:
            result.reason = (
                "unknown_type: its content is not a PNG/JPEG/GIF/BMP/TIFF/WebP image, a PDF, or an "
                "MP4/MOV/MKV/WebM video (the type is read from the bytes, not the name)"
            )
        elif media_type == MediaType.IMAGE and (problem := self._image_problem()):
            result.reason = problem
        elif sha256 in self.first_name_by_sha:
            result.status = "duplicate"
            result.reason = f"duplicate: same content as {self.first_name_by_sha[sha256]} in this upload"
        else:
            stored = self._unique_name(storable_name(sanitize_name(result.name)[0]), sha256)
            assert self.temp_path is not None, "opened together with the handle"
            os.rename(self.temp_path, self.folder / stored)
            self.temp_path = None
            self.first_name_by_sha[sha256] = stored
            result.status, result.stored_as, result.media_type = "accepted", stored, media_type.value
        self._drop_temp()

    def _image_problem(self) -> str:
        """Why the received image would be quarantined from its header alone (e.g. too many pixels)."""
        assert self.temp_path is not None, "called while the part's file is still there"
        try:
            check_image_header(self.temp_path, IngestLimits(max_image_pixels=self.limits.max_image_pixels))
        except Quarantine as refused:
            return refused.reason
        return ""

    def _unique_name(self, name: str, sha256: str) -> str:
        if name in self.taken:
            stem, extension = os.path.splitext(name)
            name = f"{stem}-{sha256[:8]}{extension}"
        self.taken.add(name)
        return name

    def abort(self) -> None:
        self._drop_temp()


async def receive_upload(
    content_type: str,
    content_length: str | None,
    stream: AsyncIterator[bytes],
    layout: StorageLayout,
    limits: UploadLimits,
) -> UploadOutcome:
    """Stream a multipart body into a new inbox batch (see the module docstring)."""
    boundary = boundary_of(content_type)
    if content_length and content_length.isdigit() and int(content_length) > limits.max_request_bytes:
        raise UploadRefused(
            413,
            f"the request is larger than {limits.max_request_bytes} bytes (the per-request limit); "
            "upload fewer files at a time",
        )
    batch = new_batch_id()
    staging = _staging_folder(layout, batch)
    receiver = _Receiver(staging, limits)
    try:
        parser = MultipartParser(boundary, receiver.callbacks())
        received = 0
        async for chunk in stream:
            received += len(chunk)
            if received > limits.max_request_bytes:
                raise UploadRefused(
                    413,
                    f"the request is larger than {limits.max_request_bytes} bytes (the per-request "
                    "limit); upload fewer files at a time",
                )
            parser.write(chunk)
        parser.finalize()
    except UploadRefused:
        receiver.abort()
        _discard(layout, staging)
        raise
    except Exception as error:
        receiver.abort()
        _discard(layout, staging)
        if type(error).__name__ in ("MultipartParseError", "ClientDisconnect"):
            raise UploadRefused(
                400, f"the multipart body is malformed or was cut off ({error}); send it again"
            ) from error
        raise
    if not receiver.results:
        _discard(layout, staging)
        raise UploadRefused(400, "no files: send them as multipart/form-data parts named 'files' with a file name")
    outcome = UploadOutcome(None, receiver.results)
    if outcome.accepted == 0:
        _discard(layout, staging)
        return outcome
    final = layout.batch_inbox(batch)
    if is_remote(final):
        try:
            # Uploading is blocking network I/O: off the event loop, so other requests go on.
            await asyncio.to_thread(_publish_to_store, staging, final)
        finally:
            _discard(layout, staging)
    else:
        os.rename(staging, final)
        mark_ready(final)
    return UploadOutcome(batch, receiver.results)


def _publish_to_store(staging: Path, final: UPath) -> None:
    """Upload a received batch: ``_UPLOADING`` first, the files, ``_READY``, then ``_UPLOADING`` removed.

    An object store has no atomic folder rename, so the marker keeps the inbox sensor from taking
    a batch whose files are still arriving; an upload that fails is removed again.
    """
    marker = final / UPLOADING_MARKER
    atomic_write_bytes(marker, b"")
    try:
        mark_ready(staging)
        upload_folder(staging, final, last=[READY_MARKER])
    except BaseException:
        with contextlib.suppress(Exception):  # the upload's own error is the one to report
            _remove_uploaded(final, marker)
        raise
    with contextlib.suppress(Exception):  # _READY is there: a marker left behind changes nothing
        marker.fs.rm_file(marker.path)


def _remove_uploaded(final: UPath, marker: UPath) -> None:
    """Delete a failed upload, the marker last, so that what a partial delete leaves still waits."""
    for name in final.fs.find(final.path):
        if name.rstrip("/") != marker.path.rstrip("/"):
            final.fs.rm_file(name)
    final.fs.rm(final.path, recursive=True)  # the marker, and the folder on stores that keep folders


def _staging_folder(layout: StorageLayout, batch: str) -> Path:
    """Where a request's files are received: inside the inbox on disk, a local temp folder otherwise."""
    inbox = layout.inbox
    if is_remote(inbox):
        staging = Path(tempfile.mkdtemp(prefix="qwen-upload-")) / batch
    else:
        inbox.mkdir(parents=True, exist_ok=True)
        staging = inbox / f"{STAGING_PREFIX}{batch}"
    staging.mkdir()
    return staging


def _discard(layout: StorageLayout, staging: Path) -> None:
    shutil.rmtree(staging.parent if layout.remote else staging, ignore_errors=True)
