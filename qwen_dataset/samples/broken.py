"""The broken and hostile files of the sample batch, each with the quarantine reason ingest must give."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

from qwen_dataset.samples.documents import PDF_DPI, images_to_pdf_bytes
from qwen_dataset.samples.drawing import LIGHT_THEMES, Canvas, jitter, png_bytes

ENCRYPTED_PDF_PASSWORD = "sample-user-password"
BOMB_SIDE = 30000
CORRUPT_VIDEO_BYTES = 3 * 1024


def encrypted_pdf_bytes(plain_pdf: bytes, user_password: str, file_id: bytes) -> bytes:
    """A real password-protected PDF (RC4-128, standard security handler, revision 3).

    RC4 is used because AES draws a random IV for every string; ``file_id`` pins the trailer /ID
    that pypdf would otherwise draw from ``secrets``, so the output is byte-identical per seed.
    """
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject, ByteStringObject

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(plain_pdf)))
    fixed_id = ArrayObject([ByteStringObject(file_id), ByteStringObject(file_id)])
    writer._ID = fixed_id  # noqa: SLF001 - pypdf has no public setter for the file identifier
    writer.encrypt(user_password=user_password, owner_password=user_password + "-owner", algorithm="RC4-128")
    writer._ID = fixed_id  # noqa: SLF001 - encrypt() appends a random second identifier
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit PNG of ``side`` x ``side`` black pixels that compresses to ~100 KB.

    Streamed through zlib row block by row block, so generating it never holds the raw image.
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte "None" + packed bits
    block = row * 256
    compressor = zlib.compressobj(9)
    parts = []
    remaining = side
    while remaining:
        rows = min(remaining, 256)
        parts.append(compressor.compress(block if rows == 256 else row * rows))
        remaining -= rows
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


BROKEN_REASONS = {
    "empty.png": "empty",
    "photo.jpg": "unknown_type",
    "truncated.png": "corrupt_image",
    "locked.pdf": "encrypted_pdf",
    "bomb.png": "decompression_bomb",
    "broken_clip.mp4": "corrupt_video",
    "bad\x07name.png": "unsafe_name",
    "..\\..\\evil.png": "unsafe_name",
}


def _small_notice(text: str, rng: random.Random) -> bytes:
    """A small valid PNG (distinct per text) used as the payload of the hostile file names."""
    canvas = Canvas(360, 120, LIGHT_THEMES[0].panel)
    canvas.text((20 + jitter(rng, 10), 40), text, 24, (20, 20, 20))
    return png_bytes(canvas.image)


def _broken_files(rng: random.Random, written: dict[str, bytes], video: bytes) -> dict[str, bytes]:
    """The bytes of every file in :data:`BROKEN_REASONS`."""
    truncated_source = written["screen_4_settings.png"]
    one_page = images_to_pdf_bytes([Image.new("L", (600, 300), 255)], PDF_DPI, title="locked")
    files = {
        "empty.png": b"",
        "photo.jpg": b"This is a note saved with a .jpg name; it is plain text, not a photo.\n",
        "truncated.png": truncated_source[: len(truncated_source) // 2],
        "locked.pdf": encrypted_pdf_bytes(one_page, ENCRYPTED_PDF_PASSWORD, rng.randbytes(16)),
        "bomb.png": decompression_bomb_png(),
        "broken_clip.mp4": video[:CORRUPT_VIDEO_BYTES],
        "bad\x07name.png": _small_notice("bad name 控制字符", rng),
        "..\\..\\evil.png": _small_notice("path traversal 路径", rng),
    }
    assert files.keys() == BROKEN_REASONS.keys()
    return files
