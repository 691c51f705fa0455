"""The sample batch generator: deterministic files whose ground truth is really true."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageOps

from qwen_dataset.samples import batch as sample_batch
from qwen_dataset.samples import broken, documents, drawing
from qwen_dataset.samples.batch import bt601_mean_luma, generate_sample_batch, upright_image
from qwen_dataset.samples.drawing import cjk_font_path, load_font
from qwen_dataset.samples.truth import SampleTruth, read_truth, write_truth
from qwen_dataset.samples.video import make_h264_video

RING = 3  # px of clear background the layout leaves around every text's ink


@pytest.fixture(scope="module")
def batch(sample) -> tuple[Path, SampleTruth]:
    return sample


def _digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def _luma(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _png_images(truth: SampleTruth):
    return [image for image in truth.images if image.file_name.endswith(".png")]


# ------------------------------------------------------------------ determinism and bookkeeping


def test_same_seed_gives_byte_identical_files(batch, tmp_path):
    folder, truth = batch
    again = generate_sample_batch(tmp_path / "again", seed=0)
    assert _digests(tmp_path / "again") == _digests(folder)
    assert again == truth


def test_other_seed_changes_the_screenshots(batch, tmp_path):
    folder, truth = batch
    other_truth = generate_sample_batch(tmp_path / "other", seed=1)
    first, second = _digests(folder), _digests(tmp_path / "other")
    for image in truth.images:
        assert first[image.file_name] != second[image.file_name], image.file_name
    assert other_truth.images != truth.images


def test_truth_lists_exactly_the_files_written(batch):
    folder, truth = batch
    assert sorted(path.name for path in folder.iterdir()) == truth.files
    named = {image.file_name for image in truth.images} | {pdf.file_name for pdf in truth.pdfs}
    named |= {video.file_name for video in truth.videos} | set(truth.broken) | set(truth.duplicates)
    assert named == set(truth.files)


def test_truth_round_trips_through_json(batch, tmp_path):
    _, truth = batch
    path = tmp_path / "truth.json"
    write_truth(truth, path)
    assert read_truth(path) == truth
    document = json.loads(path.read_text(encoding="utf-8"))
    assert "bad\x07name.png" in document["broken"]
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writer cleaned up


# ------------------------------------------------------------------ screenshots


def test_screenshots_cover_both_languages_and_an_odd_size(batch):
    _, truth = batch
    screens = [image for image in truth.images if image.file_name.startswith("screen_")]
    assert len(screens) == 4
    assert any(image.width != image.height and (image.width % 32 or image.height % 32) for image in screens)
    for image in screens:
        languages = {line.language for line in image.lines}
        assert languages == {"en", "zh"}, image.file_name
        roles = {element.role for element in image.elements}
        assert {"title", "button", "input", "label"} <= roles, image.file_name
    texts = {line.text for image in screens for line in image.lines}
    assert {"登录", "搜索", "提交订单"} <= texts


def test_language_tags_follow_the_script(batch):
    _, truth = batch
    for image in truth.images:
        for line in image.lines:
            has_cjk = any("\u4e00" <= char <= "\u9fff" for char in line.text)
            assert line.language == ("zh" if has_cjk else "en"), line.text


def test_image_sizes_match_the_files(batch):
    folder, truth = batch
    for image in truth.images:
        upright = upright_image(folder / image.file_name)
        assert upright.size == (image.width, image.height), image.file_name


def test_boxes_are_inside_their_images_and_not_empty(batch):
    _, truth = batch
    for image in truth.images:
        boxes = [line.bbox for line in image.lines] + [element.bbox for element in image.elements]
        boxes += [obj.bbox for obj in image.objects]
        assert boxes
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height, image.file_name


def test_text_boxes_do_not_overlap(batch):
    _, truth = batch
    for image in truth.images:
        boxes = [line.bbox for line in image.lines]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                apart = a[2] + RING <= b[0] or b[2] + RING <= a[0] or a[3] + RING <= b[1] or b[3] + RING <= a[1]
                assert apart, (image.file_name, a, b)


def test_text_boxes_are_exactly_the_ink(batch):
    """The box is tight: the ring just outside is plain background, every box edge touches ink."""
    folder, truth = batch
    for image in _png_images(truth):
        pixels = np.asarray(Image.open(folder / image.file_name).convert("RGB")).astype(np.int16)
        for line in image.lines:
            x1, y1, x2, y2 = (int(v) for v in line.bbox)
            region = pixels[y1 - RING : y2 + RING, x1 - RING : x2 + RING]
            ring = np.ones(region.shape[:2], dtype=bool)
            ring[RING:-RING, RING:-RING] = False
            colours, counts = np.unique(region[ring], axis=0, return_counts=True)
            assert len(colours) == 1, (image.file_name, line.text, "ink or clutter outside the box")
            ink = np.abs(region - colours[0]).max(axis=-1) > 0
            rows, cols = np.nonzero(ink)
            found = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert found == [RING, RING, x2 - x1 + RING, y2 - y1 + RING], (image.file_name, line.text)
            assert np.abs(region - colours[0]).max() >= 40, (image.file_name, line.text, "too faint")


# Full-width forms and CJK punctuation (。，？) carry their own wide side bearings.
_WIDE_GLYPHS = re.compile(r"[\u3000-\u303f\uff00-\uffef]")
# Gaps between glyphs that are not spaces stay under this share of the line's ink height.
LETTER_GAP = 0.2


def _ink_gaps(pixels: np.ndarray, bbox: list[float]) -> list[int]:
    """Widths of the runs of ink-free columns inside a text box, widest first."""
    x1, y1, x2, y2 = (int(v) for v in bbox)
    background = pixels[y1 - RING, x1 - RING]
    inked = (np.abs(pixels[y1:y2, x1:x2] - background).max(axis=-1) > 0).any(axis=0)
    gaps, run = [], 0
    for has_ink in inked:
        if has_ink:
            if run:
                gaps.append(run)
            run = 0
        else:
            run += 1
    return sorted(gaps, reverse=True)


def test_truth_spacing_is_what_the_picture_shows(batch):
    """Each space of a truth line is one of its visibly widest gaps, and no other gap looks like one.

    A truth that glued two visibly separate words ("欢迎回来Welcome back") or spaced two touching
    ones fails here, and so would an OCR figure measured against it.
    """
    folder, truth = batch
    checked = 0
    for image in _png_images(truth):
        pixels = np.asarray(Image.open(folder / image.file_name).convert("RGB")).astype(np.int16)
        for line in image.lines:
            assert line.text == " ".join(line.text.split()), (image.file_name, line.text, "stray whitespace")
            if _WIDE_GLYPHS.search(line.text):
                continue
            spaces = line.text.count(" ")
            gaps = _ink_gaps(pixels, line.bbox) + [0]
            height = line.bbox[3] - line.bbox[1]
            if spaces:
                assert gaps[spaces - 1] > gaps[spaces], (image.file_name, line.text, gaps)
            assert gaps[spaces] < LETTER_GAP * height, (image.file_name, line.text, gaps, "a gap without a space")
            checked += 1
    assert checked >= 50


def test_chinese_wrapping_never_leaves_a_space_at_a_line_end_nor_splits_a_number():
    text = "第 12 批数据中有 3456 条标注被退回修改。"
    for width in range(20, 300, 10):
        rows = drawing.wrap_words(text, 20, width, lambda row, size: 10 * len(row))
        assert "".join(rows).replace(" ", "") == text.replace(" ", ""), width
        for row in rows:
            assert row == " ".join(row.split()), (width, rows)
        assert all("3456" in row for row in rows if "345" in row or "456" in row), (width, rows)


def test_buttons_and_inputs_contain_their_text(batch):
    _, truth = batch
    for image in truth.images:
        lines = {line.text: line.bbox for line in image.lines}
        for element in image.elements:
            if element.role in ("button", "input"):
                tx1, ty1, tx2, ty2 = lines[element.text]
                ex1, ey1, ex2, ey2 = element.bbox
                assert ex1 < tx1 and ey1 < ty1 and tx2 < ex2 and ty2 < ey2, (image.file_name, element.text)


def test_scene_objects_are_drawn_where_the_truth_says_with_their_relations(batch):
    folder, truth = batch
    scene = truth.image("scene_objects.png")
    pixels = np.asarray(Image.open(folder / scene.file_name).convert("RGB"))
    floor = pixels[0, 0]
    for obj in scene.objects:
        x1, y1, x2, y2 = (int(v) for v in obj.bbox)
        inside = pixels[y1:y2, x1:x2]
        assert (inside != floor).any(axis=2).any(), obj.label
        if obj.label not in ("purple cup", "orange block"):  # the two drawn onto another object
            assert (pixels[y1 - 1, x1:x2] == floor).all(), obj.label  # the box starts where the object does
    labels = [obj.label for obj in scene.objects]
    said = {(labels[r.subject], r.predicate, labels[r.object]) for r in scene.relations}
    assert ("purple cup", "inside", "yellow tray") in said and ("orange block", "occludes", "blue ball") in said
    screens = [image for image in truth.images if image.elements]
    assert all(image.instruction and image.target in {e.text for e in image.elements} for image in screens)


def test_photo_is_stored_rotated_with_exif_orientation_6(batch):
    folder, truth = batch
    photo = truth.image(sample_batch.PHOTO_NAME)
    assert photo.exif_orientation == 6
    with Image.open(folder / photo.file_name) as stored:
        assert stored.format == "JPEG"
        assert stored.getexif()[documents.EXIF_ORIENTATION_TAG] == 6
        assert stored.size == (photo.height, photo.width)
        upright = ImageOps.exif_transpose(stored)
    assert upright.size == (photo.width, photo.height)
    luma = _luma(np.asarray(upright))
    title = next(element for element in photo.elements if element.role == "title")
    # The dark title bar is at the top only when the rotation was undone the right way round.
    assert luma[: int(title.bbox[1])].mean() < 100
    assert luma[-40:].mean() > 150
    for line in photo.lines:
        x1, y1, x2, y2 = (int(v) for v in line.bbox)
        inside = luma[y1:y2, x1:x2]
        assert inside.max() - inside.min() > 60, line.text


def test_low_light_screenshot_is_dark_but_legible(batch):
    folder, truth = batch
    dark = next(image for image in truth.images if image.low_light)
    assert dark.file_name == sample_batch.LOW_LIGHT_NAME
    assert [image.low_light for image in truth.images].count(True) == 1
    with Image.open(folder / dark.file_name) as image:
        assert bt601_mean_luma(image) < 35
        luma = _luma(np.asarray(image.convert("RGB")))
    for line in dark.lines:
        x1, y1, x2, y2 = (int(v) for v in line.bbox)
        inside = luma[y1:y2, x1:x2]
        assert inside.max() - inside.min() >= 40, line.text


# ------------------------------------------------------------------ PDF


def test_pdf_has_three_pages_of_the_stated_size(batch):
    folder, truth = batch
    (pdf,) = truth.pdfs
    document = pdfium.PdfDocument(folder / pdf.file_name)
    try:
        assert len(document) == len(pdf.pages) == 3
        for page, page_truth in zip(document, pdf.pages):
            width, height = page.get_size()
            assert width == pytest.approx(page_truth.width_pt, abs=0.01)
            assert height == pytest.approx(page_truth.height_pt, abs=0.01)
    finally:
        document.close()
    page_texts = [{line.text for line in page.lines} for page in pdf.pages]
    assert all(not (a & b) for i, a in enumerate(page_texts) for b in page_texts[i + 1 :])
    for page in pdf.pages:
        assert {line.language for line in page.lines} == {"en", "zh"}


def test_pdf_boxes_in_points_hold_the_ink_at_another_dpi(batch):
    """Render at 100 DPI (not the 150 the generator drew at) and scale the boxes by dpi / 72."""
    folder, truth = batch
    (pdf,) = truth.pdfs
    dpi = 100
    document = pdfium.PdfDocument(folder / pdf.file_name)
    try:
        for page, page_truth in zip(document, pdf.pages):
            luma = _luma(np.asarray(page.render(scale=dpi / 72).to_pil().convert("RGB")))
            for line in page_truth.lines:
                assert 0 <= line.bbox[0] < line.bbox[2] <= page_truth.width_pt
                assert 0 <= line.bbox[1] < line.bbox[3] <= page_truth.height_pt
                x1, y1 = (int(v * dpi / 72) for v in line.bbox[:2])
                x2, y2 = (int(np.ceil(v * dpi / 72)) for v in line.bbox[2:])
                assert luma[y1:y2, x1:x2].min() < 110, line.text
                margin = 4
                around = luma[y1 - margin : y2 + margin, x1 - margin : x2 + margin].copy()
                around[margin:-margin, margin:-margin] = 255
                assert around.min() > 170, (line.text, "ink outside the box")  # JPEG ringing stays light
    finally:
        document.close()


# ------------------------------------------------------------------ video


def _decode_times_and_luma(path: Path) -> tuple[list[float], list[np.ndarray], tuple[str, str]]:
    """Presentation times and grey frames of every decoded frame, and the stream's codec and pixel format."""
    times, lumas = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
        for frame in container.decode(stream):
            times.append(frame.time)
            lumas.append(frame.to_ndarray(format="gray").astype(np.int16))
    return times, lumas, (codec, pix_fmt)


