"""Code fidelity of ``image_to_code`` items: render the HTML/CSS and compare it with the screenshot.

Two figures per item:

* **SSIM** (Wang et al. 2004) of the rendering against the source screenshot, both in grayscale
  (ITU-R BT.601 luma, as Pillow's ``"L"`` mode), with an 11x11 Gaussian window (sigma 1.5), K1 =
  0.01, K2 = 0.03, data range 255, averaged over the pixels whose window lies inside the image.
  Computed with separable Gaussian filters (scipy), no extra dependency.
* **Text recall**: the share of the screenshot's region texts (the ``ocr`` regions of the source
  frame, passed in as ``reference_texts``) that RapidOCR finds in the rendering. Texts are compared
  after :func:`qwen_dataset.text.strip_whitespace` (NFKC, whitespace removed) and case folding
  (OCR confuses case, and letter case is not what this checks); a reference text counts as found
  when its best-matching stretch of the rendering's text (all OCR lines in reading order, joined)
  has a rapidfuzz similarity of at least ``match_threshold`` (0.8). An item without reference texts
  has recall 1.0 (nothing to miss) and ``reference_count`` 0, so an aggregate can weigh it out.

The HTML is rendered by headless Chromium (the Debian ``chromium`` package, driven by the
``playwright`` package's bundled driver; Playwright's own browser download is never used) at the
screenshot's size, device scale 1. The HTML is untrusted model output, so it never reaches the
network: every request except ``data:`` URLs is aborted in a route handler (and listed in
``blocked_requests``), WebSockets and service workers are refused, and JavaScript is off by default
(the target is HTML/CSS; a page that needs a script to lay itself out can turn it on). Each item
gets a fresh browser context (no cookies, storage or timers carried from one item to the next);
the browser itself is started once per :class:`CodeFidelityScorer` and reused. Chromium sees the
system's fonts plus the project's Noto Sans CJK (:func:`write_fontconfig`), so Chinese pages render
as text rather than boxes.

Playwright's sync API is bound to the thread that started it and allows one running instance per
thread: use one scorer per thread (a second one started in the same thread fails with a clear
error), outside any running asyncio loop.

Usage::

    with CodeFidelityScorer() as scorer:
        for html, screenshot_rgb, texts in items:
            result = scorer.score(html, screenshot_rgb, texts)
            result.ssim, result.text_recall
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from rapidfuzz import fuzz
from scipy.ndimage import gaussian_filter

from qwen_dataset.payloads import iter_boxes
from qwen_dataset.prelabel.rapidocr_backend import RapidOcrBackend, regions_from_result
from qwen_dataset.text import strip_whitespace

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright, Route

CHROMIUM_PATH_ENV = "QWEN_CHROMIUM_PATH"
DEFAULT_CHROMIUM_PATH = "/usr/bin/chromium"
# Headless, and nothing the browser would fetch on its own (updates, sync, field trials, QUIC probes).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)

MATCH_THRESHOLD = 0.8
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # window radius int(3.5 * 1.5 + 0.5) = 5: the 11x11 window of Wang et al.
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 255.0
MAX_SIDE = 16384  # Chromium cannot paint a larger viewport in one piece
SYSTEM_FONTCONFIG = "/etc/fonts/fonts.conf"


class ChromiumNotFoundError(RuntimeError):
    """Headless Chromium is missing or would not start."""


class CodeRenderError(RuntimeError):
    """One item's HTML could not be rendered (timeout, crash); other items can still be scored."""


@dataclasses.dataclass(frozen=True)
class CodeFidelity:
    """How closely one item's HTML reproduces its screenshot."""

    ssim: float
    text_recall: float
    rendered_png: bytes = dataclasses.field(repr=False)
    reference_count: int = 0
    missing_texts: tuple[str, ...] = ()
    blocked_requests: tuple[str, ...] = ()

    def to_metadata(self) -> dict[str, Any]:
        """Plain numbers for asset metadata or JSON (the PNG is left out)."""
        return {
            "ssim": self.ssim,
            "text_recall": self.text_recall,
            "reference_texts": self.reference_count,
            "missing_texts": len(self.missing_texts),
            "blocked_requests": len(self.blocked_requests),
        }


