"""Code fidelity: HTML rendered in real headless Chromium, compared by SSIM and RapidOCR text recall.

Chromium must be installed (CI: ``apt-get install -y chromium``); without it these tests fail with
the scorer's message rather than skip.
"""

from __future__ import annotations

import http.server
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from qwen_dataset.quality.code_fidelity import (
    CHROMIUM_PATH_ENV,
    ChromiumNotFoundError,
    CodeFidelityScorer,
    CodeRenderError,
    png_to_rgb,
    resolve_chromium_path,
    ssim,
    text_found,
    text_recall,
)

WIDTH, HEIGHT = 480, 240
LOGIN_PAGE = """<!doctype html><html><body style="margin:0;background:#fff;font-family:sans-serif">
<div style="padding:20px"><h1 style="font-size:34px;margin:0 0 14px">Sign in to Dataset</h1>
<p style="font-size:26px;margin:0 0 12px">提交审核</p>
<button style="font-size:24px;padding:8px 20px">Continue</button></div></body></html>"""
LOGIN_TEXTS = ["Sign in to Dataset", "提交审核", "Continue"]
REPORT_PAGE = """<!doctype html><html><body style="margin:0;background:#223;color:#eee;font-family:serif">
<ul style="font-size:20px;margin:120px 0 0 220px"><li>Quarterly revenue</li><li>Export settings</li></ul>
</body></html>"""


@pytest.fixture(scope="module")
def scorer():
    with CodeFidelityScorer() as started:
        yield started


@pytest.fixture(scope="module")
def login_screenshot(scorer) -> np.ndarray:
    png, _ = scorer.render(LOGIN_PAGE, WIDTH, HEIGHT)
    return png_to_rgb(png)


# -- SSIM -----------------------------------------------------------------------------------------