def test_video_frames_are_presented_at_exactly_i_over_fps(batch):
    folder, truth = batch
    (video,) = truth.videos
    times, lumas, (codec, pix_fmt) = _decode_times_and_luma(folder / video.file_name)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    assert len(times) == video.frame_count == round(video.duration * video.fps)
    for index, seconds in enumerate(times):
        assert abs(seconds - index / video.fps) < 1e-6, index
    assert video.scene_cuts == [2.0, 4.0]
    assert video.scene_cut_frames == [round(cut * video.fps) for cut in video.scene_cuts]
    assert lumas[0].shape == (video.height, video.width)


def test_video_scene_cuts_are_where_the_truth_says(batch):
    folder, truth = batch
    (video,) = truth.videos
    _, lumas, _ = _decode_times_and_luma(folder / video.file_name)
    changes = [float(np.abs(b - a).mean()) for a, b in zip(lumas, lumas[1:])]
    # changes[i] compares frame i+1 with frame i, so a cut at frame k shows up at changes[k-1].
    biggest = sorted(np.argsort(changes)[-len(video.scene_cut_frames) :] + 1)
    assert biggest == video.scene_cut_frames
    quiet = [change for index, change in enumerate(changes) if index + 1 not in video.scene_cut_frames]
    assert max(quiet) * 5 < min(changes[k - 1] for k in video.scene_cut_frames)
    assert min(quiet) > 0  # the timestamp changes on every frame


