"""Dagster resources: the outside world of the pipeline (storage, database, prelabel backends)."""

from resources.database import AnnotationDatabaseResource
from resources.io_manager import ParquetManifestIOManager
from resources.prelabel import PrelabelResource, RapidOcrResource
from resources.storage import StorageResource

__all__ = [
    "AnnotationDatabaseResource",
    "ParquetManifestIOManager",
    "PrelabelResource",
    "RapidOcrResource",
    "StorageResource",
]
