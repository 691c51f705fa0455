"""benchmarks/bench_exports.py runs, at a tiny size, and measures every format against its floor."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_exports.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_exports", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_the_export_benchmark_measures_every_format_at_two_sizes(capsys, tmp_path) -> None:
    bench = _bench()
    results = bench.main(["--samples", "12,24", "--boxes", "3", "--rounds", "1", "--keep", str(tmp_path)])
    assert set(results) == {12, 24}
    for by_format in results.values():
        assert set(by_format) == set(bench.FORMATS)
        for result in by_format.values():
            assert result.ours > 0 and result.floor > 0 and result.size > 0
    out = capsys.readouterr().out
    assert "summary: ours / floor" in out
    # One line per format and size as it finishes, then one per format in the summary.
    assert sum(line.startswith("label_studio") for line in out.splitlines()) == 3
    # A floor writes the same content again.
    kept = tmp_path / "24"
    for name, floor in (("coco.out", bench._document_floor), ("qwen_jsonl.out", bench._jsonl_floor)):
        floor(kept / name)(tmp_path / "again")
        assert _parsed(tmp_path / "again") == _parsed(kept / name)


def _parsed(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)  # one document
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines()]  # JSON lines