# --------------------------------------------------------------------------------------------
# Image comparison


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an ``[H, W, 3]`` RGB image as float64; a ``[H, W]`` image is taken as gray already."""
    array = np.asarray(image)
    if array.ndim == 2:
        return array.astype(np.float64)
    if array.ndim == 3 and array.shape[2] == 3:
        return array.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    raise ValueError(f"expected an [H, W, 3] RGB or [H, W] grayscale image, got an array of shape {array.shape}")


def ssim(image_a: np.ndarray, image_b: np.ndarray) -> float:
    """Mean structural similarity of two images of the same size (RGB is converted to grayscale).

    1.0 for identical images; see the module docstring for the parameters.
    """
    gray_a, gray_b = to_grayscale(image_a), to_grayscale(image_b)
    if gray_a.shape != gray_b.shape:
        raise ValueError(f"images differ in size: {gray_a.shape[::-1]} vs {gray_b.shape[::-1]} (width, height)")

    def local_mean(values: np.ndarray) -> np.ndarray:
        return gaussian_filter(values, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    mean_a, mean_b = local_mean(gray_a), local_mean(gray_b)
    var_a = local_mean(gray_a * gray_a) - mean_a * mean_a
    var_b = local_mean(gray_b * gray_b) - mean_b * mean_b
    covariance = local_mean(gray_a * gray_b) - mean_a * mean_b
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / (
        (mean_a * mean_a + mean_b * mean_b + c1) * (var_a + var_b + c2)
    )
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    # Border pixels see a mirrored window; leave them out when the image is large enough.
    if min(ssim_map.shape) > 2 * radius:
        ssim_map = ssim_map[radius:-radius, radius:-radius]
    return float(ssim_map.mean())


# --------------------------------------------------------------------------------------------
# Text recall


def normalize_for_matching(text: str) -> str:
    """NFKC, whitespace removed, case folded."""
    # Presence, not spacing, is asked here: the rendering wraps and spaces text its own way.
    return strip_whitespace(text).casefold()


def text_found(reference: str, haystack: str, threshold: float = MATCH_THRESHOLD) -> bool:
    """Whether normalised ``reference`` occurs in normalised ``haystack`` with similarity >= ``threshold``.

    The best-aligned stretch of the haystack counts (rapidfuzz ``partial_ratio``); a haystack shorter
    than the reference is compared whole, so a short rendering cannot "contain" a long text.
    """
    if not reference:
        return True
    if len(haystack) < len(reference):
        similarity = fuzz.ratio(reference, haystack)
    else:
        similarity = fuzz.partial_ratio(reference, haystack)
    return similarity >= threshold * 100.0


def text_recall(
    reference_texts: Sequence[str], rendered_texts: Sequence[str], threshold: float = MATCH_THRESHOLD
) -> tuple[float, tuple[str, ...], int]:
    """Share of ``reference_texts`` found in ``rendered_texts`` (OCR lines in reading order).

    Returns ``(recall, missing reference texts, number of non-empty reference texts)``; recall is
    1.0 when there is no non-empty reference text.
    """
    haystack = "".join(normalize_for_matching(text) for text in rendered_texts)
    references = [(text, normalize_for_matching(text)) for text in reference_texts]
    references = [(text, normalized) for text, normalized in references if normalized]
    if not references:
        return 1.0, (), 0
    missing = tuple(text for text, normalized in references if not text_found(normalized, haystack, threshold))
    return 1.0 - len(missing) / len(references), missing, len(references)


# --------------------------------------------------------------------------------------------
# Rendering


def resolve_chromium_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The Chromium executable to launch.

    ``explicit``, else ``$QWEN_CHROMIUM_PATH``, else /usr/bin/chromium, else ``chromium`` on PATH.
    """
    if explicit is not None:
        candidate, origin = Path(explicit), "the chromium_path argument"
    elif os.environ.get(CHROMIUM_PATH_ENV):
        candidate, origin = Path(os.environ[CHROMIUM_PATH_ENV]), f"${CHROMIUM_PATH_ENV}"
    else:
        on_path = shutil.which("chromium")
        candidate = Path(DEFAULT_CHROMIUM_PATH if Path(DEFAULT_CHROMIUM_PATH).exists() or not on_path else on_path)
        origin = "the default location"
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        raise ChromiumNotFoundError(
            f"headless Chromium was not found at {candidate} ({origin}); code fidelity renders HTML with it: "
            f"install it (apt-get install -y chromium) or set {CHROMIUM_PATH_ENV} to a Chromium executable"
        )
    return candidate


