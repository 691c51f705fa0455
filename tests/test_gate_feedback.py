"""Quality a team can act on: gate statuses and plain-words messages, intervals, waivers in the
release card, more double-blind sampling, and the small operator-facing items."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy.orm import Session

from qwen_dataset.quality.gates import Waiver, decide
from qwen_dataset.quality.intervals import bootstrap_ratio_interval, wilson_interval

TARGETS = {"mean_iou": 0.85, "ocr_accuracy": 0.95, "action_completeness": 0.9, "semantic_consistency": 0.75}
MINIMUM = {"mean_iou": 5, "ocr_accuracy": 5, "action_completeness": 5, "semantic_consistency": 5}
EVIDENCE = {
    "ocr_accuracy": [
        {
            "frame_id": "f" * 16,
            "task": "ocr",
            "annotators": ["alice", "bob"],
            "value": 0.42,
            "detail": "58 character errors over 100 characters",
            "name": "screen_2_search.png",
        }
    ]
}


def _row(**values):
    row = {"batch": "b1", "evidence": json.dumps(EVIDENCE)}
    for name in TARGETS:
        row[name] = values.get(name)
        row[f"{name}_sample"] = values.get(f"{name}_sample", 10)
    return row


def test_each_figure_gets_a_status_and_only_a_failure_blocks():
    decision = decide(
        _row(mean_iou=0.9, ocr_accuracy=0.8, semantic_consistency=0.2, semantic_consistency_sample=3),
        TARGETS,
        MINIMUM,
    )
    assert decision.statuses() == {
        "mean_iou": "pass",
        "ocr_accuracy": "fail",
        "action_completeness": "no data",
        "semantic_consistency": "insufficient sample",
    }
    assert decision.blocking
    # GX decided the target: its suite saw the gated figures and failed on the one below target.
    assert [outcome.column for outcome in decision.suite.failures] == ["ocr_accuracy"]
    message = decision.message("http://wb.example")
    assert "ocr_accuracy is 0.800 over 10 double-blind OCR frames; the target is above 0.95" in message
    assert "screen_2_search.png (ocr): alice vs bob 0.420" in message
    assert "http://wb.example/review/items/" in message
    assert "double-blind b1 --annotator alice --annotator bob" in message and "waive b1 ocr_accuracy" in message
    assert "insufficient sample" in message and "expect_column" not in message
    assert sum("FAILED" in line for line in decision.summary_lines()) == 1


def test_a_waiver_turns_a_failure_into_a_warning_and_only_for_its_batch_and_figure():
    waiver = Waiver("b1", "ocr_accuracy", "client accepts", "ada", "2026-12-03T10:00:00+00:00", 0.8, 0.95)
    decision = decide(_row(ocr_accuracy=0.8), TARGETS, MINIMUM, [waiver])
    assert decision.statuses()["ocr_accuracy"] == "waived" and not decision.blocking
    assert "waived by ada" in decision.summary_lines()[0]
    other = decide({**_row(ocr_accuracy=0.8), "batch": "b2"}, TARGETS, MINIMUM, [waiver])
    assert other.blocking


def test_intervals():
    assert wilson_interval(9, 10) == pytest.approx((0.5958, 0.9821), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = bootstrap_ratio_interval([9, 1, 1, 0], [10, 1, 1, 1])
    assert low <= 11 / 13 <= high and bootstrap_ratio_interval([9, 1, 1, 0], [10, 1, 1, 1]) == (low, high)
    assert bootstrap_ratio_interval([], []) is None


def test_the_card_says_plainly_when_a_batch_went_in_under_a_waiver(tmp_path):
    from qwen_dataset.release.assemble import assemble_release
    from qwen_dataset.store.blobs import BlobStore
    from tests.test_release import two_batches

    store = BlobStore(tmp_path / "blobs")
    waiver = {
        "batch": "b1",
        "figure": "ocr_accuracy",
        "reason": "one page; accepted by the client",
        "waived_by": "ada",
        "waived_at": "2026-12-03T10:00:00+00:00",
        "value": 0.84,
        "target": 0.95,
    }
    quality = {
        "targets": TARGETS,
        "min_sample": MINIMUM,
        "statuses": {"b1": {"ocr_accuracy": "waived"}, "b2": {"ocr_accuracy": "pass"}},
        "waivers": [waiver],
    }
    info = assemble_release(two_batches(store), tmp_path / "r", qc={}, quality=quality, blobs=store)
    card = (info.path / "README.md").read_text()
    assert "passed their quality gates" not in card.split("## Contents")[0].replace("Not every batch passed its", "")
    assert "Not every batch passed its quality gates" in card and "one page; accepted by the client" in card
    assert "| ocr_accuracy | > 0.95 | 5 |" in card
    recorded = json.loads((info.path / "release.json").read_text())["quality"]
    assert recorded["waivers"] == [waiver] and recorded["targets"] == TARGETS


def test_more_double_blind_sampling_for_the_annotators_concerned(tmp_path):
    from qwen_dataset.db.engine import make_engine, sqlite_url
    from qwen_dataset.db.models import HumanAnnotation, ItemStatus, ReviewState, Role, User, WorkItem
    from qwen_dataset.workbench.resample import sample_double_blind

    engine = make_engine(sqlite_url(tmp_path / "db.sqlite"))
    with Session(engine) as session:
        users = [User(username=name, password_hash="x", role=Role.ANNOTATOR, active=True) for name in ("al", "bo")]
        session.add_all(users)
        session.flush()
        for n in range(4):
            session.add(
                WorkItem(
                    item_id=f"i{n}",
                    batch="b1",
                    frame_id=f"f{n}",
                    upload_id="u",
                    task="ocr",
                    kind="image",
                    width=10,
                    height=10,
                    blob_uri="blobs/x",
                    ai_payload="{}",
                    status=ItemStatus.FINAL,
                )
            )
        session.flush()
        for n in range(4):
            session.add(
                HumanAnnotation(
                    annotation_id=f"a{n}",
                    frame_id=f"f{n}",
                    upload_id="u",
                    batch="b1",
                    task="ocr",
                    author="al",
                    payload="{}",
                    state=ReviewState.FINAL,
                    item_id=f"i{n}",
                    assignee_id=users[0].id,
                )
            )
        session.flush()
        summary = sample_double_blind(session, "b1", ["al"], items=2)
        session.commit()
        assert summary.per_annotator == {"al": 2} and summary.second_annotators == {"bo": 2}
        doubled = session.query(WorkItem).filter(WorkItem.double_blind.is_(True)).all()
        assert len(doubled) == 2 and all(item.status == ItemStatus.OPEN for item in doubled)
        drafts = session.query(HumanAnnotation).filter(HumanAnnotation.state == ReviewState.DRAFT).all()
        assert {(row.assignee_id, row.slot) for row in drafts} == {(users[1].id, 2)}
        # What was final stays final (and exported) until the second version is in.
        assert session.query(HumanAnnotation).filter(HumanAnnotation.state == ReviewState.FINAL).count() == 4
    engine.dispose()


def test_gate_failures_keep_one_line_in_the_terminal():
    from assets.logs import GateTraceFilter

    record = logging.LogRecord(
        "x",
        logging.ERROR,
        "",
        0,
        "Steps failed.\ndagster._core.errors.DagsterAssetCheckFailedError: ...\nStack Trace:\n  File",
        (),
        None,
    )
    GateTraceFilter().filter(record)
    assert "\n" not in record.getMessage() and "blocking gate failed" in record.getMessage()
    other = logging.LogRecord("x", logging.ERROR, "", 0, "a real crash\nTraceback", (), None)
    GateTraceFilter().filter(other)
    assert other.getMessage() == "a real crash\nTraceback"


def test_create_user_asks_for_the_password_twice(monkeypatch, tmp_path, capsys):
    from qwen_dataset.workbench import __main__ as cli

    monkeypatch.delenv("QWEN_WORKBENCH_PASSWORD", raising=False)
    monkeypatch.setenv("QWEN_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    answers = iter(["correct horse battery", "correct horse batterx"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: next(answers))
    assert cli.main(["create-user", "ada", "--role", "admin"]) == 1
    assert "the two passwords differ" in capsys.readouterr().err
    answers = iter(["correct horse battery staple"] * 2)
    assert cli.main(["create-user", "ada", "--role", "admin"]) == 0


def test_asset_descriptions_keep_their_placeholders_for_the_ui():
    from assets.export import exports
    from assets.ingest import raw_uploads

    for asset in (exports, raw_uploads):
        description = next(iter(asset.descriptions_by_key.values()))
        assert "`" in description and "<batch>" in description.split("`")[1]


def test_waive_from_the_command_line_checks_the_admin_and_the_report(monkeypatch, tmp_path, capsys):
    from qwen_dataset.workbench import __main__ as cli

    root = tmp_path / "store"
    (root / "exports" / "reports").mkdir(parents=True)
    report = {
        "statuses": {"mean_iou": "pass", "ocr_accuracy": "fail"},
        "headline": {"mean_iou": 0.9, "ocr_accuracy": 0.84},
        "targets": {"mean_iou": 0.85, "ocr_accuracy": 0.95},
    }
    (root / "exports" / "reports" / "b1.json").write_text(json.dumps(report))
    monkeypatch.setenv("QWEN_STORAGE_ROOT", str(root))
    monkeypatch.setenv("QWEN_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("QWEN_WORKBENCH_PASSWORD", "correct horse battery staple")
    assert cli.main(["create-user", "ada", "--role", "admin"]) == 0
    reason = ["--reason", "one page of a scanned fax; accepted"]
    assert cli.main(["waive", "b1", "mean_iou", "--admin", "ada", *reason]) == 1  # passing: nothing to waive
    monkeypatch.setenv("QWEN_WORKBENCH_PASSWORD", "not the password")
    assert cli.main(["waive", "b1", "ocr_accuracy", "--admin", "ada", *reason]) == 1
    monkeypatch.setenv("QWEN_WORKBENCH_PASSWORD", "correct horse battery staple")
    assert cli.main(["waive", "b1", "ocr_accuracy", "--admin", "ada", *reason]) == 0
    capsys.readouterr()
    assert cli.main(["waivers", "b1"]) == 0
    listed = capsys.readouterr().out
    assert "ocr_accuracy\t0.84\t> 0.95\tada" in listed and "scanned fax" in listed
    assert cli.main(["revoke-waiver", "b1", "ocr_accuracy", "--admin", "ada"]) == 0
    capsys.readouterr()
    cli.main(["waivers", "b1"])
    assert "no active waiver" in capsys.readouterr().out
