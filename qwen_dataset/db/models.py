"""The annotation database's tables (SQLAlchemy 2.x models): where human work lives.

=====================  =========================================================================
``human_annotations``  one human, imported or arbitrated annotation of a frame for a task; the
                       workbench keeps one row per assignment (the annotator's version) and one
                       ``source="arbitrated"`` row per arbitrated item
``work_items``         one (batch, frame, task) to annotate, with the frame's size and the AI's
                       pre-annotation it starts from
``users``              workbench accounts (annotator / reviewer / admin), argon2 password hashes
``api_tokens``         machine tokens (upload, batch import), stored as SHA-256 of the secret
``workbench_settings`` admin settings (double-blind rate, agreement threshold), key -> JSON
``template_overrides`` admin edits of the prelabel templates (see :mod:`qwen_dataset.workbench.templates_admin`)
``batch_imports``      which batches were imported into the workbench, with the settings used
``login_throttle``     failed sign-ins per account and per address, and how long each is locked
``gate_waivers``       an admin's recorded decision to let a batch through a failed quality figure
                       (who, when, why, the figure's value and target then); revoked, not deleted
=====================  =========================================================================
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ReviewState(StrEnum):
    DRAFT = "draft"  # saved while an annotator works; never exported
    SUBMITTED = "submitted"  # waiting for review or arbitration
    FINAL = "final"  # accepted: the pipeline uses it


class Role(StrEnum):
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    ADMIN = "admin"


#: Every role's name, for validation and command-line choices.
ROLES: tuple[str, ...] = tuple(role.value for role in Role)


class ItemStatus(StrEnum):
    OPEN = "open"  # some assigned annotation is not submitted yet
    ARBITRATION = "arbitration"  # two submitted versions disagree: a reviewer decides
    FINAL = "final"  # one version is final


def _now() -> datetime:
    return datetime.now(UTC)


class User(Base):
    """A workbench account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # Every session cookie carries the generation it was issued in; signing out, a new password
    # and deactivation bump it, which ends every session issued before.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A machine credential; only the SHA-256 of the secret is stored (the secret is random, 256 bits)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a token in a list
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class WorkbenchSetting(Base):
    """One admin setting; ``value`` is JSON."""

    __tablename__ = "workbench_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class TemplateOverride(Base):
    """An admin's edit of one prelabel template: the four files' contents."""

    __tablename__ = "template_overrides"

    task: Mapped[str] = mapped_column(String(32), primary_key=True)
    template_yaml: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    schema_json: Mapped[str] = mapped_column(Text)
    example_json: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class BatchImport(Base):
    """A batch imported into the workbench, with the sampling settings it was assigned under."""

    __tablename__ = "batch_imports"

    batch: Mapped[str] = mapped_column(String(200), primary_key=True)
    double_rate: Mapped[str] = mapped_column(String(32))
    seed: Mapped[str] = mapped_column(String(64))
    items: Mapped[int] = mapped_column(Integer, default=0)
    imported_by: Mapped[str] = mapped_column(Text, default="")  # a user name or "token:<token name>"
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class WorkItem(Base):
    """One frame of a batch to annotate for one task (for ``video_event``: one video, filed under
    its first sampled frame, ``blob_uri`` the video file), starting from the AI's pre-annotation."""

    __tablename__ = "work_items"

    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch: Mapped[str] = mapped_column(String(200), index=True)
    frame_id: Mapped[str] = mapped_column(String(64))
    upload_id: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    blob_uri: Mapped[str] = mapped_column(String(300))
    ai_annotation_id: Mapped[str] = mapped_column(String(64), default="")
    ai_author: Mapped[str] = mapped_column(Text, default="")
    ai_template_version: Mapped[str] = mapped_column(Text, default="")
    ai_status: Mapped[str] = mapped_column(String(16), default="ok")
    ai_error: Mapped[str] = mapped_column(Text, default="")
    ai_payload: Mapped[str] = mapped_column(Text, default="{}")
    double_blind: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.OPEN, index=True)
    disagreement: Mapped[str] = mapped_column(Text, default="")  # why the two versions disagree
    # JSON: what the editor needs beyond the picture; a video: its duration, sampled frames, shot
    # cuts and audio changes (see qwen_dataset.workbench.video).
    context: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    # What the annotator's queue shows: the uploaded file's name (with the page of a PDF; empty
    # when the batch's upload manifest was not there) and the picture its thumbnail is made from
    # (the frame; for a video its first sampled frame; empty: the item's own blob).
    source_name: Mapped[str] = mapped_column(Text, default="", server_default="")
    preview_uri: Mapped[str] = mapped_column(String(300), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class HumanAnnotation(Base):
    """One human (or arbitrated) annotation of a frame for a task."""

    __tablename__ = "human_annotations"

    annotation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    frame_id: Mapped[str] = mapped_column(String(64), index=True)
    upload_id: Mapped[str] = mapped_column(String(64))
    batch: Mapped[str] = mapped_column(String(200), index=True)
    task: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16), default="human")
    # Engine and account names, versions: free text of any length (a RapidOCR version names its
    # three models and every parameter; PostgreSQL refuses what a VARCHAR(n) cannot hold).
    author: Mapped[str] = mapped_column(Text)
    template_version: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(16), default=ReviewState.DRAFT, index=True)
    # Optimistic concurrency: every write bumps it; a writer holding an old version is refused.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)
    # Workbench links; empty for rows written by other tools (e.g. a Label Studio import).
    item_id: Mapped[str | None] = mapped_column(ForeignKey("work_items.item_id"), nullable=True, index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1 or 2 on a double-blind item
    note: Mapped[str] = mapped_column(Text, default="")  # a reviewer's reason for sending it back
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __mapper_args__ = {"version_id_col": version}


class LoginThrottle(Base):
    """Failed sign-ins of one account (``account:<name>``) or one address (``address:<ip>``)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class GateWaiver(Base):
    """An admin lets one batch through one failed quality figure; the gate and the release read it."""

    __tablename__ = "gate_waivers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch: Mapped[str] = mapped_column(String(200), index=True)
    figure: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    waived_by: Mapped[str] = mapped_column(String(64))  # the admin's user name
    waived_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)  # the figure when it was waived
    target: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