def test_make_h264_video_at_another_rate(tmp_path):
    path = tmp_path / "tiny.mp4"
    truth = make_h264_video(path, seconds=1.0, fps=30, width=160, height=90, seed=3, scenes=2, preset="ultrafast")
    assert (truth.frame_count, truth.scene_cut_frames, truth.scene_cuts) == (30, [15], [0.5])
    times, _, _ = _decode_times_and_luma(path)
    assert len(times) == 30
    assert all(abs(t - i / 30) < 1e-6 for i, t in enumerate(times))
    assert not list(tmp_path.glob(".*.tmp"))


def test_make_h264_video_rejects_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        make_h264_video(tmp_path / "odd.mp4", seconds=1.0, fps=10, width=161, height=90)
    assert not (tmp_path / "odd.mp4").exists()


# ------------------------------------------------------------------ broken and hostile files


def test_broken_files_carry_every_reason_code(batch):
    _, truth = batch
    assert sorted(set(truth.broken.values())) == sorted(
        {
            "empty",
            "unknown_type",
            "corrupt_image",
            "encrypted_pdf",
            "decompression_bomb",
            "corrupt_video",
            "unsafe_name",
        }
    )
    assert list(truth.broken.values()).count("unsafe_name") == 2


def _broken(truth: SampleTruth, reason: str) -> list[str]:
    return [name for name, code in truth.broken.items() if code == reason]


