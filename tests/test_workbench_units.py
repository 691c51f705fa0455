"""Workbench building blocks: agreement rules, deterministic assignment, migrations, settings."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from qwen_dataset.db.engine import make_engine, sqlite_url
from qwen_dataset.db.models import Base, HumanAnnotation
from qwen_dataset.db.queries import final_annotations
from qwen_dataset.workbench.admin_settings import ReviewSettings, SettingError
from qwen_dataset.workbench.assignment import ImportProblem, assign_frame
from qwen_dataset.workbench.config import ConfigError, WorkbenchSettings
from qwen_dataset.workbench.consensus import compare_boxes, compare_events, compare_versions, version_events
from qwen_dataset.workbench.pages import safe_next
from qwen_dataset.workbench.security import SessionSigner, hash_password, needs_rehash, verify_password
from qwen_dataset.workbench.upload import new_batch_id, parse_disposition, storable_name

# --------------------------------------------------------------------------- sign-in redirect

LOCAL_NEXT = ["/", "/annotate", "/review/items/abc?x=1#top", "/a//b"]
FOREIGN_NEXT = [
    "//evil.example/",
    "/\\evil.example",
    "/\\/evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\x00x",
    "/\x7f",
    "https://evil.example/",
    "javascript:alert(1)",
    "evil",
    "",
    " /annotate",
    "/\x85x",
]


def test_safe_next_keeps_local_paths_and_refuses_everything_else():
    assert [safe_next(path) for path in LOCAL_NEXT] == LOCAL_NEXT
    assert {path: safe_next(path) for path in FOREIGN_NEXT} == {path: "/" for path in FOREIGN_NEXT}


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run static/app.js")
def test_app_js_safe_next_applies_the_same_rule():
    app_js = Path(__file__).parents[1] / "qwen_dataset" / "workbench" / "static" / "app.js"
    script = (
        "const vm = require('vm'); const fs = require('fs');"
        "const context = {document: {addEventListener() {}}};"
        "vm.runInNewContext(fs.readFileSync(process.argv[1], 'utf8'), context);"
        "const cases = JSON.parse(fs.readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(cases.map((next) => vm.runInNewContext('safeNext(n)', "
        "Object.assign(context, {n: next})))));"
    )
    cases = LOCAL_NEXT + FOREIGN_NEXT
    # The cases go through stdin: a command-line argument cannot hold the NUL character.
    result = subprocess.run(
        ["node", "-e", script, str(app_js)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == [safe_next(path) for path in cases] == LOCAL_NEXT + ["/"] * len(FOREIGN_NEXT)


# --------------------------------------------------------------------------- agreement


def ocr(*boxes_and_texts):
    return {
        "regions": [{"bbox": box, "text": text, "reading_order": i} for i, (box, text) in enumerate(boxes_and_texts)]
    }


def test_ocr_versions_agree_despite_order_and_whitespace():
    a = ocr(([0, 0, 100, 20], "Hello  world"), ([0, 30, 100, 50], "second"))
    b = ocr(([0, 31, 100, 50], "second"), ([1, 0, 100, 20], "Hello world "))
    assert compare_versions("ocr", a, b, 0.85) == []


def test_ocr_disagreements_are_explained():
    a = ocr(([0, 0, 100, 20], "hello"), ([0, 30, 100, 50], "x"))
    assert compare_versions("ocr", a, ocr(([0, 0, 100, 20], "hello")), 0.85) == [
        "no counterpart in B for box 2 of A ('x' at 0,30-100,50)"
    ]
    shifted = compare_versions("ocr", ocr(([0, 0, 100, 20], "a")), ocr(([30, 0, 130, 20], "a")), 0.85)
    assert shifted and "IoU 0.54 is below 0.85" in shifted[0]
    assert compare_versions("ocr", ocr(([0, 0, 100, 20], "a")), ocr(([30, 0, 130, 20], "a")), 0.5) == []
    texts = compare_versions("ocr", ocr(([0, 0, 100, 20], "hello")), ocr(([0, 0, 100, 20], "hallo")), 0.85)
    assert texts == ["box 1 of A / 1 of B: 'hello' vs 'hallo'"]


def test_boxes_without_a_counterpart_are_named_on_both_sides():
    a = ocr(([0, 0, 100, 20], "Total"), ([0, 30, 100, 50], "12.50"), ([0, 60, 100, 80], "VAT"))
    b = ocr(([0, 0, 100, 20], "Total"), ([200, 100, 260, 120], "stamp"))
    assert compare_versions("ocr", a, b, 0.85) == [
        "no counterpart in B for box 2 of A ('12.50' at 0,30-100,50); box 3 of A ('VAT' at 0,60-100,80)",
        "no counterpart in A for box 2 of B ('stamp' at 200,100-260,120)",
    ]
    # A labelled box reads with its label; past three boxes the rest are counted.
    many = gui([([0, 40 * i, 50, 40 * i + 20], "button", f"b{i}") for i in range(5)], [])
    (reason, *_) = compare_versions("gui_action", many, gui([], []), 0.85)
    assert reason.startswith("no counterpart in B for box 1 of A (button 'b0' at 0,0-50,20); box 2 of A")
    assert reason.endswith("; and 2 more boxes of A")


def test_box_comparison_marks_every_box_for_the_arbitration_view():
    a = ocr(([0, 0, 100, 20], "Total"), ([0, 30, 100, 50], "12.50"))
    b = ocr(([0, 31, 100, 50], "12.60"), ([0, 0, 100, 20], "Total"), ([200, 100, 260, 120], "stamp"))
    comparison = compare_boxes("ocr", a, b, 0.85)
    assert [(m.number, m.partner, m.agrees) for m in comparison.a] == [(1, 2, True), (2, 1, False)]
    assert comparison.a[1].issues == ("'12.50' vs '12.60'",)
    assert [(m.number, m.partner, m.issues) for m in comparison.b] == [
        (1, 2, ("'12.50' vs '12.60'",)),
        (2, 1, ()),
        (3, None, ()),
    ]
    assert comparison.b[2].bbox == [200.0, 100.0, 260.0, 120.0] and comparison.b[2].content == "stamp"


def test_event_comparison_marks_every_event_for_the_arbitration_view():
    def event(start, end, text):
        return {"start": start, "end": end, "description": text}

    a = [event(0, 2, "a red scene"), event(3, 4, "green"), event(5, 6, "blue")]
    b = [event(3, 4, "a dog"), event(0, 2, "A red scene.")]
    marks_a, marks_b = compare_events(a, b, 0.7, 0.7)
    assert [(m.number, m.partner, m.status) for m in marks_a] == [
        (1, 2, "agrees"),
        (2, 1, "differs"),
        (3, None, "alone"),
    ]
    assert marks_a[1].issues == ("'green' vs 'a dog' (similarity 0.20 < 0.70)",)
    assert [(m.number, m.partner, m.status) for m in marks_b] == [(1, 2, "differs"), (2, 1, "agrees")]
    assert marks_a[2].describe() == "5.00-6.00 s, 'blue'"
    assert [m.describe() for m in version_events({"events": [event(1, 2, "x")]})] == ["1.00-2.00 s, 'x'"]


def gui(elements, actions, instruction="log in"):
    return {
        "elements": [{"bbox": box, "role": role, "text": text} for box, role, text in elements],
        "instruction": instruction,
        "actions": actions,
    }


def test_gui_actions_compare_through_the_box_matching():
    button, field = ([0, 0, 50, 20], "button", "OK"), ([0, 40, 200, 60], "input", "")
    actions_a = [{"type": "type", "target": 1, "text": "bob"}, {"type": "click", "target": 0, "point": [5, 5]}]
    # B listed the elements the other way round and clicked elsewhere inside the button: same actions.
    actions_b = [{"type": "type", "target": 0, "text": "bob"}, {"type": "click", "target": 1, "point": [40, 10]}]
    assert compare_versions("gui_action", gui([button, field], actions_a), gui([field, button], actions_b), 0.85) == []
    wrong_target = [{"type": "type", "target": 1, "text": "bob"}, {"type": "click", "target": 1}]
    assert compare_versions(
        "gui_action", gui([button, field], actions_a), gui([field, button], wrong_target), 0.85
    ) == ["the action sequences differ"]
    relabelled = compare_versions("gui_action", gui([button], []), gui([([0, 0, 50, 20], "link", "OK")], []), 0.85)
    assert relabelled == ["box 1 of A / 1 of B: label 'button' vs 'link'"]
    assert compare_versions("gui_action", gui([button], [], "a"), gui([button], [], "b"), 0.85) == [
        "the instructions differ"
    ]


def test_spatial_relations_and_depth_follow_the_matching():
    cup, table = (
        {"bbox": [10, 10, 30, 30], "label": "cup", "occluded": False},
        {"bbox": [0, 20, 100, 60], "label": "table", "occluded": True},
    )
    a = {
        "objects": [cup, table],
        "relations": [{"subject": 0, "predicate": "above", "object": 1}],
        "depth_order": [0, 1],
    }
    b = {
        "objects": [table, cup],
        "relations": [{"subject": 1, "predicate": "above", "object": 0}],
        "depth_order": [1, 0],
    }
    assert compare_versions("spatial", a, b, 0.85) == []
    b_wrong = {**b, "relations": [{"subject": 0, "predicate": "above", "object": 1}], "depth_order": [0, 1]}
    assert compare_versions("spatial", a, b_wrong, 0.85) == ["the relations differ", "the depth orders differ"]


# --------------------------------------------------------------------------- assignment


def test_assignment_is_deterministic_and_never_doubles_one_annotator():
    frames = [f"frame-{index:04d}" for index in range(2000)]
    choices = [assign_frame(frame, 4, 0.1, "seed") for frame in frames]
    assert choices == [assign_frame(frame, 4, 0.1, "seed") for frame in frames]
    doubles = [choice for choice in choices if choice.double_blind]
    assert 150 < len(doubles) < 250  # ~10 %
    assert all(len(set(choice.annotators)) == 2 for choice in doubles)
    load = Counter(position for choice in choices for position in choice.annotators)
    assert set(load) == {0, 1, 2, 3} and max(load.values()) < 1.25 * min(load.values())
    assert [assign_frame(frame, 4, 0.1, "other") for frame in frames] != choices  # the seed matters
    assert all(not assign_frame(frame, 1, 1.0, "seed").double_blind for frame in frames[:50])
    assert all(assign_frame(frame, 2, 1.0, "seed").double_blind for frame in frames[:50])
    with pytest.raises(ImportProblem, match="annotator"):
        assign_frame("f", 0, 0.1, "seed")


def test_settings_are_validated():
    with pytest.raises(SettingError):
        ReviewSettings(double_rate=1.2)
    with pytest.raises(SettingError):
        ReviewSettings(agreement_iou=0.0)
    with pytest.raises(ConfigError, match="QWEN_WORKBENCH_SECRET"):
        WorkbenchSettings.from_env({})
    settings = WorkbenchSettings.from_env(
        {
            "QWEN_WORKBENCH_SECRET": "s" * 40,
            "QWEN_WORKBENCH_SECURE_COOKIES": "0",
            "QWEN_WORKBENCH_MAX_FILE_MB": "2",
            "QWEN_DATABASE_URL": "sqlite:///x.db",
        }
    )
    assert (settings.secure_cookies, settings.max_file_bytes, settings.database_url) == (
        False,
        2 * 1024 * 1024,
        "sqlite:///x.db",
    )
    rooted = WorkbenchSettings.from_env({"QWEN_WORKBENCH_SECRET": "s" * 40, "QWEN_STORAGE_ROOT": "/data/qwen"})
    assert rooted.database_url == "sqlite:////data/qwen/annotations.db"  # the pipeline's default database
    with pytest.raises(ConfigError, match="QWEN_WORKBENCH_SECURE_COOKIES"):
        WorkbenchSettings.from_env({"QWEN_WORKBENCH_SECRET": "s" * 40, "QWEN_WORKBENCH_SECURE_COOKIES": "maybe"})


def test_server_processes_and_their_connections():
    secret = {"QWEN_WORKBENCH_SECRET": "s" * 40}
    single = WorkbenchSettings.from_env(secret)
    assert (single.workers, single.access_log, single.database_connections) == (1, False, 2 * 16)
    several = WorkbenchSettings.from_env(
        {**secret, "QWEN_WORKBENCH_WORKERS": "3", "QWEN_WORKBENCH_THREADS": "8", "QWEN_WORKBENCH_ACCESS_LOG": "1"}
    )
    assert (several.workers, several.access_log, several.database_connections) == (3, True, 3 * 2 * 8)
    with pytest.raises(ConfigError, match="QWEN_WORKBENCH_WORKERS must be between 1 and 64"):
        WorkbenchSettings.from_env({**secret, "QWEN_WORKBENCH_WORKERS": "0"})


# --------------------------------------------------------------------------- security and upload helpers


def test_passwords_and_sessions():
    stored = hash_password("a long passphrase")
    assert stored.startswith("$argon2id$") and verify_password(stored, "a long passphrase")
    assert not verify_password(stored, "a long passphrasE") and not verify_password("garbage", "x")
    assert not needs_rehash(stored)
    signer = SessionSigner("k" * 40, max_age_seconds=60)
    cookie, csrf = signer.dumps(7)
    assert signer.loads(cookie) == {"uid": 7, "gen": 0, "csrf": csrf}
    assert signer.loads(cookie[:-2] + "xx") is None
    assert SessionSigner("other key " * 4, 60).loads(cookie) is None
    assert SessionSigner("k" * 40, max_age_seconds=-1).loads(cookie) is None  # expired


def test_content_disposition_and_names():
    assert parse_disposition(b'form-data; name="files"; filename="..\\..\\evil.png"') == (
        "files",
        "..\\..\\evil.png",
        None,
    )
    assert parse_disposition(b'form-data; name="files"; filename="a%22b%07.png"') == ("files", 'a"b\x07.png', None)
    assert parse_disposition('form-data; name="files"; filename="中文.png"'.encode()) == ("files", "中文.png", None)
    assert parse_disposition(b"form-data; name=\"files\"; filename*=utf-8''%E4%B8%AD.png") == ("files", "中.png", None)
    assert parse_disposition(b'form-data; name="files"; filename="\xff\xfe.png"')[2].startswith("unsafe_name")
    assert parse_disposition(b'form-data; name="note"') == ("note", None, None)
    assert storable_name("_READY") == "file_READY" and storable_name(".hidden.png") == "file.hidden.png"
    assert storable_name("cat.png") == "cat.png"
    from qwen_dataset.store.inbox import BATCH_NAME

    assert BATCH_NAME.match(new_batch_id()) and new_batch_id() != new_batch_id()


# --------------------------------------------------------------------------- migrations


def _schema_drift(engine) -> list:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_migrations_match_the_models_on_sqlite(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "a.db"))
    assert _schema_drift(engine) == []
    make_engine(sqlite_url(tmp_path / "a.db"))  # a second start finds nothing to do
    with engine.connect() as connection:
        current = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    from alembic.script import ScriptDirectory

    from qwen_dataset.db.engine import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current == head and head is not None and head.startswith("00")


@pytest.mark.postgres
def test_migrations_match_the_models_on_postgres(postgres_url):
    engine = make_engine(postgres_url)
    try:
        assert _schema_drift(engine) == []
    finally:
        engine.dispose()


LEGACY_SCHEMA = """
CREATE TABLE human_annotations (
    annotation_id VARCHAR(64) NOT NULL, frame_id VARCHAR(64) NOT NULL, upload_id VARCHAR(64) NOT NULL,
    batch VARCHAR(200) NOT NULL, task VARCHAR(32) NOT NULL, source VARCHAR(16) NOT NULL, author VARCHAR(200) NOT NULL,
    template_version VARCHAR(64) NOT NULL, payload TEXT NOT NULL, state VARCHAR(16) NOT NULL, version INTEGER NOT NULL,
    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, PRIMARY KEY (annotation_id));
