"""The storage root resource: inbox, blobs, manifests and exports all live under it."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from qwen_dataset.storage import StorageLayout


class StorageResource(ConfigurableResource):
    """Where the pipeline keeps its files (``QWEN_STORAGE_ROOT``, default ``.storage``)."""

    root: str = Field(default=".storage", description="Storage root folder: inbox/, blobs/, manifests/, exports/.")

    def layout(self) -> StorageLayout:
        layout = StorageLayout(self.root)
        layout.ensure()
        return layout
