"""Manifests as Parquet files under the storage root, one file per asset and batch.

An asset that returns several tables (a ``dict`` of name -> DataFrame) gets a folder of them:
``manifests/<asset>/<batch>/<name>.parquet``.
"""

from __future__ import annotations

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext

from qwen_dataset.store.paths import read_parquet, write_parquet
from resources.storage import StorageResource


def _partition(context: InputContext | OutputContext) -> str | None:
    return context.asset_partition_key if context.has_asset_partitions else None


class ParquetManifestIOManager(ConfigurableIOManager):
    """Writes each asset's DataFrame to ``manifests/<asset>/<batch>.parquet`` atomically."""

    storage: StorageResource

    def _path(self, context: InputContext | OutputContext):
        asset = "__".join(context.asset_key.path)
        return self.storage.layout().manifest(asset, _partition(context))

    def handle_output(self, context: OutputContext, obj: pd.DataFrame | dict[str, pd.DataFrame]) -> None:
        if obj is None:
            return
        path = self._path(context)
        if isinstance(obj, dict):
            folder = path.with_suffix("")
            for name, table in obj.items():
                write_parquet(folder / f"{name}.parquet", table)
            context.add_output_metadata({"manifest_path": str(folder)})
            return
        write_parquet(path, obj)
        context.add_output_metadata({"manifest_path": str(path)})

    def load_input(self, context: InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        path = self._path(context)
        folder = path.with_suffix("")
        if folder.is_dir():
            return {table.stem: read_parquet(table) for table in sorted(folder.glob("*.parquet"))}
        if not path.exists():
            raise FileNotFoundError(
                f"The manifest {path} does not exist: materialize {context.asset_key.to_user_string()} "
                f"for this batch first."
            )
        return read_parquet(path)