def write_fontconfig(folder: Path) -> Path:
    """A fontconfig file in ``folder``: the system's fonts plus the project's Noto Sans CJK.

    Debian's chromium pulls in Latin fonts only; without a CJK font every Han character renders
    as a box and a Chinese page could never be read back. The font comes from the
    ``cvttf-NotoSansCJK-Regular`` package the sample generator already uses, so no system font
    package is needed.
    """
    from qwen_dataset.samples.drawing import cjk_font_path

    font_dir = cjk_font_path().parent
    config = folder / "fonts.conf"
    config.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n<fontconfig>\n'
        f'  <include ignore_missing="yes">{SYSTEM_FONTCONFIG}</include>\n'
        f"  <dir>{_xml_escape(str(font_dir))}</dir>\n"
        f"  <cachedir>{_xml_escape(str(folder / 'cache'))}</cachedir>\n"
        "</fontconfig>\n",
        encoding="utf-8",
    )
    return config


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _check_screenshot(screenshot_rgb: np.ndarray) -> tuple[int, int]:
    array = np.asarray(screenshot_rgb)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"screenshot_rgb must be an [H, W, 3] RGB array, got shape {array.shape}")
    height, width = array.shape[:2]
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"screenshot size {width}x{height} is outside 1..{MAX_SIDE} pixels per side")
    return width, height


def png_to_rgb(png: bytes) -> np.ndarray:
    """Decode PNG bytes to an ``[H, W, 3]`` uint8 RGB array."""
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def _start_playwright(sync_playwright: Any) -> Playwright:
    try:
        return sync_playwright().start()
    except Exception as exc:
        raise RuntimeError(
            f"could not start Playwright in this thread ({type(exc).__name__}: {exc}); its sync API allows "
            "one running instance per thread and none inside a running asyncio loop: reuse one "
            "CodeFidelityScorer per thread, or run it in a worker thread"
        ) from exc


