"""Confidence intervals of the gated figures: how far a figure measured on a sample can be trusted.

* A **share** (action-path completeness: completed sequences out of all) gets the **Wilson score
  interval**, which stays inside [0, 1] and is sensible for small samples and shares near 0 or 1.
* A **ratio of sums over units** (mean IoU: IoU summed over box pairs of each double-blind frame /
  its pairs and unmatched boxes; OCR accuracy: errors / reference characters per frame; semantic
  consistency: the mean of per-pair scores) gets a **percentile bootstrap over the units**
  (frames or pairs, resampled with replacement, :data:`RESAMPLES` times, seeded, so the same data
  always gives the same interval). Resampling whole frames keeps the boxes of one frame together:
  they are not independent of each other.

Both are 95 % intervals by default. They say how much the figure could move with another sample
of the same size; they say nothing about bias in what was sampled.

>>> [round(bound, 3) for bound in wilson_interval(9, 10)]
[0.596, 0.982]
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
# Resamples drawn at once: (chunk, units) indices stay small even for 10,000 units.
_CHUNK = 200


def wilson_interval(successes: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of the share ``successes / total`` (``(0, 1)`` when ``total`` is 0)."""
    if total <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= total:
        raise ValueError(f"successes must lie in [0, {total}], got {successes}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share = successes / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    spread = z * np.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, float(centre - spread)), min(1.0, float(centre + spread)))


def bootstrap_ratio_interval(
    numerators: Sequence[float],
    denominators: Sequence[float] | None = None,
    *,
    empty_value: float = 1.0,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``sum(numerators) / sum(denominators)`` over units.

    Each unit (a frame, a pair) contributes its numerator and denominator; without
    ``denominators`` every unit weighs 1 (the interval of a mean). A resample whose denominators
    sum to 0 (only empty frames drawn) takes ``empty_value``. None when there is no unit.
    """
    top = np.asarray(numerators, dtype=float)
    bottom = np.ones_like(top) if denominators is None else np.asarray(denominators, dtype=float)
    if top.shape != bottom.shape:
        raise ValueError(f"{top.size} numerators but {bottom.size} denominators; give one of each per unit")
    if not top.size:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, resamples, _CHUNK):
        draws = rng.integers(0, top.size, size=(min(_CHUNK, resamples - start), top.size))
        sums_top, sums_bottom = top[draws].sum(axis=1), bottom[draws].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            values.append(np.where(sums_bottom > 0, sums_top / np.where(sums_bottom > 0, sums_bottom, 1), empty_value))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(values), [tail, 100 - tail])
    return (float(low), float(high))
