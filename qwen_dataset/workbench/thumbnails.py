"""Small JPEG pictures of frames for the annotator's queue.

A queue page shows a thumbnail per row; decoding a full frame for each would cost the server a
page's worth of decodes at every visit, so thumbnails are kept in memory, keyed by the file and
its modification time (a blob is content-addressed, so in practice by content).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image, UnidentifiedImageError

#: The longest side of a thumbnail, in pixels.
THUMBNAIL_PIXELS = 160
_CACHED = 2048  # about 5 kB each


class NoPicture(ValueError):
    """The file is not a picture a thumbnail can be made of; the message says which file."""


def thumbnail_jpeg(path: Path, size: int = THUMBNAIL_PIXELS) -> bytes:
    """A JPEG of the picture at ``path``, its longest side ``size`` pixels at most."""
    return _thumbnail(str(path), path.stat().st_mtime_ns, size)


@lru_cache(maxsize=_CACHED)
def _thumbnail(path: str, _mtime_ns: int, size: int) -> bytes:
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # a JPEG decodes at a fraction of its size: much faster
            image.thumbnail((size, size))
            picture = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise NoPicture(f"{Path(path).name} is not a picture ({error})") from None
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()
