"""More double-blind sampling for the annotators a failed quality gate names.

A batch whose agreement fails its target needs more evidence about the annotators concerned, not
a verdict on one frame: :func:`sample_double_blind` turns up to ``items`` of each named
annotator's single-annotated items of the batch into double-blind items, each with a second, blind
assignment for another active annotator (starting from the AI's pre-annotation, as every
assignment does). What was already final stays final and is exported meanwhile; when the second
version is submitted, the two are compared as any double-blind item's are, and a disagreement
goes to arbitration. The choice is deterministic: the items with the smallest
``sha256(seed | item id)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from qwen_dataset.db.models import HumanAnnotation, ItemStatus, User, WorkItem
from qwen_dataset.workbench.assignment import ImportProblem, _new_assignment, active_annotators


@dataclasses.dataclass(frozen=True)
class ResampleSummary:
    batch: str
    per_annotator: dict[str, int]  # annotator -> their items made double-blind
    second_annotators: dict[str, int]  # who got the new blind assignments


def _draw(seed: str, item_id: str) -> str:
    return hashlib.sha256(f"{seed}|{item_id}".encode()).hexdigest()


def sample_double_blind(
    session: Session, batch: str, annotators: Sequence[str], items: int, seed: str = "resample"
) -> ResampleSummary:
    """Make up to ``items`` single items of each of ``annotators`` double-blind (the caller commits)."""
    if items < 1:
        raise ImportProblem(f"ask for at least one item per annotator, not {items}")
    people = active_annotators(session)
    by_name = {user.username: user for user in people}
    unknown = sorted(set(annotators) - set(by_name))
    if unknown:
        raise ImportProblem(f"{unknown} are not active annotators; name annotators of batch {batch!r}")
    if len(people) < 2:
        raise ImportProblem("double-blind work needs at least two active annotators: create another one first")
    chosen: dict[str, int] = {}
    seconds: dict[str, int] = {}
    for name in annotators:
        owner = by_name[name]
        rows = session.execute(
            select(WorkItem, HumanAnnotation)
            .join(HumanAnnotation, HumanAnnotation.item_id == WorkItem.item_id)
            .where(WorkItem.batch == batch, WorkItem.double_blind.is_(False), HumanAnnotation.assignee_id == owner.id)
        ).all()
        picked = sorted(rows, key=lambda pair: _draw(seed, pair[0].item_id))[:items]
        others = [user for user in people if user.id != owner.id]
        for item, own_row in picked:
            second: User = others[int(_draw(f"{seed}:second", item.item_id), 16) % len(others)]
            item.double_blind = True
            item.status = ItemStatus.OPEN  # an assigned version is not submitted yet
            own_row.slot = 1
            session.add(_new_assignment(item, second, 2))
            seconds[second.username] = seconds.get(second.username, 0) + 1
        chosen[name] = len(picked)
    session.flush()
    return ResampleSummary(batch, chosen, seconds)
