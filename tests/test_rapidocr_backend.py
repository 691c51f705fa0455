"""RapidOCR prelabels on rendered pictures with known text, plus the pure text helpers it uses.

The OCR tests run the real engine (models from the wheel) once per module on a handful of small
pictures drawn with the bundled Noto Sans CJK font, so the text and its ink box are known exactly.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from qwen_dataset.geometry import iou_matrix
from qwen_dataset.payloads import boxes_table
from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend, outcomes_to_records
from qwen_dataset.prelabel.rapidocr_backend import (
    SPURIOUS_LINE_RULE,
    RapidOcrBackend,
    is_spurious_line,
    load_bgr_image,
    regions_from_result,
)
from qwen_dataset.records import AnnotationRecord, AnnotationStatus, to_frame
from qwen_dataset.text import group_lines, guess_language, reading_order

# --------------------------------------------------------------------------------------------
# Pure helpers: language guess and reading order
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("欢迎使用数据标注平台", "zh"),
        ("發票號碼", "zh"),  # Traditional characters are Han too
        ("Invoice Number 2024", "en"),
        ("Café crème", "en"),
        ("ＦＵＬＬ ｗｉｄｔｈ", "en"),
        ("设置 Settings", "mixed"),
        ("Wi-Fi设置", "mixed"),
        ("2024-01-01 12:30", "other"),
        ("", "other"),
        ("東京タワー", "other"),
        ("서울 Seoul", "other"),
        ("Привет", "other"),
        ("总计：¥42.00", "zh"),
    ],
)
def test_guess_language(text: str, expected: str) -> None:
    assert guess_language(text) == expected


def test_reading_order_reads_lines_top_to_bottom_and_boxes_left_to_right() -> None:
    boxes = [
        [300, 105, 400, 125],  # line 2, right
        [10, 10, 100, 30],  # line 1, left
        [10, 100, 120, 122],  # line 2, left
        [200, 14, 280, 32],  # line 1, right, baseline a few pixels lower
        [10, 200, 90, 220],  # line 3
    ]
    assert reading_order(boxes) == [3, 0, 2, 1, 4]
    assert group_lines(boxes) == [[1, 3], [2, 0], [4]]


def test_reading_order_keeps_a_big_title_and_a_small_badge_on_one_line() -> None:
    title, badge, below = [30, 50, 340, 97], [470, 60, 516, 82], [30, 110, 200, 130]
    assert reading_order([badge, below, title]) == [1, 2, 0]


def test_reading_order_does_not_merge_consecutive_tight_lines() -> None:
    # 20 px high lines 16 px apart overlap by 4 px: 20 % of a line, not the same line.
    boxes = [[0, 16, 50, 36], [60, 0, 120, 20], [0, 32, 40, 52]]
    assert group_lines(boxes) == [[1], [0], [2]]


def test_reading_order_of_nothing_and_of_one_box() -> None:
    assert reading_order([]) == []
    assert reading_order([[5, 5, 6, 6]]) == [0]


def test_regions_from_result_clips_drops_and_orders() -> None:
    result = [
        [[[100, 50], [180, 50], [180, 70], [100, 70]], "right", 0.9],
        [[[-5, 48], [90, 48], [90, 72], [-5, 72]], " left ", 1.0000001],  # spills off the left edge
        [[[300, 300], [320, 300], [320, 310], [300, 310]], "outside", 0.8],  # below a 200x100 frame
        [[[10, 80], [60, 80], [60, 95], [10, 95]], "   ", 0.7],  # no text
    ]
    regions = regions_from_result(result, width=200, height=100)
    assert [region["text"] for region in regions] == ["left", "right"]
    assert regions[0]["bbox"] == [0.0, 48.0, 90.0, 72.0]
    assert [region["reading_order"] for region in regions] == [0, 1]
    assert regions[0]["confidence"] == 1.0
    assert regions_from_result(None, 200, 100) == []


def test_load_bgr_image_lays_transparency_on_white_and_applies_exif(tmp_path) -> None:
    transparent = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    transparent.putpixel((5, 5), (0, 0, 255, 255))  # one opaque blue pixel
    transparent.save(tmp_path / "alpha.png")
    pixels = load_bgr_image(tmp_path / "alpha.png")
    assert pixels.shape == (20, 40, 3) and pixels.flags["C_CONTIGUOUS"]
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[5, 5].tolist() == [255, 0, 0]  # BGR order
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), "white").save(tmp_path / "turned.jpg", exif=exif)
    assert load_bgr_image(tmp_path / "turned.jpg").shape == (40, 20, 3)


# --------------------------------------------------------------------------------------------
# The real engine on rendered pictures
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Line:
    text: str
    box: tuple[float, float, float, float]  # ink box in pixels
    language: str


def cjk_font(size: int) -> ImageFont.FreeTypeFont:
    spec = importlib.util.find_spec("cvttf_NotoSansCJK_Regular")
    assert spec is not None and spec.submodule_search_locations, "install cvttf-NotoSansCJK-Regular"
    path = Path(next(iter(spec.submodule_search_locations))) / "NotoSansCJKtc-Regular.otf"
    return ImageFont.truetype(str(path), size)


def render(size: tuple[int, int], background, ink, lines) -> tuple[Image.Image, list[Line]]:
    """Draw ``(xy, text, px, language)`` lines; returns the picture and its lines in reading order."""
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    truth = []
    for xy, text, px, language in lines:
        font = cjk_font(px)
        draw.text(xy, text, font=font, fill=ink)
        truth.append(Line(text, tuple(float(v) for v in draw.textbbox(xy, text, font=font)), language))
    return image, truth


def invoice_picture() -> tuple[Image.Image, list[Line]]:
    return render(
        (960, 540),
        "white",
        "black",
        [
            ((40, 40), "Invoice Number 2024", 32, "en"),
            ((560, 40), "发票号码", 32, "zh"),  # same line, to the right
            ((40, 140), "欢迎使用数据标注平台", 32, "zh"),
            ((40, 240), "设置 Settings", 32, "mixed"),
            ((40, 340), "Hello World settings", 32, "en"),
        ],
    )


def dark_panel_picture() -> tuple[Image.Image, list[Line]]:
    return render(
        (640, 800),
        (32, 33, 36),
        (235, 235, 235),
        [
            ((30, 40), "标题 Project Title", 40, "mixed"),
            ((470, 52), "v1.2", 24, "en"),  # smaller text on the title's line
            ((30, 160), "Save changes", 28, "en"),
            ((330, 160), "取消操作", 28, "zh"),
            ((30, 300), "Total: 42 items", 28, "en"),
        ],
    )


def upside_down_picture() -> tuple[Image.Image, list[Line]]:
    upright, lines = render(
        (640, 200),
        "white",
        "black",
        [((60, 70), "Rotated Receipt 2024", 36, "en"), ((60, 130), "收据编号", 36, "zh")],
    )
    width, height = upright.size
    turned = [
        Line(
            line.text,
            (width - line.box[2], height - line.box[3], width - line.box[0], height - line.box[1]),
            line.language,
        )
        for line in lines
    ]
    # Turned by 180 degrees, the lower line is now read first.
    return upright.rotate(180), turned[::-1]


def char_accuracy(predicted: str, truth: str) -> float:
    return 1.0 - Levenshtein.distance(predicted, truth) / len(truth)


ENGINES = ["rapidocr", "rapidocr-onnxruntime"]


@pytest.fixture(scope="module", params=ENGINES)
def backend(request) -> RapidOcrBackend:
    return RapidOcrBackend(engine=request.param)


@pytest.fixture(scope="module")
def scene(tmp_path_factory, backend):
    """Annotate every picture in one batch (the engine is built once); returns truths and outcomes."""
    folder = tmp_path_factory.mktemp("ocr")
    pictures = {"invoice": invoice_picture(), "dark": dark_panel_picture(), "upside_down": upside_down_picture()}
    pictures["blank"] = (Image.new("RGB", (320, 240), "white"), [])
    frames = []
    for name, (image, _truth) in pictures.items():
        path = folder / f"{name}.png"
        image.save(path)
        frames.append(FrameInput(name, f"upload-{name}", "b1", image.width, image.height, path))
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    # Failures sit between good frames: the batch must go on after them.
    frames.insert(1, FrameInput("corrupt", "upload-corrupt", "b1", 100, 100, corrupt))
    frames.insert(3, FrameInput("missing", "upload-missing", "b1", 100, 100, folder / "missing.png"))
    frames.append(FrameInput("wrong_size", "upload-invoice", "b1", 480, 270, folder / "invoice.png"))
    outcomes = list(backend.annotate(frames, "ocr"))
    return {"frames": frames, "outcomes": outcomes, "truth": {name: truth for name, (_, truth) in pictures.items()}}


def outcome_of(scene, frame_id: str):
    (outcome,) = [outcome for outcome in scene["outcomes"] if outcome.frame_id == frame_id]
    return outcome


def test_backend_implements_the_protocol(backend) -> None:
    assert isinstance(backend, PrelabelBackend)
    assert backend.tasks == ("ocr",)
    package = backend.engine_name
    assert backend.author == f"{package}=={importlib.metadata.version(package)}"


def test_the_default_engine_is_rapidocr_3_with_pp_ocrv6() -> None:
    default = RapidOcrBackend()
    assert default.engine_name == "rapidocr"
    assert default.author == f"rapidocr=={importlib.metadata.version('rapidocr')}"
    assert "det=PP-OCRv6_det_small" in default.version and "rec=PP-OCRv6_rec_small" in default.version


MODELS = {
    "rapidocr": ("det=PP-OCRv6_det_small", "rec=PP-OCRv6_rec_small", "cls=ch_ppocr_mobile_v2.0_cls_mobile"),
    "rapidocr-onnxruntime": (
        "det=ch_PP-OCRv4_det_infer",
        "rec=ch_PP-OCRv4_rec_infer",
        "cls=ch_ppocr_mobile_v2.0_cls_infer",
    ),
}


def test_version_names_engine_models_and_output_parameters(backend) -> None:
    version = backend.version
    assert version.startswith(backend.author)
    for part in (*MODELS[backend.engine_name], "text_score=0.5", f"drop={SPURIOUS_LINE_RULE}"):
        assert part in version
    engine = backend.engine_name
    assert RapidOcrBackend(engine=engine, text_score=0.7).version != version
    assert "cls=off" in RapidOcrBackend(engine=engine, use_angle_cls=False).version
    # Threads and processes do not change what is recognised, so they do not change the version.
    assert RapidOcrBackend(engine=engine, intra_op_threads=1, workers=2).version == version


def test_switching_engines_changes_the_version() -> None:
    versions = {RapidOcrBackend(engine=engine).version for engine in ENGINES}
    assert len(versions) == len(ENGINES)


def test_one_outcome_per_frame_in_order(scene) -> None:
    assert [outcome.frame_id for outcome in scene["outcomes"]] == [frame.frame_id for frame in scene["frames"]]
    assert {outcome.task for outcome in scene["outcomes"]} == {"ocr"}


# PP-OCRv6 small pads a small line's box more (the 24 px "v1.2" beside a 40 px title: IoU 0.39
# with its layout box); over the engine evaluation its boxes average IoU 0.72 against PP-OCRv4's 0.75.
MIN_LINE_IOU = {"rapidocr": 0.35, "rapidocr-onnxruntime": 0.5}


@pytest.mark.parametrize("name", ["invoice", "dark", "upside_down"])
def test_recognises_known_lines_at_known_places(scene, backend, name: str) -> None:
    regions = outcome_of(scene, name).payload["regions"]
    truth = scene["truth"][name]
    assert len(regions) == len(truth), [region["text"] for region in regions]
    ious = iou_matrix(np.array([line.box for line in truth]), np.array([region["bbox"] for region in regions]))
    matched = ious.argmax(axis=1)
    assert sorted(matched.tolist()) == list(range(len(truth))), "each true line must match a different region"
    for line, index, iou in zip(truth, matched, ious.max(axis=1)):
        region = regions[index]
        assert iou >= MIN_LINE_IOU[backend.engine_name], (line.text, region["bbox"], line.box)
        assert char_accuracy(region["text"], line.text) >= 0.9, (region["text"], line.text)
        assert region["language"] == line.language, (region["text"], region["language"])
    # Truth lines are listed in reading order, so the matches must come out as 0, 1, 2, ...
    assert [regions[index]["reading_order"] for index in matched] == list(range(len(truth)))
    assert [region["reading_order"] for region in regions] == list(range(len(regions)))


def test_region_fields(scene) -> None:
    frame = next(frame for frame in scene["frames"] if frame.frame_id == "invoice")
    for region in outcome_of(scene, "invoice").payload["regions"]:
        assert set(region) == {"bbox", "text", "confidence", "language", "font_style", "reading_order"}
        x1, y1, x2, y2 = region["bbox"]
        assert 0 <= x1 < x2 <= frame.width and 0 <= y1 < y2 <= frame.height
        assert all(isinstance(value, float) for value in region["bbox"])
        assert 0.5 <= region["confidence"] <= 1.0  # the default text_score drops anything lower
        assert region["font_style"] == "regular"


def test_a_picture_without_text_has_no_regions(scene) -> None:
    outcome = outcome_of(scene, "blank")
    assert outcome.payload == {"regions": []} and outcome.error == ""


def test_unreadable_pictures_become_failures_not_exceptions(scene) -> None:
    for frame_id in ("corrupt", "missing"):
        outcome = outcome_of(scene, frame_id)
        assert outcome.payload is None
        assert outcome.error.startswith("could not read image"), outcome.error
        assert f"{frame_id}.png" in outcome.error


def test_a_picture_of_another_size_than_its_frame_record_is_a_failure(scene) -> None:
    outcome = outcome_of(scene, "wrong_size")
    assert outcome.payload is None
    assert "960x540" in outcome.error and "480x270" in outcome.error


def test_outcomes_become_records_and_regions(scene, backend) -> None:
    records = outcomes_to_records(scene["outcomes"], scene["frames"], "ocr", backend.author, backend.version)
    annotations = to_frame(records, AnnotationRecord)
    status = dict(zip(annotations["frame_id"], annotations["status"]))
    assert status["corrupt"] == status["missing"] == status["wrong_size"] == AnnotationStatus.FAILED
    assert status["invoice"] == status["blank"] == AnnotationStatus.OK
    frames = pd.DataFrame(
        {
            "frame_id": [frame.frame_id for frame in scene["frames"]],
            "width": [frame.width for frame in scene["frames"]],
            "height": [frame.height for frame in scene["frames"]],
        }
    )
    table = boxes_table(annotations, frames)
    assert (table["frame_id"] == "invoice").sum() == len(scene["truth"]["invoice"])
    assert ((table["x2"] <= table["width"]) & (table["y2"] <= table["height"])).all()


def test_engine_is_built_once_and_reused(backend, scene) -> None:
    engine = backend.engine()
    assert backend.engine() is engine
    missing = next(frame for frame in scene["frames"] if frame.frame_id == "missing")
    list(backend.annotate([missing], "ocr"))
    assert backend.engine() is engine


def test_backend_pickles_without_its_engine(backend, scene) -> None:
    backend.engine()
    copy = pickle.loads(pickle.dumps(backend))
    assert copy.version == backend.version
    blank = next(frame for frame in scene["frames"] if frame.frame_id == "blank")
    (outcome,) = copy.annotate([blank], "ocr")
    assert outcome.payload == {"regions": []}
    assert copy.engine() is not backend.engine()


def test_unsupported_task_and_bad_settings_are_refused(backend) -> None:
    with pytest.raises(ValueError, match="gui_action"):
        list(backend.annotate([], "gui_action"))
    with pytest.raises(ValueError, match="text_score"):
        RapidOcrBackend(text_score=1.5)
    with pytest.raises(ValueError, match="intra_op_threads"):
        RapidOcrBackend(intra_op_threads=0)
    with pytest.raises(ValueError, match="workers"):
        RapidOcrBackend(workers=0)
    with pytest.raises(ValueError, match="unknown OCR engine"):
        RapidOcrBackend(engine="tesseract")


# --------------------------------------------------------------------------------------------
# Spurious lines, models from the wheel, worker processes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spurious"),
    [("●", True), ("• • •", True), ("|", True), ("——", True), ("...", True), ("¥", True)]
    + [("OK", False), ("42", False), ("确定", False), ("×2", False), ("●Live", False), ("①", False)],
)
def test_a_line_without_letter_or_digit_is_spurious(text: str, spurious: bool) -> None:
    assert is_spurious_line(text) is spurious


def test_window_control_dots_are_dropped_and_spacing_is_tidied() -> None:
    quad = [[0, 0], [20, 0], [20, 20], [0, 20]]
    result = [
        [[[10, 10], [200, 10], [200, 30], [10, 30]], " 登录  -  Acme Portal ", 0.97],
        *[[[[x + p[0], p[1] + 10] for p in quad], "●", 0.95] for x in (1180, 1210, 1240)],
    ]
    regions = regions_from_result(result, 1280, 800)
    assert [region["text"] for region in regions] == ["登录 - Acme Portal"]


@pytest.mark.parametrize("engine", ENGINES)
def test_models_come_from_the_installed_wheel(engine: str) -> None:
    from qwen_dataset.prelabel.ocr_engines import engine_spec, model_files

    spec = engine_spec(engine)
    package_dir = Path(importlib.util.find_spec(spec.module).origin).parent
    for path in model_files(engine).values():
        assert path.is_file() and path.suffix == ".onnx" and package_dir in path.parents


def test_the_default_engine_reads_without_the_network(monkeypatch, tmp_path) -> None:
    """RapidOCR 3 downloads a model it cannot find; it must always find the wheel's own."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"the OCR engine tried to reach the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    image, truth = invoice_picture()
    path = tmp_path / "invoice.png"
    image.save(path)
    fresh = RapidOcrBackend(engine="rapidocr", intra_op_threads=1)
    (outcome,) = fresh.annotate([FrameInput("f", "u", "b", image.width, image.height, path)], "ocr")
    assert outcome.error == "" and len(outcome.payload["regions"]) == len(truth)


