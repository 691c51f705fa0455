"""The ``raw_uploads`` stage: turn an inbox folder into one :class:`UploadRecord` per file.

Every file of a batch is hashed (sha256, streamed), stored in the content-addressed
:class:`~qwen_dataset.store.blobs.BlobStore`, typed by its magic bytes (never its extension) and
checked with the decoder the later stages will use (Pillow, PDFium, FFmpeg through PyAV). Each
file ends up exactly once as ``ok``, ``duplicate`` or ``quarantined``; a quarantined file carries
``reason = "<code>: <what was wrong and what to do>"`` and its bytes stay in the blob store so a
person can inspect them. A bad file never stops the batch.

Reason codes (the part before the colon):

==================  ====================================================================
``empty``           zero bytes
``unknown_type``    not a PNG/JPEG/GIF/BMP/TIFF/WebP image, PDF, or MP4/MOV/M4V/MKV/WebM
``too_large``       more than :attr:`IngestLimits.max_bytes`
``unsafe_name``     control characters, ``..`` traversal or an absolute path in the name
``corrupt_image``   Pillow cannot verify or fully decode it (e.g. truncated)
``decompression_bomb``  an image or a PDF page (at 300 DPI) over ``max_image_pixels``
``corrupt_pdf``     PDFium cannot open it, or it has no pages
``encrypted_pdf``   password-protected
``too_many_pages``  more than ``max_pdf_pages``
``corrupt_video``   FFmpeg cannot open it (e.g. the ``moov`` index is missing) or decode a frame
``no_video_stream`` audio only, or no streams a video decoder could use
``unsupported_codec``  not h264/hevc/vp9/av1/mpeg4
``too_long``        longer than ``max_video_seconds``
``unreadable``      the file could not be read (permissions, I/O error)
``not_regular_file``  a symbolic link, pipe or device: never followed or opened
==================  ====================================================================
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
from PIL import Image

from qwen_dataset.records import MediaType, UploadRecord, UploadStatus
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.inbox import READY_MARKER, UPLOADING_MARKER
from qwen_dataset.store.paths import CHUNK

REASON_CODES: tuple[str, ...] = (
    "empty",
    "unknown_type",
    "too_large",
    "unsafe_name",
    "corrupt_image",
    "decompression_bomb",
    "corrupt_pdf",
    "encrypted_pdf",
    "too_many_pages",
    "corrupt_video",
    "no_video_stream",
    "unsupported_codec",
    "too_long",
    "unreadable",
    "not_regular_file",
)

HEAD_BYTES = 1024  # the PDF header may sit anywhere in the first KiB
# The workbench upload's temporary artefacts (qwen_dataset.workbench.upload uses these names): a
# staging folder ``.upload-<batch>/`` and part files ``.part-<random>.tmp``. They are not content.
UPLOAD_STAGING_PREFIX = ".upload-"
UPLOAD_PART_PREFIX = ".part-"
UPLOAD_PART_SUFFIX = ".tmp"
PDF_RENDER_DPI = 300
MAX_NAME_BYTES = 200
MAX_EXTENSION_BYTES = 16  # a longer "extension" is part of the name, not a type hint worth keeping
SUPPORTED_VIDEO_CODECS = frozenset({"h264", "hevc", "vp9", "av1", "mpeg4"})
# A healthy stream yields its first picture within a few dozen packets (decoder delay, B-frames);
# the cap keeps a stream that never decodes from being read to its end.
MAX_PACKETS_FOR_FIRST_FRAME = 300

_SEPARATORS = ("/", "\\")
# ISO-BMFF brands of still images (HEIC/HEIF/AVIF): "ftyp" at offset 4, yet not a video.
_STILL_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)
_BMP_INFO_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)


@dataclass(frozen=True)
class IngestLimits:
    """Per-file limits; a file over any of them is quarantined, never partly processed."""

    max_bytes: int = 2 * 1024**3
    max_image_pixels: int = 100_000_000
    max_pdf_pages: int = 2000
    max_video_seconds: float = 4 * 3600


class Quarantine(Exception):
    """Raised by a check: ``code`` is one of :data:`REASON_CODES`, ``detail`` says what to do."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


