"""The storage root resource: inbox, blobs, manifests and exports all live under it."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from qwen_dataset.storage import StorageLayout


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
        description='File-system options for a URL root, e.g. {"endpoint_url": "http://minio:9000"} '
                    "(QWEN_STORAGE_OPTIONS, JSON). Credentials may also come from the store's own environment.",
    )
    cache: str | None = Field(
        default=None,
        description="Local cache for blobs of a URL root (QWEN_STORAGE_CACHE; default ~/.cache/qwen-dataset).",
    )

    def layout(self) -> StorageLayout:
        layout = StorageLayout(self.root, storage_options=self.storage_options, cache=self.cache)
        layout.ensure()
        return layout