CREATE INDEX ix_human_annotations_state ON human_annotations (state);
CREATE INDEX ix_human_annotations_batch ON human_annotations (batch);
CREATE INDEX ix_human_annotations_frame_id ON human_annotations (frame_id);
INSERT INTO human_annotations VALUES ('a1', 'f1', 'u1', 'b1', 'ocr', 'human', 'ann', '', '{"regions": []}', 'final', 3,
                                      '2026-01-01 00:00:00', '2026-01-01 00:00:00');
"""


def test_a_database_made_before_migrations_is_upgraded_in_place(tmp_path):
    path = tmp_path / "legacy.db"
    legacy = sa.create_engine(sqlite_url(path))
    with legacy.begin() as connection:
        for statement in LEGACY_SCHEMA.split(";"):
            if statement.strip():
                connection.execute(sa.text(statement))
    legacy.dispose()
    engine = make_engine(sqlite_url(path))
    assert _schema_drift(engine) == []
    rows = final_annotations(engine, "b1")
    assert rows["annotation_id"].tolist() == ["a1"]
    with Session(engine) as session:
        row = session.get(HumanAnnotation, "a1")
        assert (row.version, row.note, row.item_id) == (3, "", None)


def _database_at(url: str, revision: str) -> sa.Engine:
    """A database migrated only up to ``revision`` (what an older release left behind)."""
    from alembic import command
    from qwen_dataset.db.engine import alembic_config

    engine = make_engine(url, migrate=False)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)
    return engine


OLD_ROWS = """
INSERT INTO users (id, username, password_hash, role, active, created_at) VALUES (1, 'ann', 'x', 'annotator', {true}, '2026-01-01');
INSERT INTO work_items VALUES ('i1', 'b1', 'f1', 'u1', 'ocr', 'image', 10, 10, 'blobs/x', 'a1', 'rapidocr', '1.0', 'ok',
                               '', '{{}}', {false}, 'open', '', '2026-01-01');
