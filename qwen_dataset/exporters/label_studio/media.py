"""How a Label Studio server reaches the pictures and videos of an export: the URLs written into
``label_studio_<task>.json``.

A Label Studio server never reads a path relative to an export folder (its browser would ask
``/projects/N/images/...``), so every media reference is a URL made of a *prefix* and the file's
path under the storage root (``exports/<batch>/images/<frame>.png``,
``releases/<version>/videos/<upload>.mp4``). The prefix is one of:

* ``/data/local-files/?d=<the storage root's path under LOCAL_FILES_DOCUMENT_ROOT>/`` - Label
  Studio's own local-files serving (the server runs on the machine that holds the root; it needs
  ``LOCAL_FILES_SERVING_ENABLED=true``, ``LOCAL_FILES_DOCUMENT_ROOT`` and a Local Storage on the
  project whose path holds the files). The default for a folder root assumes
  ``LOCAL_FILES_DOCUMENT_ROOT=/``: ``/data/local-files/?d=<absolute root without its leading />/``.
* ``http://`` or ``https://`` - any web server (or a public bucket) that serves the storage root;
  the browser loads the URL as it is.
* ``s3://``, ``gs://``, ``azure-blob://`` - the object-storage URL of the root (the default for a
  URL root): Label Studio resolves it to a presigned URL when the project has a cloud storage of
  that bucket with "Use pre-signed URLs" on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from qwen_dataset.store.paths import StoragePath, is_remote

#: The environment variable a data engineer sets the prefix with (read by the code location).
LABEL_STUDIO_MEDIA_ENV = "QWEN_LABEL_STUDIO_MEDIA_URL"
LOCAL_FILES_PREFIX = "/data/local-files/?d="
CLOUD_SCHEMES = ("s3://", "gs://", "azure-blob://")
_URL_FORMS = (LOCAL_FILES_PREFIX, "http://", "https://", *CLOUD_SCHEMES)


def default_media_prefix(root: StoragePath) -> str:
    """The prefix used when none is configured: the root's own URL, or local files under ``/``."""
    if is_remote(root):
        return str(root).rstrip("/") + "/"
    absolute = Path(root).resolve().as_posix().lstrip("/")
    return f"{LOCAL_FILES_PREFIX}{quote(absolute)}/"


def check_media_prefix(prefix: str) -> str:
    """``prefix`` with one trailing ``/``, or a ValueError saying which forms Label Studio can load."""
    if not prefix.startswith(_URL_FORMS):
        raise ValueError(
            f"{LABEL_STUDIO_MEDIA_ENV}={prefix!r} is no URL form a Label Studio server can load: use "
            f"'{LOCAL_FILES_PREFIX}<storage root under LOCAL_FILES_DOCUMENT_ROOT>/', an http(s):// URL of a server "
            f"that serves the storage root, or the root's {'/'.join(CLOUD_SCHEMES)} URL (see the README)"
        )
    return prefix.rstrip("/") + "/"


def media_urls(root: StoragePath, folder: str, prefix: str | None = None) -> Callable[[str], str]:
    """``url(path)`` for files of the dataset folder ``folder`` (its path under the root, e.g.
    ``exports/b1``), given as paths relative to that folder (``images/f.png``).

    >>> media_urls(Path("/srv/qwen"), "exports/b1")("images/f.png")
    '/data/local-files/?d=srv/qwen/exports/b1/images/f.png'
    >>> media_urls(Path("/srv/qwen"), "exports/b1", "https://cdn.example/qwen")("images/f.png")
    'https://cdn.example/qwen/exports/b1/images/f.png'
    """
    base = check_media_prefix(prefix) if prefix else default_media_prefix(root)
    folder = folder.strip("/")

    def url(path: str) -> str:
        return base + quote(f"{folder}/{path}")

    return url
