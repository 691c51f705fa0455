"""Tests of the raw_uploads domain code: every file once, a clear reason for every bad one."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
import unicodedata
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image
from pypdf import PdfWriter

from qwen_dataset.ingest.uploads import (
    IngestLimits,
    ingest_batch,
    iter_batch_files,
    sanitize_name,
    sniff_media_type,
    summarize,
)
from qwen_dataset.records import MediaType, UploadRecord, UploadStatus
from qwen_dataset.store.blobs import BlobStore

# --------------------------------------------------------------------------- fixtures


def image_bytes(fmt: str = "PNG", seed: int = 0, size: tuple[int, int] = (32, 24)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height``: what a decompression bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def pdf_bytes(path: Path, pages: int = 1, size_pt: tuple[float, float] = (200, 100)) -> bytes:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(*size_pt)
    document.save(path)
    document.close()
    return path.read_bytes()


def encrypted_pdf_bytes() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def write_video(
    path: Path, codec: str = "libx264", container_format: str | None = None, frames: int = 10, rate: int = 10
) -> Path:
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for index in range(frames):
            picture = np.full((48, 64, 3), index * 20, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        samples = (np.sin(np.arange(1600) / 5) * 10000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        frame.pts, frame.time_base = 0, Fraction(1, 8000)
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def with_free_box(mp4: bytes, padding: int) -> bytes:
    """Append an ISO-BMFF ``free`` box: a valid MP4 of any size that stays quick to decode."""
    return mp4 + struct.pack(">I", padding + 8) + b"free" + bytes(padding)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox" / "batch-1"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


def put(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def only(records: list[UploadRecord]) -> UploadRecord:
    assert len(records) == 1, records
    return records[0]


def code_of(record: UploadRecord) -> str:
    return record.reason.split(":", 1)[0]


def assert_quarantined(record: UploadRecord, code: str) -> None:
    assert record.status == UploadStatus.QUARANTINED, record
    assert code_of(record) == code, record.reason
    # "<code>: <what was wrong and what to do>" — a sentence, not just the code.
    assert len(record.reason) > len(code) + 20, record.reason


def ingest_one(inbox: Path, blobs: BlobStore, name: str, data: bytes, **limits) -> UploadRecord:
    put(inbox, name, data)
    return only(ingest_batch(inbox, "batch-1", blobs, IngestLimits(**limits)))


# --------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_every_supported_image_format_is_sniffed_and_ok(inbox, blobs, fmt):
    record = ingest_one(inbox, blobs, f"picture.{fmt.lower()}", image_bytes(fmt))
    assert (record.media_type, record.status, record.reason) == ("image", "ok", "")


def test_sniffing_ignores_the_extension(inbox, blobs, tmp_path):
    put(inbox, "x.pdf", image_bytes("PNG"))
    put(inbox, "y.png", pdf_bytes(tmp_path / "doc.pdf"))
    records = ingest_batch(inbox, "batch-1", blobs)
    assert [(r.original_name, r.media_type, r.status) for r in records] == [
        ("x.pdf", "image", "ok"),
        ("y.png", "pdf", "ok"),
    ]


def test_sniff_media_type_recognises_each_family():
    assert sniff_media_type(b"   \n%PDF-1.7\n") == MediaType.PDF
    assert sniff_media_type(b"\x00\x00\x00\x18ftypmp42" + bytes(8)) == MediaType.VIDEO
    assert sniff_media_type(b"\x00\x00\x00\x14ftypqt  " + bytes(8)) == MediaType.VIDEO
    assert sniff_media_type(b"\x1a\x45\xdf\xa3" + bytes(8)) == MediaType.VIDEO
    assert sniff_media_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == MediaType.IMAGE
    # HEIC shares the ISO-BMFF box but is a still image we do not decode.
    assert sniff_media_type(b"\x00\x00\x00\x18ftypheic" + bytes(8)) == MediaType.UNKNOWN
    # "BM" alone is plain text, not a bitmap.
    assert sniff_media_type(b"BMW service report, 2024\n") == MediaType.UNKNOWN
    assert sniff_media_type(b"RIFF\x00\x00\x00\x00WAVEfmt ") == MediaType.UNKNOWN
    assert sniff_media_type(b"") == MediaType.UNKNOWN


# --------------------------------------------------------------------------- one test per reason code


def test_empty(inbox, blobs):
    record = ingest_one(inbox, blobs, "nothing.png", b"")
    assert_quarantined(record, "empty")
    assert (record.bytes, record.blob_uri) == (0, "")


def test_unknown_type(inbox, blobs):
    record = ingest_one(inbox, blobs, "notes.png", b"just some text, whatever the extension says\n")
    assert_quarantined(record, "unknown_type")
    assert record.media_type == "unknown"


def test_too_large(inbox, blobs):
    data = image_bytes("PNG")
    record = ingest_one(inbox, blobs, "big.png", data, max_bytes=len(data) - 1)
    assert_quarantined(record, "too_large")
    assert blobs.local_path(record.blob_uri).read_bytes() == data  # still inspectable


def test_unsafe_name_with_a_control_character(inbox, blobs):
    data = image_bytes("PNG")
    record = ingest_one(inbox, blobs, "bell\x07.png", data)
    assert_quarantined(record, "unsafe_name")
    assert "U+0007" in record.reason
    assert record.original_name == "bell.png"
    assert record.upload_id == hashlib.sha256(data).hexdigest()
    assert blobs.local_path(record.blob_uri).read_bytes() == data  # nothing is lost


def test_unsafe_name_with_backslash_traversal(inbox, blobs):
    record = ingest_one(inbox, blobs, "..\\..\\evil.png", image_bytes("PNG"))
    assert_quarantined(record, "unsafe_name")
    assert record.original_name == "evil.png"


def test_unicode_name_is_fine_and_normalised_to_nfc(inbox, blobs):
    decomposed = unicodedata.normalize("NFD", "截图 café.png")
    record = ingest_one(inbox, blobs, decomposed, image_bytes("PNG"))
    assert record.status == "ok", record.reason
    assert record.original_name == "截图 café.png"
    assert record.original_name == unicodedata.normalize("NFC", record.original_name) != decomposed


def test_corrupt_image_truncated(inbox, blobs):
    data = image_bytes("PNG", size=(64, 64))
    record = ingest_one(inbox, blobs, "cut.png", data[: len(data) // 2])
    assert_quarantined(record, "corrupt_image")
    assert "ends early" in record.reason


def test_corrupt_image_truncated_jpeg(inbox, blobs):
    data = image_bytes("JPEG", size=(64, 64))
    assert_quarantined(ingest_one(inbox, blobs, "cut.jpg", data[: len(data) // 2]), "corrupt_image")


def test_decompression_bomb_from_the_header_before_decoding(inbox, blobs):
    record = ingest_one(inbox, blobs, "wide.png", image_bytes("PNG", size=(32, 24)), max_image_pixels=32 * 24 - 1)
    assert_quarantined(record, "decompression_bomb")
    assert "32x24" in record.reason


def test_decompression_bomb_caught_when_pillow_refuses_the_header(inbox, blobs):
    # 30000 x 30000 is over twice Pillow's global guard, which raises DecompressionBombError.
    record = ingest_one(inbox, blobs, "bomb.png", png_header_only(30_000, 30_000))
    assert_quarantined(record, "decompression_bomb")
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the global was left alone


def test_corrupt_pdf(inbox, blobs):
    record = ingest_one(inbox, blobs, "broken.pdf", b"%PDF-1.7\nthis is not a PDF body at all\n")
    assert_quarantined(record, "corrupt_pdf")
    assert record.media_type == "pdf"


def test_corrupt_pdf_truncated(inbox, blobs, tmp_path):
    data = pdf_bytes(tmp_path / "doc.pdf", pages=2)
    assert_quarantined(ingest_one(inbox, blobs, "cut.pdf", data[: len(data) // 3]), "corrupt_pdf")


def test_encrypted_pdf(inbox, blobs):
    record = ingest_one(inbox, blobs, "secret.pdf", encrypted_pdf_bytes())
    assert_quarantined(record, "encrypted_pdf")
    assert "password" in record.reason


def test_too_many_pages(inbox, blobs, tmp_path):
    record = ingest_one(inbox, blobs, "long.pdf", pdf_bytes(tmp_path / "doc.pdf", pages=3), max_pdf_pages=2)
    assert_quarantined(record, "too_many_pages")
    assert "3 pages" in record.reason


def test_pdf_page_too_big_at_300_dpi_is_a_decompression_bomb(inbox, blobs, tmp_path):
    # 14400 pt = 200 in = 60000 px at 300 DPI: 3.6 billion pixels per page.
    record = ingest_one(inbox, blobs, "poster.pdf", pdf_bytes(tmp_path / "doc.pdf", size_pt=(14400, 14400)))
    assert_quarantined(record, "decompression_bomb")
    assert "page 1" in record.reason


@pytest.mark.parametrize(
    ("codec", "container_format", "suffix"),
    [("libx264", None, "mp4"), ("mpeg4", None, "mov"), ("libvpx-vp9", "webm", "webm")],
)
def test_good_videos_are_ok(inbox, blobs, tmp_path, codec, container_format, suffix):
    data = write_video(tmp_path / f"clip.{suffix}", codec, container_format).read_bytes()
    record = ingest_one(inbox, blobs, f"clip.{suffix}", data)
    assert (record.media_type, record.status, record.reason) == ("video", "ok", "")


def test_corrupt_video_missing_moov_atom(inbox, blobs, tmp_path):
    data = write_video(tmp_path / "clip.mp4").read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")  # the index is at the end, as ffmpeg writes it
    record = ingest_one(inbox, blobs, "cut.mp4", data[: data.index(b"moov") - 4])
    assert_quarantined(record, "corrupt_video")
    assert record.media_type == "video"
    assert "moov" in record.reason


def test_corrupt_video_damaged_frame_data(inbox, blobs, tmp_path):
    data = bytearray(write_video(tmp_path / "clip.mp4").read_bytes())
    start, end = data.index(b"mdat") + 4, data.index(b"moov") - 4
    data[start:end] = bytes(end - start)  # the index is intact, the pictures are zeros
    record = ingest_one(inbox, blobs, "zeros.mp4", bytes(data))
    assert_quarantined(record, "corrupt_video")
    assert "first video frame does not decode" in record.reason


def test_corrupt_video_without_a_key_frame(inbox, blobs, tmp_path):
    path = tmp_path / "nokey.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        pictures = [np.full((48, 64, 3), index * 20, dtype=np.uint8) for index in range(10)]
        packets = [
            p for picture in pictures for p in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24"))
        ]
        for packet in packets + list(stream.encode()):
            if not packet.is_keyframe:  # P-frames that reference a picture that is not there
                container.mux(packet)
    record = ingest_one(inbox, blobs, "nokey.mp4", path.read_bytes())
    assert_quarantined(record, "corrupt_video")
    assert "no video frame could be decoded" in record.reason


def test_corrupt_video_garbage_after_the_header(inbox, blobs):
    data = b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 8
    assert_quarantined(ingest_one(inbox, blobs, "junk.mkv", data), "corrupt_video")


def test_no_video_stream(inbox, blobs, tmp_path):
    record = ingest_one(inbox, blobs, "voice.mkv", write_audio_only(tmp_path / "voice.mkv").read_bytes())
    assert_quarantined(record, "no_video_stream")
    assert "audio" in record.reason


def test_no_video_stream_when_the_only_picture_is_cover_art(inbox, blobs, tmp_path):
    path = tmp_path / "song.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        audio = container.add_stream("aac", rate=8000)
        audio.layout = "mono"
        cover = container.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 16, 16, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
        picture.pts = 0
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 4096), dtype=np.float32), format="fltp", layout="mono")
        sound.sample_rate, sound.pts, sound.time_base = 8000, 0, Fraction(1, 8000)
        for packet in [*cover.encode(picture), *cover.encode(), *audio.encode(sound), *audio.encode()]:
            container.mux(packet)
    record = ingest_one(inbox, blobs, "song.m4a", path.read_bytes())
    assert record.media_type == "video"  # ISO-BMFF by its magic bytes
    assert_quarantined(record, "no_video_stream")


def test_unsupported_codec(inbox, blobs, tmp_path):
    data = write_video(tmp_path / "clip.mkv", "mjpeg", "matroska").read_bytes()
    record = ingest_one(inbox, blobs, "clip.mkv", data)
    assert_quarantined(record, "unsupported_codec")
    assert "mjpeg" in record.reason


def test_too_long(inbox, blobs, tmp_path):
    data = write_video(tmp_path / "clip.mp4", frames=10, rate=10).read_bytes()  # 1 s
    record = ingest_one(inbox, blobs, "clip.mp4", data, max_video_seconds=0.5)
    assert_quarantined(record, "too_long")


def test_unreadable(inbox, blobs, monkeypatch):
    put(inbox, "locked.png", image_bytes("PNG"))
    real_open = Path.open

    def refuse(self, *args, **kwargs):
        if self.name == "locked.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    record = only(ingest_batch(inbox, "batch-1", blobs))
    assert_quarantined(record, "unreadable")
    assert (record.upload_id, record.blob_uri) == ("", "")


def test_not_regular_file_symlink_is_reported_not_followed(inbox, blobs, tmp_path):
    outside = put(tmp_path, "outside/secret.png", image_bytes("PNG"))
    (inbox / "link.png").symlink_to(outside)
    (inbox / "linked_dir").symlink_to(outside.parent, target_is_directory=True)
    records = ingest_batch(inbox, "batch-1", blobs)
    assert [r.original_name for r in records] == ["link.png", "linked_dir"]
    for record in records:
        assert_quarantined(record, "not_regular_file")
        assert record.blob_uri == ""
    assert not (blobs.root / "blobs").exists()


def test_not_regular_file_fifo_is_reported_without_blocking(inbox, blobs):
    os.mkfifo(inbox / "pipe.png")
    assert_quarantined(only(ingest_batch(inbox, "batch-1", blobs)), "not_regular_file")


# --------------------------------------------------------------------------- names


def test_sanitize_name_accepts_plain_and_unicode_names():
    assert sanitize_name("report 2024.pdf") == ("report 2024.pdf", None)
    assert sanitize_name("截图.png") == ("截图.png", None)
    assert sanitize_name("photos/cat.png") == ("cat.png", None)  # directories stripped
    assert sanitize_name("notes:v2.png") == ("notes_v2.png", None)


@pytest.mark.parametrize(
    ("name", "safe", "mentions"),
    [
        ("../../etc/passwd", "passwd", ".."),
        ("..\\..\\evil.png", "evil.png", ".."),
        ("/etc/passwd", "passwd", "absolute"),
        ("C:\\Users\\me\\x.png", "x.png", "absolute"),
        ("bell\x07.png", "bell.png", "U+0007"),
        ("photo\u202egnp.exe", "photognp.exe", "U+202E"),  # right-to-left override (Cf)
        ("..", "unnamed", ".."),
        ("\x00", "unnamed", "U+0000"),
        ("", "unnamed", "empty"),
    ],
)
def test_sanitize_name_rejects_unsafe_names(name, safe, mentions):
    safe_name, problem = sanitize_name(name)
    assert safe_name == safe
    assert problem is not None and problem.startswith("unsafe_name: ")
    assert mentions in problem


def test_sanitize_name_truncates_to_200_utf8_bytes_keeping_the_extension():
    safe, problem = sanitize_name("图" * 150 + ".jpeg")
    assert problem is None
    assert safe.endswith(".jpeg")
    assert len(safe.encode("utf-8")) <= 200
    assert safe == "图" * 65 + ".jpeg"  # 65 * 3 + 5 = 200 bytes, no broken character


# --------------------------------------------------------------------------- the batch


def test_iter_batch_files_is_recursive_sorted_and_skips_only_real_markers(inbox):
    names = [
        "b.png",
        "a/z.png",
        "a/b.pdf",
        "_READY",
        ".part-x1y2.tmp",
        ".upload-upload-1/cat.png",
        "a/.DS_Store",
        "c.mp4",
        "..\\up.png",
        "_DSC0001.JPG",
        "a/_READY.png",
        ".hidden.png",
        ".part-1.png",
    ]
    for name in names:
        put(inbox, name, b"x")
    assert [p.relative_to(inbox).as_posix() for p in iter_batch_files(inbox)] == [
        "..\\up.png",
        ".hidden.png",
        ".part-1.png",
        "_DSC0001.JPG",
        "a/.DS_Store",
        "a/_READY.png",
        "a/b.pdf",
        "a/z.png",
        "b.png",
        "c.mp4",
    ]


def test_camera_and_hidden_files_appear_in_the_manifest(inbox, blobs):
    put(inbox, "_DSC0001.JPG", image_bytes("JPEG", seed=1))
    put(inbox, ".DS_Store", b"\0\0\0\1Bud1")
    put(inbox, "_READY", b"")
    records = ingest_batch(inbox, "batch-1", blobs)
    by_name = {r.original_name: r for r in records}
    assert sorted(by_name) == [".DS_Store", "_DSC0001.JPG"]
    assert by_name["_DSC0001.JPG"].status == UploadStatus.OK
    assert by_name[".DS_Store"].status == UploadStatus.QUARANTINED
    assert by_name[".DS_Store"].reason.startswith("unknown_type:")


def test_duplicates_within_a_batch(inbox, blobs):
    data = image_bytes("PNG", seed=7)
    for name in ["b.png", "a.png", "c/copy.png"]:
        put(inbox, name, data)
    records = ingest_batch(inbox, "batch-1", blobs)
    assert [(r.original_name, r.status) for r in records] == [
        ("a.png", "ok"),
        ("b.png", "duplicate"),
        ("copy.png", "duplicate"),
    ]
    assert records[1].reason == "duplicate: same content as a.png"
    assert len({r.blob_uri for r in records}) == 1
    assert len(list((blobs.root / "blobs").rglob("*"))) == 4  # sha256/ab/cd/<blob>: stored once


def test_an_unsafe_name_does_not_claim_its_content(inbox, blobs):
    data = image_bytes("PNG")
    put(inbox, "a\x07.png", data)
    put(inbox, "b.png", data)
    records = ingest_batch(inbox, "batch-1", blobs)
    assert [(r.original_name, r.status) for r in records] == [("a.png", "quarantined"), ("b.png", "ok")]


def test_content_from_an_earlier_batch_is_ok_again(tmp_path, blobs):
    data = image_bytes("PNG")
    first, second = put(tmp_path / "b1", "x.png", data).parent, put(tmp_path / "b2", "y.png", data).parent
    assert only(ingest_batch(first, "b1", blobs)).status == "ok"
    record = only(ingest_batch(second, "b2", blobs))
    assert (record.batch, record.status, record.reason) == ("b2", "ok", "")


def test_mixed_batch_every_file_exactly_once_and_blobs_match(inbox, blobs, tmp_path):
    files = {
        "01_good.png": image_bytes("PNG", seed=1),
        "02_cut.png": image_bytes("PNG", seed=2, size=(64, 64))[:300],
        "03_empty.jpg": b"",
        "04_doc.pdf": pdf_bytes(tmp_path / "doc.pdf", pages=2),
        "05_secret.pdf": encrypted_pdf_bytes(),
        "06_clip.mp4": write_video(tmp_path / "clip.mp4").read_bytes(),
        "07_text.txt": b"hello\n",
        "08_again.png": image_bytes("PNG", seed=1),
        "sub/09_good.webp": image_bytes("WEBP", seed=3),
    }
    for name, data in files.items():
        put(inbox, name, data)
    records = ingest_batch(inbox, "batch-1", blobs)

    assert [r.original_name for r in records] == [
        "01_good.png",
        "02_cut.png",
        "03_empty.jpg",
        "04_doc.pdf",
        "05_secret.pdf",
        "06_clip.mp4",
        "07_text.txt",
        "08_again.png",
        "09_good.webp",
    ]
    assert [(r.status, code_of(r) if r.reason else "") for r in records] == [
        ("ok", ""),
        ("quarantined", "corrupt_image"),
        ("quarantined", "empty"),
        ("ok", ""),
        ("quarantined", "encrypted_pdf"),
        ("ok", ""),
        ("quarantined", "unknown_type"),
        ("duplicate", "duplicate"),
        ("ok", ""),
    ]
    for record, data in zip(records, files.values()):
        assert record.batch == "batch-1"
        assert record.bytes == len(data)
        assert record.upload_id == hashlib.sha256(data).hexdigest()
        if data:
            stored = blobs.local_path(record.blob_uri).read_bytes()
            assert hashlib.sha256(stored).hexdigest() == record.upload_id
            assert record.blob_uri == BlobStore.uri_for(record.upload_id)


def test_missing_inbox_says_what_to_do(tmp_path, blobs):
    with pytest.raises(FileNotFoundError, match="upload the batch there"):
        ingest_batch(tmp_path / "nope", "batch-9", blobs)


def test_large_video_is_streamed_not_read_into_memory(inbox, blobs, tmp_path, monkeypatch):
    padding = 20 * 1024 * 1024
    data = with_free_box(write_video(tmp_path / "clip.mp4").read_bytes(), padding)
    put(inbox, "long.mp4", data)
    expected = hashlib.sha256(data).hexdigest()
    del data

    def no_whole_reads(self):
        raise AssertionError(f"{self} was read whole")

    monkeypatch.setattr(Path, "read_bytes", no_whole_reads)
    tracemalloc.start()
    try:
        record = only(ingest_batch(inbox, "batch-1", blobs))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (record.status, record.media_type, record.upload_id) == ("ok", "video", expected)
    assert record.bytes > padding
    assert peak < 8 * 1024 * 1024, f"peak Python memory {peak:,} bytes for a {record.bytes:,}-byte file"


def test_summarize_counts_and_lists_quarantined(inbox, blobs):
    put(inbox, "a.png", image_bytes("PNG"))
    put(inbox, "b.png", image_bytes("PNG"))
    put(inbox, "c.bin", b"\x00\x01")
    put(inbox, "d.png", b"")
    summary = summarize(ingest_batch(inbox, "batch-1", blobs))
    assert summary["files"] == 4
    assert summary["by_status"] == {"ok": 1, "duplicate": 1, "quarantined": 2}
    assert summary["by_media_type"] == {"image": 2, "pdf": 0, "video": 0, "unknown": 2}
    assert summary["by_reason_code"] == {"unknown_type": 1, "empty": 1}
    assert [name for name, _ in summary["quarantined"]] == ["c.bin", "d.png"]
    assert summary["quarantined"][0][1].startswith("unknown_type: ")


def test_summarize_of_nothing_has_zero_counts():
    summary = summarize([])
    assert summary["files"] == 0
    assert set(summary["by_status"].values()) == {0}
    assert summary["quarantined"] == []
