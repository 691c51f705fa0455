"""Admin settings kept in the database: the double-blind sampling rate and the agreement rules."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from sqlalchemy.orm import Session

from qwen_dataset.db.models import WorkbenchSetting

DEFAULT_DOUBLE_RATE = 0.10
#: Matched boxes of two annotators agree at this IoU or more (the article's IoU target).
DEFAULT_AGREEMENT_IOU = 0.85
#: Two annotators' video events agree at this temporal IoU or more: people marking the same moment
#: differ by a frame or two at each end, less once times snap to shot cuts.
DEFAULT_AGREEMENT_TIOU = 0.7
#: ...and when their descriptions are this much alike (word-level, order-free; 1.0 = the same words).
DEFAULT_AGREEMENT_TEXT = 0.7
DEFAULT_SEED = "qwen-workbench"


class SettingError(ValueError):
    """A setting value is out of range; the message says which values are allowed."""


@dataclasses.dataclass(frozen=True)
class ReviewSettings:
    double_rate: float = DEFAULT_DOUBLE_RATE  # share of frames that two annotators annotate blind
    agreement_iou: float = DEFAULT_AGREEMENT_IOU
    agreement_tiou: float = DEFAULT_AGREEMENT_TIOU
    agreement_text: float = DEFAULT_AGREEMENT_TEXT
    seed: str = DEFAULT_SEED  # salts the hash that picks double-blind frames and annotators

    def __post_init__(self) -> None:
        if not isinstance(self.double_rate, (int, float)) or not 0.0 <= self.double_rate <= 1.0:
            raise SettingError(f"double_rate must be a number between 0 and 1 (0.1 = 10 %), got {self.double_rate!r}")
        for name in ("agreement_iou", "agreement_tiou", "agreement_text"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                raise SettingError(f"{name} must be a number in (0, 1], got {value!r}")
        if not isinstance(self.seed, str) or not 0 < len(self.seed) <= 64:
            raise SettingError("seed must be a non-empty string of at most 64 characters")


_FIELDS = tuple(field.name for field in dataclasses.fields(ReviewSettings))


def load_settings(session: Session) -> ReviewSettings:
    stored = {row.key: json.loads(row.value) for row in session.query(WorkbenchSetting).all() if row.key in _FIELDS}
    return ReviewSettings(**stored)


def update_settings(session: Session, changes: dict[str, Any], user_id: int | None) -> ReviewSettings:
    """Validate and store ``changes`` (unknown keys are refused); the caller commits."""
    unknown = sorted(set(changes) - set(_FIELDS))
    if unknown:
        raise SettingError(f"unknown setting(s) {unknown}; the settings are {list(_FIELDS)}")
    merged = dataclasses.replace(load_settings(session), **changes)
    for key in changes:
        row = session.get(WorkbenchSetting, key)
        value = json.dumps(getattr(merged, key))
        if row is None:
            session.add(WorkbenchSetting(key=key, value=value, updated_by=user_id))
        else:
            row.value, row.updated_by = value, user_id
    return merged