# --------------------------------------------------------------------------- magic bytes


def video_container(head: bytes) -> tuple[str, str]:
    """``(extension, Content-Type)`` of a video file from its first bytes (MP4, MOV, WebM, MKV);
    ``("", "")`` for anything else."""
    if head[4:8] == b"ftyp":  # ISO base media: MP4, M4V, MOV
        return (".mov", "video/quicktime") if head[8:12] == b"qt  " else (".mp4", "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM is Matroska with the "webm" doctype
        return (".webm", "video/webm") if b"webm" in head[:HEAD_BYTES] else (".mkv", "video/x-matroska")
    return "", ""


def video_extension(head: bytes) -> str:
    """The file extension of a video from its first bytes (``.mp4`` when the container is unknown)."""
    return video_container(head)[0] or ".mp4"


def sniff_media_type(head: bytes) -> MediaType:
    """Media type from the first bytes of a file (pass at least :data:`HEAD_BYTES`).

    Only the content decides, never the name: a PNG called ``x.pdf`` is an image.

    >>> sniff_media_type(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
    <MediaType.IMAGE: 'image'>
    >>> sniff_media_type(b"hello")
    <MediaType.UNKNOWN: 'unknown'>
    """
    return _sniff(head)[0]


def _sniff(head: bytes) -> tuple[MediaType, str]:
    """``(media type, format label for messages)``; the label is empty for unknown content."""
    image_format = _sniff_image_format(head)
    if image_format:
        return MediaType.IMAGE, image_format
    if head[4:8] == b"ftyp":
        if head[8:12] in _STILL_IMAGE_BRANDS:
            return MediaType.UNKNOWN, ""
        return MediaType.VIDEO, "MP4/MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return MediaType.VIDEO, "Matroska/WebM"
    if b"%PDF-" in head[:HEAD_BYTES]:
        return MediaType.PDF, "PDF"
    return MediaType.UNKNOWN, ""


def _sniff_image_format(head: bytes) -> str:
    for signature, label in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return label
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    # "BM" alone is too weak (plain text can start with it); the DIB header size confirms a BMP.
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_INFO_HEADER_SIZES:
        return "BMP"
    return ""


# --------------------------------------------------------------------------- names


def sanitize_name(name: str) -> tuple[str, str | None]:
    """A name that is safe to show and to write anywhere, and the problem with the original.

    Directories are stripped (``photos/cat.png`` -> ``cat.png``, no problem). The problem is a
    ready-to-use reason starting with ``unsafe_name:`` when the original has control or
    invisible formatting characters (Unicode Cc/Cf), a ``..`` segment (with ``/`` or ``\\``), is
    absolute, or is empty once cleaned. The safe name is NFC-normalised, has those characters
    removed and any remaining separator (``:``) replaced by ``_``, and is at most
    :data:`MAX_NAME_BYTES` bytes of UTF-8 with the extension kept.

    >>> sanitize_name("photos/cat.png")
    ('cat.png', None)
    >>> sanitize_name("..\\\\..\\\\evil.png")[0]
    'evil.png'
    """
    normalized = unicodedata.normalize("NFC", name)
    problem = _name_problem(normalized)
    visible = "".join(char for char in normalized if not _is_control(char))
    segments = [segment for segment in _split_path(visible) if segment not in ("", ".", "..")]
    base = segments[-1].replace(":", "_").strip() if segments else ""
    if not base:
        return "unnamed", problem or _unsafe("is empty once directories and control characters are removed")
    return _truncate_keeping_extension(base, MAX_NAME_BYTES), problem


def _name_problem(name: str) -> str | None:
    controls = sorted({f"U+{ord(char):04X}" for char in name if _is_control(char)})
    if controls:
        return _unsafe(f"contains control or invisible characters ({', '.join(controls)})")
    if ".." in _split_path(name):
        return _unsafe("contains a '..' segment that points outside its folder")
    if _is_absolute(name):
        return _unsafe("is an absolute path")
    return None


def _unsafe(what: str) -> str:
    return f"unsafe_name: the file name {what}; rename the file and upload it again"


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf")


def _split_path(name: str) -> list[str]:
    for separator in _SEPARATORS[1:]:
        name = name.replace(separator, _SEPARATORS[0])
    return name.split(_SEPARATORS[0])


def _is_absolute(name: str) -> bool:
    has_drive = len(name) >= 2 and name[1] == ":" and name[0].isascii() and name[0].isalpha()
    return name.startswith(_SEPARATORS) or has_drive


def _truncate_keeping_extension(name: str, max_bytes: int) -> str:
    if len(name.encode("utf-8")) <= max_bytes:
        return name
    stem, extension = os.path.splitext(name)
    if len(extension.encode("utf-8")) > MAX_EXTENSION_BYTES:
        stem, extension = name, ""
    budget = max_bytes - len(extension.encode("utf-8"))
    # Cutting the encoded bytes and dropping a partial last character keeps the UTF-8 valid.
    stem = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return stem + extension


# --------------------------------------------------------------------------- the batch


def iter_batch_files(inbox_dir: Path) -> Iterator[Path]:
    """Every file of a batch folder, recursively, sorted by relative path.

    Only real markers are skipped: the ``_READY`` marker and the workbench upload's temporary
    artefacts (``.upload-*`` staging folders, ``.part-*.tmp`` files). Every other name, hidden or
    starting with ``_`` (cameras write ``_DSC0001.JPG``), is yielded, so each file appears in the
    manifest exactly once. Symbolic links and other non-regular entries are yielded too, never
    followed, so :func:`ingest_batch` can report them instead of silently dropping them.
    """
    inbox_dir = Path(inbox_dir)
    found: list[Path] = []
    for directory, subdirectories, names in os.walk(inbox_dir, followlinks=False):
        subdirectories[:] = [name for name in subdirectories if not _is_upload_staging(Path(directory, name))]
        # os.walk lists a symlink to a directory among the subdirectories without entering it.
        linked = [name for name in subdirectories if os.path.islink(os.path.join(directory, name))]
        found.extend(Path(directory, name) for name in names + linked if not _is_marker(name))
    yield from sorted(found, key=lambda path: path.relative_to(inbox_dir).as_posix())


def _is_marker(name: str) -> bool:
    return name in (READY_MARKER, UPLOADING_MARKER) or (
        name.startswith(UPLOAD_PART_PREFIX) and name.endswith(UPLOAD_PART_SUFFIX)
    )


def _is_upload_staging(path: Path) -> bool:
    # A symlink named like a staging folder is still reported as a non-regular entry, never skipped.
    return path.name.startswith(UPLOAD_STAGING_PREFIX) and not path.is_symlink()


def ingest_batch(
    inbox_dir: Path,
    batch: str,
    blobs: BlobStore,
    limits: IngestLimits = IngestLimits(),
) -> list[UploadRecord]:
    """Hash, store, type and check every file of ``inbox_dir``; one record per file, sorted.

    - ``ok``: stored and decodable by the later stages.
    - ``duplicate``: the same content as an earlier file *of this batch* (sorted order); its
      ``blob_uri`` is the first one's (the blob is stored once).
    - ``quarantined``: ``reason`` says why (see the module docstring); the bytes are still stored,
      except for empty files and non-regular entries (``blob_uri`` empty).

    Content already ingested in an *earlier* batch is ``ok`` again here: a batch is a unit of
    work that must stand on its own when it is rerun or exported; the blob store keeps a single
    copy anyway. A file with an unsafe name does not claim its content, so a correctly named
    copy later in the batch is checked normally.

    Files are streamed in :data:`~qwen_dataset.store.paths.CHUNK` pieces, never read whole. Problems
    with a file never stop the batch; a failing blob store (disk full, permissions) does,
    because that is not the file's fault and quarantining the whole batch would hide it.
    """
    inbox_dir = Path(inbox_dir)
    if not inbox_dir.is_dir():
        raise FileNotFoundError(
            f"inbox folder {inbox_dir} for batch {batch!r} does not exist; upload the batch there first"
        )
    first_name_by_content: dict[str, str] = {}
    return [_ingest_file(path, batch, blobs, limits, first_name_by_content) for path in iter_batch_files(inbox_dir)]


def summarize(records: Sequence[UploadRecord]) -> dict:
    """Counts for asset metadata: by status, by media type, by reason code, and what was quarantined.

    Every status and media type is present (zero when absent) so plots over time stay aligned.
    """
    by_status = {status.value: 0 for status in UploadStatus} | Counter(r.status for r in records)
    by_media_type = {media.value: 0 for media in MediaType} | Counter(r.media_type for r in records)
    quarantined = [(r.original_name, r.reason) for r in records if r.status == UploadStatus.QUARANTINED]
    return {
        "files": len(records),
        "bytes": sum(r.bytes for r in records),
        "by_status": dict(by_status),
        "by_media_type": dict(by_media_type),
        "by_reason_code": dict(Counter(reason.split(":", 1)[0] for _, reason in quarantined)),
        "quarantined": quarantined,
    }


@dataclass(frozen=True)
class _Digest:
    sha256: str
    size: int
    head: bytes


def _ingest_file(
    path: Path,
    batch: str,
    blobs: BlobStore,
    limits: IngestLimits,
    first_name_by_content: dict[str, str],
) -> UploadRecord:
    safe_name, name_problem = sanitize_name(path.name)

    def record(
        status: UploadStatus,
        reason: str = "",
        *,
        digest: _Digest | None = None,
        media_type: MediaType = MediaType.UNKNOWN,
        blob_uri: str = "",
    ) -> UploadRecord:
        return UploadRecord(
            upload_id=digest.sha256 if digest else "",
            batch=batch,
            original_name=safe_name,
            media_type=media_type.value,
            bytes=digest.size if digest else 0,
            status=status.value,
            reason=reason,
            blob_uri=blob_uri,
        )

    quarantined = UploadStatus.QUARANTINED
    kind = _non_regular_kind(path)
    if kind:
        return record(
            quarantined,
            f"not_regular_file: it is a {kind}, which is never followed or opened; "
            "copy the real file into the batch folder instead",
        )
    try:
        digest = _digest_file(path)
    except OSError as exc:
        return record(
            quarantined,
            f"unreadable: the file could not be read ({exc.strerror or exc}); "
            "check its permissions and upload it again",
        )
    media_type, label = _sniff(digest.head)
    if digest.size == 0:
        return record(
            quarantined, "empty: the file has 0 bytes (did the upload finish?); upload it again", digest=digest
        )
    _, blob_uri = blobs.put_file(path, digest.sha256)
    # From here on every record names the stored blob.
    stored = functools.partial(record, digest=digest, media_type=media_type, blob_uri=blob_uri)
    if name_problem:
        return stored(quarantined, name_problem)
    first_name = first_name_by_content.get(digest.sha256)
    if first_name is not None:
        return stored(UploadStatus.DUPLICATE, f"duplicate: same content as {first_name}")
    first_name_by_content[digest.sha256] = safe_name
    try:
        check_content(blobs.local_path(blob_uri), media_type, digest.size, limits, label)
    except Quarantine as verdict:
        return stored(quarantined, verdict.reason)
    return stored(UploadStatus.OK)


def _non_regular_kind(path: Path) -> str:
    """``""`` for a regular file; else what it is (a FIFO would block a plain ``open``)."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return ""  # let the read report it
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device or other special file"


def _digest_file(path: Path) -> _Digest:
    digest = hashlib.sha256()
    size = 0
    head = b""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            if size == 0:
                head = chunk[:HEAD_BYTES]
            digest.update(chunk)
            size += len(chunk)
    return _Digest(digest.hexdigest(), size, head)


# --------------------------------------------------------------------------- content checks


def check_content(path: Path, media_type: MediaType, size: int, limits: IngestLimits, label: str = "") -> None:
    """Raise :class:`Quarantine` unless the file is within limits and decodes as its media type."""
    if size > limits.max_bytes:
        raise Quarantine(
            "too_large",
            f"the file has {size:,} bytes, over the limit of {limits.max_bytes:,}; "
            "split or compress it, or raise max_bytes",
        )
    checks: dict[MediaType, tuple[Callable[[Path, IngestLimits, str], None], str]] = {
        MediaType.IMAGE: (check_image, "corrupt_image"),
        MediaType.PDF: (check_pdf, "corrupt_pdf"),
        MediaType.VIDEO: (check_video, "corrupt_video"),
    }
    if media_type not in checks:
        raise Quarantine(
            "unknown_type",
            "the content is not a supported image (PNG, JPEG, GIF, BMP, TIFF, WebP), PDF or video "
            "(MP4, MOV, M4V, MKV, WebM); the file extension is not trusted, so convert the file "
            "to one of these formats",
        )
    check, corrupt_code = checks[media_type]
    try:
        check(path, limits, label or media_type.value)
    except Quarantine:
        raise
    except Exception as exc:  # a decoder failing in an unforeseen way is still the file's problem
        raise Quarantine(
            corrupt_code, f"the decoder failed ({type(exc).__name__}: {exc}); re-export or re-upload the file"
        ) from exc


def _bomb_refused(label: str, exc: Exception) -> Quarantine:
    """Pillow's own guard fired before ours (its ``MAX_IMAGE_PIXELS`` is lower than the limits)."""
    return Quarantine(
        "decompression_bomb",
        f"Pillow's decompression-bomb guard refused the {label} header ({str(exc).rstrip('.')}); "
        "downscale the image and upload it again",
    )


def check_image_header(path: Path, limits: IngestLimits) -> None:
    """The cheap part of :func:`check_image`: the pixel count its header declares (nothing decoded).

    The upload API runs it on every image as it arrives, so a small file declaring a huge picture
    is refused at once instead of being quarantined later.
    """
    label = "image"
    try:
        with Image.open(path) as image:
            label = image.format or label
            _check_pixels(image.size, limits, f"the {label} header declares")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_refused(label, exc) from exc
    except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise Quarantine(
            "corrupt_image", f"the file starts like an image but its header cannot be read ({exc}); re-export it"
        ) from exc


def check_image(path: Path, limits: IngestLimits, label: str = "image") -> None:
    """Pillow must read the header, verify the data and decode every pixel.

    The pixel count is checked from the header before anything is decoded. Pillow's own global
    ``MAX_IMAGE_PIXELS`` guard is left as configured; if it fires first it is reported the same way.
    """
    try:
        with Image.open(path) as image:
            label = image.format or label
            _check_pixels(image.size, limits, f"the {label} header declares")
            image.verify()
        with Image.open(path) as image:
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_refused(label, exc) from exc
    except Image.UnidentifiedImageError as exc:
        raise Quarantine(
            "corrupt_image",
            f"the file starts like a {label} but Pillow cannot read its header; re-export or re-upload the file",
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise Quarantine(
            "corrupt_image", f"{_describe_image_error(label, exc)}; re-export or re-upload the file"
        ) from exc


def _check_pixels(size: tuple[int, int], limits: IngestLimits, what: str) -> None:
    width, height = size
    if width * height > limits.max_image_pixels:
        raise Quarantine(
            "decompression_bomb",
            f"{what} {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limits.max_image_pixels:,}; downscale it below the limit or raise max_image_pixels",
        )


def _describe_image_error(label: str, exc: BaseException) -> str:
    message = str(exc)
    if "truncated" in message.lower():
        return f"the {label} data ends early (truncated upload?)"
    return f"the {label} data is damaged ({message})"


def check_pdf(path: Path, limits: IngestLimits, label: str = "PDF") -> None:
    """PDFium must open the document; page count and page sizes (at 300 DPI) within limits."""
    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise _pdf_open_failure(exc) from exc
    try:
        page_count = len(document)
        if page_count == 0:
            raise Quarantine("corrupt_pdf", "the PDF has no pages; re-export it with its content")
        if page_count > limits.max_pdf_pages:
            raise Quarantine(
                "too_many_pages",
                f"the PDF has {page_count:,} pages, over the limit of {limits.max_pdf_pages:,}; "
                "split it into smaller files",
            )
        for index in range(page_count):
            width_pt, height_pt = document.get_page_size(index)
            pixels = (_points_to_pixels(width_pt), _points_to_pixels(height_pt))
            _check_pixels(pixels, limits, f"page {index + 1} rendered at {PDF_RENDER_DPI} DPI is")
        document[0].close()  # the first page object must parse, not just the page tree
    except pdfium.PdfiumError as exc:
        raise Quarantine("corrupt_pdf", f"PDFium cannot read its pages ({exc}); re-export or repair the PDF") from exc
    finally:
        document.close()


def _points_to_pixels(points: float) -> int:
    return round(points / 72 * PDF_RENDER_DPI)


def _pdf_open_failure(exc: pdfium.PdfiumError) -> Quarantine:
    code = getattr(exc, "err_code", None)
    if code == pdfium_raw.FPDF_ERR_PASSWORD or "password" in str(exc).lower():
        return Quarantine(
            "encrypted_pdf",
            "the PDF is password-protected; remove the password (e.g. print to PDF or "
            "`qpdf --decrypt`) and upload it again",
        )
    if code == pdfium_raw.FPDF_ERR_SECURITY:
        return Quarantine(
            "encrypted_pdf",
            "the PDF uses a security handler PDFium does not support; save an unprotected copy and upload it",
        )
    return Quarantine(
        "corrupt_pdf",
        f"PDFium cannot open it ({exc}); re-export the PDF or repair it (e.g. `qpdf`) and upload it again",
    )


def check_video(path: Path, limits: IngestLimits, label: str = "video") -> None:
    """FFmpeg must open it and decode the first frame of its video stream; codec and length checked.

    Only the header and the first packets are read. A duration the container does not state
    cannot be checked without reading the whole file, so it passes.
    """
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        hint = "its index (the 'moov' atom) is missing" if label == "MP4/MOV" else "its data ends early"
        raise Quarantine(
            "corrupt_video",
            f"FFmpeg cannot open the {label} file ({exc.strerror or exc}); if the upload was cut short "
            f"{hint}, so upload the complete file",
        ) from exc
    with container:
        stream = _first_video_stream(container)
        if stream is None:
            found = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise Quarantine(
                "no_video_stream",
                f"the file has no video stream (streams found: {found}); upload a file that contains video",
            )
        codec = _codec_name(stream)
        if codec not in SUPPORTED_VIDEO_CODECS:
            raise Quarantine(
                "unsupported_codec",
                f"the video codec is {codec}, not one of {', '.join(sorted(SUPPORTED_VIDEO_CODECS))}; "
                "re-encode it (e.g. `ffmpeg -i in -c:v libx264 out.mp4`)",
            )
        seconds = _duration_seconds(container, stream)
        if seconds is not None and seconds > limits.max_video_seconds:
            raise Quarantine(
                "too_long",
                f"the video lasts {seconds:,.1f} s, over the limit of {limits.max_video_seconds:,.1f} s; "
                "cut it into shorter clips",
            )
        try:
            decoded = _decodes_first_frame(container, stream)
        except av.FFmpegError as exc:
            raise Quarantine(
                "corrupt_video", f"the first video frame does not decode ({exc}); re-encode or re-upload the file"
            ) from exc
        if not decoded:
            raise Quarantine(
                "corrupt_video",
                "no video frame could be decoded from the start of the stream (no key frame?); "
                "re-encode or re-upload the file",
            )


def _first_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    for stream in container.streams.video:
        # Cover art in audio files is a one-picture "video" stream flagged as an attached picture.
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _codec_name(stream: av.video.stream.VideoStream) -> str:
    context = stream.codec_context
    if context is None:  # FFmpeg knows no decoder for this stream
        return "an unknown codec"
    # canonical_name is the format ("av1"), name may be a decoder ("libdav1d").
    return context.codec.canonical_name


def _duration_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    candidates = []
    if stream.duration is not None and stream.time_base is not None:
        candidates.append(float(stream.duration * stream.time_base))
    if container.duration is not None:
        candidates.append(container.duration / av.time_base)
    return max(candidates) if candidates else None


def _decodes_first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> bool:
    for count, packet in enumerate(container.demux(stream)):
        for _frame in packet.decode():
            return True
        if count >= MAX_PACKETS_FOR_FIRST_FRAME:
            return False
    return False
