import os

from qwen_dataset.store.inbox import mark_ready, scan_inbox


def test_ready_by_marker_or_quiet_period(tmp_path):
    for name in ("marked", "settled", "busy", "bad name!", "empty"):
        (tmp_path / name).mkdir()
    (tmp_path / "marked" / "a.png").write_bytes(b"x")
    mark_ready(tmp_path / "marked")
    (tmp_path / "settled" / "a.png").write_bytes(b"x")
    os.utime(tmp_path / "settled" / "a.png", (1000, 1000))
    (tmp_path / "busy" / "a.png").write_bytes(b"x")
    scan = scan_inbox(tmp_path, settle_seconds=60, now=os.path.getmtime(tmp_path / "busy" / "a.png") + 5)
    assert scan.ready == ["marked", "settled"]
    assert scan.waiting == ["busy", "empty"]
    assert scan.invalid == ["bad name!"]


def test_missing_inbox_is_empty(tmp_path):
    assert scan_inbox(tmp_path / "nope").ready == []