class CodeFidelityScorer:
    """Renders HTML in headless Chromium and scores it against the source screenshot.

    A context manager: entering starts the browser (once), leaving closes it.

    Args:
        chromium_path: the Chromium executable; default ``$QWEN_CHROMIUM_PATH`` or /usr/bin/chromium.
        ocr_backend: the RapidOCR backend that reads the rendering; pass one to share its engine.
        match_threshold: fuzzy similarity (0-1) at which a reference text counts as found.
        javascript: let the page's scripts run (off: the item is HTML/CSS).
        timeout_ms: how long one page may take to load before the item fails.
    """

    def __init__(
        self,
        chromium_path: str | os.PathLike[str] | None = None,
        ocr_backend: RapidOcrBackend | None = None,
        match_threshold: float = MATCH_THRESHOLD,
        javascript: bool = False,
        timeout_ms: float = 15_000,
    ) -> None:
        if not 0.0 <= float(match_threshold) <= 1.0:
            raise ValueError(f"match_threshold must be between 0 and 1, got {match_threshold!r}")
        if float(timeout_ms) <= 0:
            raise ValueError(f"timeout_ms must be positive, got {timeout_ms!r}")
        self._chromium_path = chromium_path
        self.ocr_backend = ocr_backend if ocr_backend is not None else RapidOcrBackend()
        self.match_threshold = float(match_threshold)
        self.javascript = bool(javascript)
        self.timeout_ms = float(timeout_ms)
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._font_dir: tempfile.TemporaryDirectory[str] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> CodeFidelityScorer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Launch the browser (a second call does nothing)."""
        if self._browser is not None:
            return
        executable = resolve_chromium_path(self._chromium_path)
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            raise RuntimeError(
                "the playwright package is not installed; install the project's pinned dependencies (pip install -e .)"
            ) from exc
        self._font_dir = tempfile.TemporaryDirectory(prefix="qwen-chromium-fonts-")
        try:
            # Typed as launch() takes it (values may also be numbers or booleans).
            environment: dict[str, str | float | bool] = {
                **os.environ,
                "FONTCONFIG_FILE": str(write_fontconfig(Path(self._font_dir.name))),
            }
            self._playwright = _start_playwright(sync_playwright)
        except BaseException:
            self.close()
            raise
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=str(executable), args=list(CHROMIUM_ARGS), headless=True, env=environment
            )
        except Exception as exc:
            self.close()
            raise ChromiumNotFoundError(
                f"headless Chromium at {executable} would not start ({type(exc).__name__}: {exc}); "
                f"reinstall it (apt-get install -y chromium) or set {CHROMIUM_PATH_ENV} to a working Chromium"
            ) from exc

    def close(self) -> None:
        """Close the browser and the Playwright driver."""
        browser, playwright, font_dir = self._browser, self._playwright, self._font_dir
        self._browser = self._playwright = self._font_dir = None
        try:
            if browser is not None:
                browser.close()
        finally:
            try:
                if playwright is not None:
                    playwright.stop()
            finally:
                if font_dir is not None:
                    font_dir.cleanup()

    @property
    def browser_version(self) -> str:
        return self._require_browser().version

    def _require_browser(self) -> Browser:
        if self._browser is None:
            raise RuntimeError(
                "the scorer's browser is not running; use `with CodeFidelityScorer() as scorer:` or call start()"
            )
        return self._browser

    # -- rendering and scoring -----------------------------------------------------------------

    def render(self, html: str, width: int, height: int) -> tuple[bytes, tuple[str, ...]]:
        """Render ``html`` in a ``width`` x ``height`` viewport; returns the PNG and the blocked request URLs."""
        if not isinstance(html, str):
            raise TypeError(f"html must be str, got {type(html).__name__}")
        browser = self._require_browser()
        blocked: list[str] = []

        def only_data_urls(route: Route) -> None:
            url = route.request.url
            if url.startswith("data:"):
                route.continue_()
            else:
                blocked.append(url)
                route.abort("blockedbyclient")

        context = browser.new_context(
            viewport={"width": int(width), "height": int(height)},
            device_scale_factor=1,
            java_script_enabled=self.javascript,
            service_workers="block",
        )
        try:
            context.route("**/*", only_data_urls)
            # A handler that never connects to the server keeps the socket inside the browser.
            context.route_web_socket("**/*", lambda socket: socket.close())
            page = context.new_page()
            page.set_content(html, wait_until="load", timeout=self.timeout_ms)
            page.evaluate("document.fonts.ready.then(() => true)")
            png = page.screenshot(type="png", animations="disabled", caret="hide", timeout=self.timeout_ms)
        except Exception as exc:
            raise CodeRenderError(
                f"could not render the HTML at {width}x{height}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            context.close()
        return png, tuple(blocked)

    def rendered_texts(self, rendered_rgb: np.ndarray) -> list[str]:
        """RapidOCR line texts of a rendering, in reading order."""
        height, width = rendered_rgb.shape[:2]
        bgr = np.ascontiguousarray(rendered_rgb[:, :, ::-1])
        lines = self.ocr_backend.engine()(bgr)
        return [region["text"] for region in regions_from_result(lines, width, height)]

    def score(self, html: str, screenshot_rgb: np.ndarray, reference_texts: Sequence[str]) -> CodeFidelity:
        """Render ``html`` at the screenshot's size and compare it with ``screenshot_rgb`` ([H, W, 3] RGB).

        Raises :class:`CodeRenderError` when this item's page cannot be rendered.
        """
        width, height = _check_screenshot(screenshot_rgb)
        png, blocked = self.render(html, width, height)
        rendered = png_to_rgb(png)
        if rendered.shape[:2] != (height, width):
            raise CodeRenderError(
                f"Chromium returned a {rendered.shape[1]}x{rendered.shape[0]} screenshot "
                f"for a {width}x{height} viewport"
            )
        texts = list(reference_texts)
        has_reference = any(normalize_for_matching(text) for text in texts)
        ocr_lines = self.rendered_texts(rendered) if has_reference else []
        recall, missing, count = text_recall(texts, ocr_lines, self.match_threshold)
        return CodeFidelity(
            ssim=ssim(rendered, screenshot_rgb),
            text_recall=recall,
            rendered_png=png,
            reference_count=count,
            missing_texts=missing,
            blocked_requests=blocked,
        )


def score_image_to_code_items(
    final: Any, frames: Any, picture_path: Any, scorer: CodeFidelityScorer
) -> list[CodeFidelity]:
    """Code fidelity of every ``image_to_code`` item of a batch's final annotations.

    The reference texts of an item are the OCR regions of the same frame, when the frame was
    OCR-annotated too; ``picture_path(frame_id)`` locates the frame's picture.
    """
    ok = final[final["status"] == "ok"]
    ocr_texts = {
        row.frame_id: [box.item.get("text", "") for box in iter_boxes("ocr", json.loads(row.payload))]
        for row in ok[ok["task"] == "ocr"].itertuples(index=False)
    }
    results = []
    for row in ok[ok["task"] == "image_to_code"].itertuples(index=False):
        html = json.loads(row.payload).get("html", "")
        with Image.open(picture_path(row.frame_id)) as picture:
            screenshot = np.asarray(picture.convert("RGB"))
        results.append(scorer.score(html, screenshot, ocr_texts.get(row.frame_id, [])))
    return results