def test_the_default_engine_keeps_the_spaces_it_sees(scene, backend) -> None:
    if backend.engine_name != "rapidocr":
        pytest.skip("PP-OCRv4 glues words; it is kept selectable, not held to this")
    texts = [region["text"] for region in outcome_of(scene, "invoice").payload["regions"]]
    assert "设置 Settings" in texts and "Hello World settings" in texts and "Invoice Number 2024" in texts


def test_worker_processes_give_the_same_outcomes_in_any_order(scene, backend) -> None:
    parallel = RapidOcrBackend(engine=backend.engine_name, intra_op_threads=1, workers=2)
    outcomes = list(parallel.annotate(scene["frames"], "ocr"))
    assert sorted(o.frame_id for o in outcomes) == sorted(f.frame_id for f in scene["frames"])
    serial = {o.frame_id: o for o in scene["outcomes"]}
    for outcome in outcomes:
        expected = serial[outcome.frame_id]
        assert outcome.error.split(":")[0] == expected.error.split(":")[0]
        if expected.payload is None:
            assert outcome.payload is None
            continue
        got, want = outcome.payload["regions"], expected.payload["regions"]
        assert [r["text"] for r in got] == [r["text"] for r in want]
        assert np.allclose([r["bbox"] for r in got], [r["bbox"] for r in want], atol=1.0) if want else not got
    assert parallel._engine is None, "the parent process never builds an engine of its own"