def _ssim_by_explicit_windows(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s SSIM pixel by pixel with an explicit 11x11 Gaussian window (inner pixels only)."""
    offsets = np.arange(-5, 6)
    kernel_1d = np.exp(-0.5 * (offsets / 1.5) ** 2)
    window = np.outer(kernel_1d, kernel_1d)
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for y in range(5, a.shape[0] - 5):
        for x in range(5, a.shape[1] - 5):
            pa, pb = a[y - 5 : y + 6, x - 5 : x + 6], b[y - 5 : y + 6, x - 5 : x + 6]
            mean_a, mean_b = (window * pa).sum(), (window * pb).sum()
            var_a = (window * (pa - mean_a) ** 2).sum()
            var_b = (window * (pb - mean_b) ** 2).sum()
            cov = (window * (pa - mean_a) * (pb - mean_b)).sum()
            values.append(
                ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
            )
    return float(np.mean(values))


def test_ssim_matches_the_windowed_definition():
    rng = np.random.default_rng(7)
    a = gaussian_filter(rng.uniform(0, 255, (24, 30)), 1.0)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    assert ssim(a, b) == pytest.approx(_ssim_by_explicit_windows(a, b), abs=1e-9)
    assert ssim(a, b) < 0.95


def test_ssim_of_identical_images_is_one_and_rgb_uses_luma():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert ssim(rgb, rgb) == pytest.approx(1.0)
    luma = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert ssim(rgb, np.full_like(luma, 128.0)) == pytest.approx(ssim(luma, np.full_like(luma, 128.0)))


def test_ssim_rejects_images_of_different_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        ssim(np.zeros((10, 12)), np.zeros((12, 10)))


# -- text recall ----------------------------------------------------------------------------------


def test_text_found_is_fuzzy_case_and_space_insensitive():
    assert text_found("signintodataset", "xxsignintodatasetyy")
    assert text_recall(["Sign In"], ["SIGN IN", "other"])[0] == 1.0
    assert text_recall(["Continue"], ["Contimue"])[0] == 1.0  # one OCR slip in 8 characters
    assert text_recall(["Continue"], ["Cancel"])[0] == 0.0


def test_text_recall_counts_missing_texts_and_ignores_empty_ones():
    recall, missing, count = text_recall(["Save", "Delete project", "  ", "提交审核"], ["Save", "提交 审核"])
    assert (recall, missing, count) == (pytest.approx(2 / 3), ("Delete project",), 3)
    assert text_recall([], ["anything"]) == (1.0, (), 0)


def test_a_short_rendering_does_not_contain_a_long_reference():
    # partial_ratio would align "Sign" inside "Sign in to Dataset" and call it a full match.
    assert not text_found("signintodataset", "sign")


# -- rendering ------------------------------------------------------------------------------------


def test_same_html_reproduces_its_screenshot(scorer, login_screenshot):
    assert login_screenshot.shape == (HEIGHT, WIDTH, 3)
    result = scorer.score(LOGIN_PAGE, login_screenshot, LOGIN_TEXTS)
    assert result.ssim == pytest.approx(1.0, abs=1e-6)
    assert result.text_recall == 1.0 and result.missing_texts == ()
    assert result.reference_count == 3
    np.testing.assert_array_equal(png_to_rgb(result.rendered_png), login_screenshot)


def test_different_html_scores_clearly_lower(scorer, login_screenshot):
    result = scorer.score(REPORT_PAGE, login_screenshot, LOGIN_TEXTS)
    assert result.ssim < 0.6
    assert result.text_recall == 0.0
    assert set(result.missing_texts) == set(LOGIN_TEXTS)
    assert result.to_metadata()["missing_texts"] == 3


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_network_requests_are_blocked(scorer):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tracker.png"
        html = (
            f'<body><img src="{url}"><link rel="stylesheet" href="{url}?css">'
            '<img src="data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///ywAAAAAAQABAAACAUwAOw=="></body>'
        )
        png, blocked = scorer.render(html, 200, 100)
    finally:
        server.shutdown()
        server.server_close()
    assert set(blocked) == {url, f"{url}?css"}
    assert _CountingHandler.requests == []
    assert png_to_rgb(png).shape == (100, 200, 3)


def test_a_page_that_hangs_fails_alone(scorer, login_screenshot, monkeypatch):
    monkeypatch.setattr(scorer, "javascript", True)
    monkeypatch.setattr(scorer, "timeout_ms", 1000)
    with pytest.raises(CodeRenderError, match="could not render"):
        scorer.render("<body><script>while (true) {}</script></body>", 100, 100)
    # The browser is still usable for the next item.
    png, _ = scorer.render(LOGIN_PAGE, WIDTH, HEIGHT)
    np.testing.assert_array_equal(png_to_rgb(png), login_screenshot)


def test_scripts_are_off_by_default(scorer):
    png_with_script, _ = scorer.render('<body><script>document.body.style.background = "black"</script></body>', 50, 50)
    assert png_to_rgb(png_with_script).min() == 255  # still white


def test_screenshot_must_be_rgb(scorer):
    with pytest.raises(ValueError, match=r"\[H, W, 3\] RGB"):
        scorer.score(LOGIN_PAGE, np.zeros((10, 10, 4), dtype=np.uint8), [])


# -- Chromium discovery -----------------------------------------------------------------------------


def test_missing_chromium_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv(CHROMIUM_PATH_ENV, str(tmp_path / "no-chromium"))
    with pytest.raises(ChromiumNotFoundError, match=r"apt-get install -y chromium.*QWEN_CHROMIUM_PATH"):
        resolve_chromium_path()
    with pytest.raises(ChromiumNotFoundError, match="chromium_path argument"):
        CodeFidelityScorer(chromium_path=tmp_path / "nothing").start()


def test_chromium_path_comes_from_the_environment(tmp_path, monkeypatch):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv(CHROMIUM_PATH_ENV, str(fake))
    assert resolve_chromium_path() == fake
    # A file that is not a working browser fails at launch, with the same kind of message. (In a
    # worker thread: the module's scorer already holds this thread's Playwright.)
    with ThreadPoolExecutor(max_workers=1) as worker:
        with pytest.raises(ChromiumNotFoundError, match="would not start"):
            worker.submit(CodeFidelityScorer().start).result()


def test_a_second_scorer_in_the_same_thread_is_refused_clearly(scorer):
    second = CodeFidelityScorer()
    with pytest.raises(RuntimeError, match="one running instance per thread"):
        second.start()
    assert scorer.render("<p>still here</p>", 50, 50)[0].startswith(b"\x89PNG")
