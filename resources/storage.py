"""The storage root resource: inbox, blobs, manifests and exports all live under it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from qwen_dataset.exporters.label_studio.media import media_urls
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import storage_options_from_env


class StorageResource(ConfigurableResource):
    """Where the pipeline keeps its files (``QWEN_STORAGE_ROOT``, default ``.storage``).

    A local folder, or an fsspec URL such as ``s3://bucket/qwen`` for object storage: then several
    run workers on several machines share one root, and each keeps a local blob cache.
    """

    root: str = Field(
        default=".storage",
        description="Storage root: a folder, or an fsspec URL (s3://bucket/prefix, gs://..., memory://...).",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Non-secret file-system options for a URL root, e.g. {"endpoint_url": "http://minio:9000"}. '
        "They are shown in the UI: put credentials in QWEN_STORAGE_OPTIONS or the store's own "
        "environment (AWS_ACCESS_KEY_ID, ...), which are read when a run starts and never shown.",
    )
    cache: str | None = Field(
        default=None,
        description="Local cache for blobs of a URL root (QWEN_STORAGE_CACHE; default ~/.cache/qwen-dataset).",
    )

    label_studio_media_url: str | None = Field(
        default=None,
        description="How a Label Studio server loads the exports' pictures and videos (QWEN_LABEL_STUDIO_MEDIA_URL): "
        "a prefix followed by the file's path under the root, e.g. '/data/local-files/?d=srv/qwen/' (Label Studio's "
        "local files), 'https://files.example/qwen/' or 's3://bucket/qwen/'. Default: the root's own URL, or "
        "local files with LOCAL_FILES_DOCUMENT_ROOT=/ for a folder root.",
    )

    def label_studio_urls(self, layout: StorageLayout, folder: str) -> Callable[[str], str]:
        """URLs of the files of ``folder`` (its path under the root, e.g. ``exports/b1``) for Label Studio."""
        return media_urls(layout.root, folder, self.label_studio_media_url or None)

    def open_layout(self) -> StorageLayout:
        """The layout, without creating folders or checking the store."""
        options = {**storage_options_from_env(), **self.storage_options}
        return StorageLayout(self.root, storage_options=options, cache=self.cache)

    def layout(self) -> StorageLayout:
        """The layout, ready to use: folders of a local root made, a store's bucket checked."""
        layout = self.open_layout()
        layout.ensure()
        return layout
