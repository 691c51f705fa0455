"""Merging human corrections over AI pre-annotations.

For every (frame, task) the most authoritative annotation wins: arbitrated over human over AI.
AI rows that no human touched pass through with ``reviewed = False``, so a consumer can tell
reviewed data from raw pre-annotations.
"""

from __future__ import annotations

import pandas as pd

from qwen_dataset.records import SOURCE_PRECEDENCE, AnnotationRecord, columns_of


def apply_corrections(ai: pd.DataFrame, human: pd.DataFrame) -> pd.DataFrame:
    """One row per (frame_id, task): the final human/arbitrated row if any, else the AI row."""
    columns = columns_of(AnnotationRecord)
    ai = ai.assign(reviewed=False)
    human = human.assign(reviewed=True)
    parts = [part[columns] for part in (human, ai) if len(part)]
    if not parts:
        return pd.DataFrame(columns=columns)
    combined = pd.concat(parts, ignore_index=True)
    combined["_rank"] = combined["source"].map(SOURCE_PRECEDENCE).fillna(len(SOURCE_PRECEDENCE))
    # Among equally authoritative human rows, the latest edit wins.
    combined = combined.sort_values(["frame_id", "task", "_rank", "created_at"], ascending=[True, True, True, False])
    final = combined.drop_duplicates(subset=["frame_id", "task"], keep="first")
    return final.drop(columns="_rank").reset_index(drop=True)