def test_empty_file_is_empty(batch):
    folder, truth = batch
    (name,) = _broken(truth, "empty")
    assert (folder / name).stat().st_size == 0


def test_unknown_type_is_text_under_an_image_name(batch):
    folder, truth = batch
    (name,) = _broken(truth, "unknown_type")
    assert name.endswith(".jpg")
    data = (folder / name).read_bytes()
    text = data.decode("utf-8")
    assert text.strip() and all(char.isprintable() or char in "\n\t" for char in text)
    assert not data.startswith(b"\xff\xd8")
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(folder / name)


def test_truncated_png_fails_to_decode(batch):
    folder, truth = batch
    (name,) = _broken(truth, "corrupt_image")
    assert (folder / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(OSError, match="truncated"):
        with Image.open(folder / name) as image:
            image.load()


def test_encrypted_pdf_needs_its_password(batch):
    folder, truth = batch
    (name,) = _broken(truth, "encrypted_pdf")
    with pytest.raises(pdfium.PdfiumError, match="[Pp]assword"):
        pdfium.PdfDocument(folder / name)
    document = pdfium.PdfDocument(folder / name, password=broken.ENCRYPTED_PDF_PASSWORD)
    assert len(document) == 1
    document.close()


def test_decompression_bomb_is_small_but_declares_a_huge_valid_image(batch):
    folder, truth = batch
    (name,) = _broken(truth, "decompression_bomb")
    data = (folder / name).read_bytes()
    assert len(data) < 1_000_000
    width, height = struct.unpack(">II", data[16:24])
    assert width * height > Image.MAX_IMAGE_PIXELS * 2
    with pytest.raises(Image.DecompressionBombError):
        Image.open(folder / name)
    # A real bomb, not junk: the IDAT inflates to exactly the declared 1-bit rows.
    (idat_length,) = struct.unpack(">I", data[33:37])
    assert data[37:41] == b"IDAT"
    inflater, inflated, compressed = zlib.decompressobj(), 0, data[41 : 41 + idat_length]
    while compressed:
        inflated += len(inflater.decompress(compressed, 1 << 24))
        compressed = inflater.unconsumed_tail
    assert inflater.eof and inflated == height * (1 + (width + 7) // 8)


def test_corrupt_video_is_a_cut_copy_that_ffmpeg_rejects(batch):
    folder, truth = batch
    (name,) = _broken(truth, "corrupt_video")
    data = (folder / name).read_bytes()
    assert len(data) == broken.CORRUPT_VIDEO_BYTES
    assert (folder / truth.videos[0].file_name).read_bytes().startswith(data)
    with pytest.raises(av.error.FFmpegError):
        with av.open(str(folder / name)) as container:
            for _ in container.decode(video=0):
                pass


def test_unsafe_names_hold_valid_distinct_pngs(batch):
    folder, truth = batch
    names = _broken(truth, "unsafe_name")
    assert any(any(ord(char) < 32 for char in name) for name in names)
    assert any("..\\" in name for name in names)
    digests = set()
    for name in names:
        with Image.open(folder / name) as image:
            image.load()
            assert image.format == "PNG"
        digests.add(hashlib.sha256((folder / name).read_bytes()).hexdigest())
    assert len(digests) == len(names)
    assert not digests & set(_digests(folder)[image.file_name] for image in truth.images)


def test_duplicate_is_a_byte_copy_that_sorts_after_its_original(batch):
    folder, truth = batch
    assert truth.duplicates
    for duplicate, original in truth.duplicates.items():
        assert (folder / duplicate).read_bytes() == (folder / original).read_bytes()
        assert original < duplicate
        assert original in {image.file_name for image in truth.images}


# ------------------------------------------------------------------ font


def test_font_comes_from_the_python_package_and_draws_chinese():
    path = cjk_font_path()
    assert path.is_file() and "cvttf_NotoSansCJK_Regular" in path.parts
    font = load_font(24)
    assert bytes(font.getmask("订单")) != bytes(font.getmask("\U0010fffd\U0010fffd"))  # not .notdef boxes
    assert load_font(24) is font


def test_missing_font_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(drawing.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"pip install cvttf-NotoSansCJK-Regular==1\.0"):
        cjk_font_path()
