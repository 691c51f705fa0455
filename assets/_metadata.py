"""Metadata helpers shared by the asset modules: schemas and small tables for the Dagster UI."""

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema

_TYPE_NAMES = {str: "string", int: "int", float: "float", bool: "bool"}


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation.replace(" | None", "").replace("None | ", "")
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return _TYPE_NAMES.get(args[0] if args else annotation, "string")


def column_schema(record_type: type) -> TableSchema:
    """``dagster/column_schema`` for a manifest built from a records dataclass."""
    return TableSchema(
        columns=[TableColumn(name=f.name, type=_type_name(f.type)) for f in dataclasses.fields(record_type)]
    )


def manifest_metadata(frame: pd.DataFrame, record_type: type) -> dict[str, Any]:
    return {"dagster/row_count": len(frame), "dagster/column_schema": column_schema(record_type)}


def markdown_table(rows: Sequence[Mapping[str, Any]], limit: int = 50) -> MetadataValue:
    """A markdown table of the first ``limit`` rows (the UI renders it)."""
    if not rows:
        return MetadataValue.md("_none_")
    headers = list(rows[0].keys())
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows[:limit]:
        cells = [str(row[h]).replace("|", "\\|").replace("\n", " ") for h in headers]
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more rows not shown_")
    return MetadataValue.md("\n".join(lines))
