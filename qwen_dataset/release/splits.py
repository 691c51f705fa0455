"""Train / val / test splits by upload: every frame of one video, every page of one PDF and every
augmented copy of a frame (which keeps its source's ``upload_id``) land in the same split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(r < 0 for r in values) or abs(sum(values) - 1.0) > 1e-9:
        raise ValueError(
            f"split ratios must be three non-negative numbers (train, val, test) summing to 1, got {ratios!r}"
        )
    return values


def split_for_upload(upload_id: str, ratios: Sequence[float] = DEFAULT_RATIOS, salt: str = "") -> str:
    """``train`` / ``val`` / ``test`` for an upload: sha256(salt + upload_id) read as a number in [0, 1).

    Depends on nothing but the id, so an upload keeps its split when other uploads come and go.

    >>> split_for_upload("a" * 64) == split_for_upload("a" * 64)
    True
    """
    train, val, _ = check_ratios(ratios)
    bucket = int(hashlib.sha256(f"{salt}{upload_id}".encode()).hexdigest()[:16], 16) / 16**16
    if bucket < train:
        return "train"
    return "val" if bucket < train + val else "test"


def assign_splits(upload_ids: Iterable[str], ratios: Sequence[float] = DEFAULT_RATIOS, salt: str = "") -> list[str]:
    """:func:`split_for_upload` for many ids (each distinct id hashed once)."""
    cache: dict[str, str] = {}
    result = []
    for upload_id in upload_ids:
        if upload_id not in cache:
            cache[upload_id] = split_for_upload(upload_id, ratios, salt)
        result.append(cache[upload_id])
    return result