INSERT INTO human_annotations (annotation_id, frame_id, upload_id, batch, task, source, author, template_version, payload,
                               state, version, created_at, updated_at, item_id, assignee_id, slot, note)
VALUES ('h1', 'f1', 'u1', 'b1', 'ocr', 'human', 'ann', '1.0', '{{"regions": []}}', 'draft', 4, '2026-01-01', '2026-01-01',
        'i1', 1, NULL, '');
"""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_upgrading_a_populated_database_keeps_its_rows_and_takes_long_versions(backend, tmp_path, request):
    # SQLite copies a table to change a column: work_items is referred to by human_annotations,
    # so the copy has to run with foreign keys off, or the drop of the old table fails.
    url = sqlite_url(tmp_path / "old.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    old = _database_at(url, "0002_workbench")
    booleans = {"true": "1", "false": "0"} if backend == "sqlite" else {"true": "true", "false": "false"}
    with old.begin() as connection:
        for statement in OLD_ROWS.format(**booleans).split(";"):
            if statement.strip():
                connection.execute(sa.text(statement))
    old.dispose()
    engine = make_engine(url)
    try:
        assert _schema_drift(engine) == []
        long_version = "rapidocr-onnxruntime==1.4.4;det=ch_PP-OCRv4_det_infer.onnx;" + "x" * 200
        with Session(engine) as session:
            row = session.get(HumanAnnotation, "h1")
            assert (row.version, row.item_id, row.assignee_id) == (4, "i1", 1)
            row.template_version = long_version
            session.commit()
        with Session(engine) as session:
            assert session.get(HumanAnnotation, "h1").template_version == long_version
        if backend == "sqlite":
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again after migrating
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- the timeline editor's model

TIMELINE_SCENARIO = r"""
const list = new EventList(
  [{start: 2.7, end: 3.9, description: "door opens"}, {start: 0.3, end: 1.1, description: "person enters"}],
  {duration: 6, anchors: [1.2, 2.6, 4.0, 5.1]},
);
const log = {};
log.sorted = list.result().map((e) => e.description);
log.snap = [list.snap(1.25), list.snap(1.5), list.snap(1.25, true), list.snap(-1), list.snap(7), list.snap(5.95)];
const [first, second] = list.events.map((e) => e.id);
log.endAtCut = [list.setEnd(first, 1.25), list.get(first).end];
log.startPastEnd = list.setStart(first, 3.0);
log.endBeforeStart = list.setEnd(first, 0.1);
const half = list.split(second, 3.3);
log.split = list.result();
log.splitOutside = list.split(second, 5.5);
log.merge = [list.mergeWithNext(second), list.result()];
list.setDescription(second, "the door opens");
log.mergeLast = list.mergeWithNext(second);
const added = list.add(5.0);
log.added = list.get(added);
log.addedAtEnd = list.get(list.add(5.95));
log.neighbours = [list.neighbour(first, 1) === second, list.neighbour(first, -1)];
log.anchors = [list.anchorFrom(1.2, 1), list.anchorFrom(1.2, -1), list.anchorFrom(6, 1)];
log.moved = [list.move(first, 0.21, 1.19), list.get(first).start, list.get(first).end, list.move(first, 2, 1)];
log.removed = [list.remove(added), list.remove("nope"), list.result().length];
process.stdout.write(JSON.stringify(log));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run static/timeline_model.js")
def test_the_timeline_model_snaps_splits_merges_and_deletes():
    model = Path(__file__).parents[1] / "qwen_dataset" / "workbench" / "static" / "timeline_model.js"
    script = (
        "const vm = require('vm'); const fs = require('fs');"
        "const context = {process};"
        "vm.runInNewContext(fs.readFileSync(process.argv[1], 'utf8') + '\\n' + fs.readFileSync(0, 'utf8'), context);"
    )
    done = subprocess.run(
        ["node", "-e", script, str(model)], input=TIMELINE_SCENARIO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    log = json.loads(done.stdout)
    assert log["sorted"] == ["person enters", "door opens"]
    assert log["snap"] == [1.2, 1.5, 1.25, 0, 6, 6]
    assert log["endAtCut"] == [True, 1.2]
    assert log["startPastEnd"] is False and log["endBeforeStart"] is False
    assert log["split"] == [
        {"start": 0.3, "end": 1.2, "description": "person enters"},
        {"start": 2.7, "end": 3.3, "description": "door opens"},  # 3.3 is no anchor's neighbour: exact
        {"start": 3.3, "end": 3.9, "description": "door opens"},
    ]
    assert log["splitOutside"] is None
    assert log["merge"][0] is True and len(log["merge"][1]) == 2
    assert log["merge"][1][1] == {"start": 2.7, "end": 3.9, "description": "door opens"}  # one text, not twice
    assert log["mergeLast"] is False  # nothing after the last event
    assert log["added"]["start"] == 5.1 and log["added"]["end"] == 6  # 5.0 snaps to the cut at 5.1
    assert (
        log["addedAtEnd"]["start"] == 5.1 and log["addedAtEnd"]["end"] == 6
    )  # no room after: a second before, snapped
    assert log["neighbours"] == [True, None]
    assert log["anchors"] == [2.6, 0, None]
    assert log["moved"] == [True, 0.21, 1.2, False]  # 0.21 is just out of the snap to 0; crossing ends refused
    assert log["removed"] == [True, False, 3]


# --------------------------------------------------------------------------- the correction tools' results

CORRECTION_SCENARIO = r"""
const rect = (id, x, y, w, h) => ({id, from_name: "bbox", to_name: "image", type: "rectanglelabels",
  value: {x, y, width: w, height: h, rotation: 0, rectanglelabels: ["text"]}});
const text = (id, x, y, w, h, t) => ({id, from_name: "transcription", to_name: "image", type: "textarea",
  value: {x, y, width: w, height: h, rotation: 0, text: [t]}});
const results = [
  rect("r0", 10, 10, 20, 5), text("r0", 10, 10, 20, 5, "Hello"),
  rect("r1", 32, 11, 18, 5), text("r1", 32, 11, 18, 5, "world"),
  rect("r2", 10, 30, 40, 5), text("r2", 10, 30, 40, 5, "one line two"),
];
const log = {};
log.lines = ocrLines(results).map((line) => [line.id, line.text]);
const merged = mergeLines(results, ["r1", "r0"]);
log.merged = ocrLines(merged);
log.mergedCount = merged.length;
log.mergeOne = mergeLines(results, ["r0"]) === results;
const split = splitLine(results, "r2", 8, "r2b");
log.split = ocrLines(split);
log.splitOrder = split.map((r) => r.id);
log.splitBad = splitLine(results, "r2", 0, "x") === results;
const html = [{id: "html", from_name: "html", to_name: "image", type: "textarea", value: {text: ["<p>a</p>"]}}, rect("n0", 0, 0, 100, 100)];
log.html = [htmlOf(html), withoutHtml(html).length, htmlOf(withHtml(html, "<p>b</p>")), withHtml(html, "x").length];
process.stdout.write(JSON.stringify(log));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run static/correction_tools.js")
def test_ocr_lines_merge_and_split_and_the_html_result():
    tools = Path(__file__).parents[1] / "qwen_dataset" / "workbench" / "static" / "correction_tools.js"
    script = (
        "const vm = require('vm'); const fs = require('fs');"
        "vm.runInNewContext(fs.readFileSync(process.argv[1], 'utf8') + '\\n' + fs.readFileSync(0, 'utf8'), {process});"
    )
    done = subprocess.run(
        ["node", "-e", script, str(tools)], input=CORRECTION_SCENARIO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    log = json.loads(done.stdout)
    assert log["lines"] == [["r0", "Hello"], ["r1", "world"], ["r2", "one line two"]]
    # Merged: the first line's id and place, the union of both boxes, the texts in reading order.
    assert log["merged"][0] == {"id": "r0", "text": "Hello world", "x": 10, "y": 10, "width": 40, "height": 6}
    assert [line["id"] for line in log["merged"]] == ["r0", "r2"] and log["mergedCount"] == 4
    assert log["mergeOne"] is True  # one line is nothing to merge
    # Split before character 8 of 12: the box is cut at 8/12 of its width, the new line follows.
    first, second = log["split"][2], log["split"][3]
    assert (first["text"], second["text"]) == ("one line", "two")
    assert first["width"] == pytest.approx(40 * 8 / 12) and second["x"] == pytest.approx(10 + 40 * 8 / 12)
    assert second["x"] + second["width"] == pytest.approx(50) and second["id"] == "r2b"
    assert log["splitOrder"] == ["r0", "r0", "r1", "r1", "r2", "r2", "r2b", "r2b"]
    assert log["splitBad"] is True
    assert log["html"] == ["<p>a</p>", 1, "<p>b</p>", 2]
