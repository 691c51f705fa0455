"""Frames as ``data:`` URLs within Qwen3-VL's pixel budget (aspect kept, never upscaled)."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from qwen_dataset.prelabel.vllm.protocol import EncodedImage, RequestFailed
from qwen_dataset.prelabel.vllm.settings import REENCODE_FORMATS


def fit_within_pixels(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most ``max_pixels``; never upscales.

    >>> fit_within_pixels(3840, 2160, 1280 * 1024)
    (1526, 858)
    >>> fit_within_pixels(640, 480, 1280 * 1024)
    (640, 480)
    """
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def encode_image(path: Path, max_pixels: int, reencode_format: str = "png") -> EncodedImage:
    """A ``data:`` URL for the frame, downscaled to ``max_pixels`` (aspect kept, never upscaled).

    A PNG or JPEG already within budget is sent byte for byte; anything else is re-encoded as
    ``reencode_format`` (PNG by default: lossless, at some CPU cost).
    Raises :class:`RequestFailed` ``image_unreadable`` when the file cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            size = image.size
            target = fit_within_pixels(*size, max_pixels)
            if target == size and image.format in ("PNG", "JPEG"):
                mime = "image/png" if image.format == "PNG" else "image/jpeg"
                data = Path(path).read_bytes()
            else:
                if image.format == "JPEG":
                    image.draft("RGB", target)  # decode at a reduced scale first: much less work
                picture = image if image.mode in ("RGB", "L") else image.convert("RGB")
                if picture.size != target:
                    # Bicubic, as Qwen's own processor resizes; a third cheaper than Lanczos.
                    picture = picture.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)
                pil_format, mime, options = REENCODE_FORMATS[reencode_format]
                buffer = io.BytesIO()
                picture.save(buffer, format=pil_format, **options)
                data = buffer.getvalue()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise RequestFailed("image_unreadable", f"{path}: {error}") from error
    return EncodedImage(b"data:" + mime.encode() + b";base64," + base64.b64encode(data), target[0], target[1])
