"""Every script in benchmarks/ imports and runs at a tiny size, so none breaks silently again.

Each script runs in its own interpreter (they start servers, fork children and set environment
variables) as ``import benchmarks.<name>`` followed by its ``main()`` with tiny arguments. A new
script in benchmarks/ without an entry in :data:`TINY` fails :func:`test_every_benchmark_has_a_tiny_run`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
TIMEOUT_S = 900

# script -> (tiny arguments, whether it takes more than a few seconds there)
TINY: dict[str, tuple[list[str], bool]] = {
    "bench_augment": (["--images", "2", "--rounds", "1", "--pipelines", "geometric"], True),
    "bench_augment_geometry": (["--seeds", "2"], True),
    "bench_dagster_overhead": (
        ["--runs", "1", "--multiprocess-runs", "0", "--run-worker-runs", "1", "--imports", "1", "--cold-runs", "1"]
        + ["--existing", "1", "--no-warmup"]
        + ["--images", "1"]
        + ["--no-postgres"],
        True,
    ),
    "bench_frames": (
        ["--seconds", "1", "--height", "144", "--rate", "10", "--rounds", "1", "--long-minutes", "0.05"]
        + ["--long-height", "144"],
        True,
    ),
    "bench_object_storage": (["--rounds", "1", "--blob-mb", "1", "--files", "2"], True),
    "bench_ocr": (["--images", "1", "--rounds", "1", "--workers", "1", "--skip-overhead"], True),
    "bench_quality": (
        ["--frames", "50", "--baseline-frames", "20", "--pairs", "200", "--repeats", "1", "--gate-batches", "20,60"],
        False,
    ),
    "bench_release": (["--sizes", "1,2", "--images", "1", "--augment", ""], True),
    "bench_vllm_client": (
        ["--frames", "4", "--concurrency", "2", "--latency", "0.01", "--rounds", "1", "--skip-downscale"],
        False,
    ),
    "draft_pdf_truth": (["{pdf}", "0", "--dpi", "72"], False),
    "eval_default_engines": (["--files", "3", "--threads", "1"], True),
    "eval_ocr_engines": (["--only", "rapidocr-onnxruntime", "--frames", "1", "--threads", "1"], True),
}


#: Scripts whose tiny run is a test of its own (it checks more than that figures are printed).
OWN_TESTS = {"bench_exports": "test_bench_exports.py", "bench_workbench": "test_bench_workbench.py"}


def scripts() -> list[str]:
    return sorted(path.stem for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))


def test_every_benchmark_has_a_tiny_run():
    assert scripts() == sorted([*TINY, *OWN_TESTS]), "give each script in benchmarks/ a tiny run in TINY"
    assert all((REPO / "tests" / test).is_file() for test in OWN_TESTS.values())


def one_page_pdf(folder: Path, text: str = "Hello tiny page") -> Path:
    """A PDF page with one line in its text layer (Helvetica), what draft_pdf_truth.py reads."""
    content = f"BT /F1 24 Tf 20 40 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 100] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path = folder / "page.pdf"
    path.write_bytes(bytes(pdf))
    return path


def run_tiny(name: str, tmp_path: Path) -> str:
    arguments = [argument.replace("{pdf}", str(one_page_pdf(tmp_path))) for argument in TINY[name][0]]
    code = (
        "import sys\n"
        f"import benchmarks.{name} as script\n"
        f"sys.argv = [script.__file__, *{arguments!r}]\n"
        "status = script.main()\n"
        "sys.exit(status if isinstance(status, int) else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "GX_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("QWEN_STORAGE_ROOT", None)  # each benchmark makes its own
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"benchmarks/{name}.py {' '.join(arguments)} failed:\n{output[-6000:]}"
    return done.stdout


def tiny_params():
    return [pytest.param(name, marks=[pytest.mark.slow] if slow else [], id=name) for name, (_, slow) in TINY.items()]


@pytest.mark.parametrize("name", tiny_params())
def test_a_benchmark_runs_at_a_tiny_size_and_prints_figures(name, tmp_path):
    printed = run_tiny(name, tmp_path)
    assert re.search(r"\d+\.\d+", printed), f"benchmarks/{name}.py printed no figure:\n{printed[-3000:]}"
