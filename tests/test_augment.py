"""Augmentation: labels checked against the pixels, text replacement read back by OCR, plugins, seeds."""

from __future__ import annotations

import io
import json
import math
import textwrap

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from qwen_dataset.augment import (
    LINEAGE_COLUMNS,
    AugmentationRejected,
    Labels,
    PluginError,
    TextReplacement,
    UnknownAugmentationError,
    augment_batch,
    augment_frame,
    augment_sample,
    builtin_registry,
    default_registry,
)
from qwen_dataset.augment.text_replace import pixel_box
from qwen_dataset.geometry import iou_matrix
from qwen_dataset.ingest.frames import encode_picture
from qwen_dataset.records import (
    AnnotationRecord,
    FrameRecord,
    annotation_id_for,
    dump_payload,
    frame_id_for,
    load_payload,
    to_frame,
)
from qwen_dataset.samples.drawing import ink_bbox, load_font
from qwen_dataset.store.blobs import BlobStore

BACKGROUND = (200, 200, 200)
RED = (220, 30, 30)
RECT = [80.0, 60.0, 200.0, 120.0]
GEOMETRIC = ["rotate", "scale", "crop", "perspective", "geometric"]
COLOUR = ["brightness", "contrast", "saturation", "hue", "color"]
NOISE = ["blur", "motion_blur", "pixelate", "shadow", "jpeg", "noise"]


def rectangle_scene(width: int = 320, height: int = 240, box=RECT) -> np.ndarray:
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    image[y1:y2, x1:x2] = RED
    return image


def locate_colour(image: np.ndarray, min_chroma: int = 40) -> list[float]:
    """Box (x2/y2 exclusive) of the saturated pixels: where the red rectangle ended up."""
    chroma = image.max(axis=2).astype(int) - image.min(axis=2)
    ys, xs = np.nonzero(chroma > min_chroma)
    assert xs.size, "the rectangle vanished from the picture"
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def locate_red(image: np.ndarray) -> list[float]:
    """Box of the clearly red pixels: survives shadows (darker red) and JPEG's colour bleeding."""
    red = image[:, :, 0].astype(int)
    others = image[:, :, 1:].max(axis=2).astype(int)
    ys, xs = np.nonzero(red > 2 * others + 10)
    assert xs.size, "the rectangle vanished from the picture"
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def iou(a, b) -> float:
    return float(iou_matrix(np.array([a]), np.array([b]))[0, 0])


def ocr_payload(box=RECT, text="Total") -> dict:
    return {
        "regions": [
            {
                "bbox": list(box),
                "text": text,
                "confidence": 0.9,
                "language": "en",
                "font_style": "regular",
                "reading_order": 0,
            }
        ]
    }


def gui_payload(box=RECT, text="Pay", role="button") -> dict:
    centre = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
    return {
        "elements": [{"bbox": list(box), "role": role, "text": text}],
        "instruction": f'Click "{text}"',
        "requested_instruction": f'Click "{text}"',
        "actions": [
            {"type": "click", "target": 0, "point": centre, "end_point": None, "text": None, "direction": None}
        ],
    }


# --------------------------------------------------------------------------------------------
# Boxes against pixels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", GEOMETRIC)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometric_augmentations_move_boxes_and_points_with_the_pixels(pipeline, seed):
    image = rectangle_scene()
    registry = builtin_registry()
    labels = [Labels("ocr", ocr_payload()), Labels("gui_action", gui_payload())]
    result = augment_frame(image, labels, registry.create(pipeline), seed)

    found = locate_colour(result.image)
    ocr_box = result.labels[0].payload["regions"][0]["bbox"]
    assert iou(ocr_box, found) >= 0.9, (pipeline, seed, ocr_box, found)
    # One draw for every label of the frame: the GUI element moved exactly like the OCR region.
    element = result.labels[1].payload["elements"][0]
    assert element["bbox"] == ocr_box
    x, y = result.labels[1].payload["actions"][0]["point"]
    assert found[0] < x < found[2] and found[1] < y < found[3]
    assert abs(x - (found[0] + found[2]) / 2) < 3 and abs(y - (found[1] + found[3]) / 2) < 3
    assert result.params["transforms"], "the lineage must say which transforms were drawn"
    assert labels[0].payload == ocr_payload(), "the input labels must not be modified"


@pytest.mark.parametrize("pipeline", ["rotate", "scale", "crop", "perspective"])
def test_each_geometric_pipeline_really_changes_the_geometry(pipeline):
    image = rectangle_scene()
    moved = []
    for seed in range(3):
        out, payload, _ = augment_sample(image, ocr_payload(), "ocr", pipeline, seed, registry=builtin_registry())
        moved.append(out.shape != image.shape or payload["regions"][0]["bbox"] != RECT)
    assert all(moved)


@pytest.mark.parametrize("pipeline", COLOUR + NOISE)
def test_pixel_level_augmentations_keep_every_label_identical(pipeline):
    image = rectangle_scene()
    payload = ocr_payload()
    for seed in (0, 1):
        out, new_payload, lineage = augment_sample(image, payload, "ocr", pipeline, seed, registry=builtin_registry())
        assert new_payload == payload
        assert out.shape == image.shape
        assert not np.array_equal(out, image), f"{pipeline} seed {seed} left the picture unchanged"
        if pipeline in COLOUR:
            assert locate_colour(out) == RECT
        else:
            found = locate_red(out)
            assert iou(found, RECT) >= 0.9, (pipeline, found)
        assert lineage["pipeline"] == pipeline and lineage["seed"] == seed


def test_a_draw_that_would_cut_a_box_is_rejected_not_silently_clipped():
    registry = builtin_registry()
    registry.register("far_shift", lambda: A.Affine(translate_px={"x": 250, "y": 0}, p=1.0))
    with pytest.raises(AugmentationRejected, match="cut by the picture's border"):
        augment_sample(rectangle_scene(), ocr_payload(), "ocr", "far_shift", 0, registry=registry)


@pytest.mark.parametrize("pipeline", ["rotate", "perspective"])
def test_the_new_border_is_one_flat_colour_the_pictures_edge_median(pipeline):
    """Replicating the edge would smear a box that touches it out past the box; a flat fill cannot."""
    image = rectangle_scene(box=[0, 60, 120, 120])  # the red rectangle touches the left edge
    registry = builtin_registry()
    for seed in range(4):
        result = augment_frame(
            image, [Labels("ocr", ocr_payload(box=[0.0, 60.0, 120.0, 120.0]))], registry.create(pipeline), seed
        )
        ((_, params),) = result.params["transforms"]
        assert params["fill"] == [float(v) for v in BACKGROUND], "the edge median of a grey picture is its grey"
        height, width = result.image.shape[:2]
        # Where no source pixel contributes to the interpolation: the corners the warp added.
        inside = cv2.warpPerspective(
            np.full(image.shape[:2], 255, np.uint8),
            np.asarray(params["matrix"], float),
            (width, height),
            flags=cv2.INTER_LINEAR,
        )
        if pipeline == "perspective":
            assert not inside.all(), "a keystone leaves some new border"
        assert (result.image[inside == 0] == BACKGROUND).all()
        found = locate_red(result.image)
        box = result.labels[0].payload["regions"][0]["bbox"]
        assert found[0] >= box[0] - 0.5 and found[2] <= box[2] + 0.5, (pipeline, seed, box, found)


def test_a_click_pushed_off_the_picture_is_rejected():
    registry = builtin_registry()
    registry.register("shift", lambda: A.Affine(translate_px={"x": -90, "y": 0}, p=1.0))
    payload = gui_payload(box=[100.0, 60.0, 200.0, 120.0])
    payload["actions"].append(
        {"type": "click", "target": None, "point": [10.0, 10.0], "end_point": None, "text": None, "direction": None}
    )
    with pytest.raises(AugmentationRejected, match=r"actions\[1\]\.point would leave the picture"):
        augment_sample(rectangle_scene(box=[100, 60, 200, 120]), payload, "gui_action", "shift", 0, registry=registry)


def test_spatial_and_layout_boxes_are_carried_too():
    image = rectangle_scene()
    spatial = {"objects": [{"bbox": RECT, "label": "card", "occluded": False}], "relations": [], "depth_order": [0]}
    code = {
        "html": "<div></div>",
        "layout": {
            "tag": "body",
            "role": "page",
            "bbox": [0.0, 0.0, 320.0, 240.0],
            "children": [{"tag": "div", "role": "card", "bbox": RECT, "children": []}],
        },
    }
    result = augment_frame(
        image, [Labels("spatial", spatial), Labels("image_to_code", code)], builtin_registry().create("rotate"), 3
    )
    found = locate_colour(result.image)
    assert iou(result.labels[0].payload["objects"][0]["bbox"], found) >= 0.9
    child = result.labels[1].payload["layout"]["children"][0]["bbox"]
    assert iou(child, found) >= 0.9
    height, width = result.image.shape[:2]
    assert iou(result.labels[1].payload["layout"]["bbox"], [0, 0, width, height]) >= 0.9


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", ["geometric", "noise", "color", "text_replace"])
def test_same_seed_same_pixels_and_boxes_even_with_a_fresh_registry(pipeline):
    image, labels = button_scene()
    first = augment_frame(image, labels, builtin_registry().create(pipeline), 7)
    again = augment_frame(image, labels, builtin_registry().create(pipeline), 7)
    shared = builtin_registry().create(pipeline)
    augment_frame(image, labels, shared, 8)  # a call in between must not leak into the next
    third = augment_frame(image, labels, shared, 7)
    for other in (again, third):
        assert np.array_equal(first.image, other.image)
        assert [label.payload for label in first.labels] == [label.payload for label in other.labels]
        assert first.params == other.params
    draws = {augment_frame(image, labels, shared, seed).image.tobytes() for seed in range(4)}
    assert len(draws) > 1, "different seeds should give different draws"


# --------------------------------------------------------------------------------------------
# Text replacement
# --------------------------------------------------------------------------------------------


def button_scene() -> tuple[np.ndarray, list[Labels]]:
    """A blue "Submit" button and a Chinese "提交" label, with OCR and GUI labels."""
    picture = Image.new("RGB", (360, 170), (245, 246, 248))
    draw = ImageDraw.Draw(picture)
    font = load_font(28)
    button = (24, 20, 224, 80)
    draw.rounded_rectangle(button, radius=8, fill=(0, 92, 197))
    draw.text((124, 50), "Submit", font=font, fill=(255, 255, 255), anchor="mm")
    submit = ink_bbox((124, 50), "Submit", font, "mm")
    for y in range(96, 160, 8):  # a striped panel: its surround is not flat, so it gets inpainted
        draw.rectangle((10, y, 200, y + 3), fill=(200, 208, 222))
    draw.text((30, 110), "提交", font=font, fill=(20, 20, 20))
    chinese = ink_bbox((30, 110), "提交", font)
    # Faint noise everywhere: painting a single pixel outside a box would show.
    grain = np.random.default_rng(0).integers(-5, 6, size=(170, 360, 1))
    picture = Image.fromarray(np.clip(np.asarray(picture).astype(int) + grain, 0, 255).astype(np.uint8))
    ocr = {
        "regions": [
            {
                "bbox": submit,
                "text": "Submit",
                "confidence": 0.9,
                "language": "en",
                "font_style": "regular",
                "reading_order": 0,
            },
            {
                "bbox": chinese,
                "text": "提交",
                "confidence": 0.9,
                "language": "zh",
                "font_style": "regular",
                "reading_order": 1,
            },
        ]
    }
    gui = {
        "elements": [
            {"bbox": [24.0, 20.0, 225.0, 81.0], "role": "button", "text": "Submit"},
            {"bbox": list(chinese), "role": "text", "text": "提交"},
        ],
        "instruction": 'Click "Submit" after reading 提交',
        "requested_instruction": "Click Submit",
        "actions": [
            {"type": "click", "target": 0, "point": [124.0, 50.0], "end_point": None, "text": None, "direction": None},
            {
                "type": "click",
                "target": 1,
                "point": [chinese[0] + 1, chinese[1] + 1],
                "end_point": None,
                "text": None,
                "direction": None,
            },
        ],
    }
    return np.asarray(picture).copy(), [Labels("ocr", ocr), Labels("gui_action", gui)]


def test_text_replacement_repaints_only_the_boxes_updates_labels_and_ocr_reads_it_back():
    from qwen_dataset.prelabel.rapidocr_backend import RapidOcrBackend

    image, labels = button_scene()
    registry = builtin_registry()
    registry.register_from_config(
        {
            "replace_two": {
                "factory": "qwen_dataset.augment.text_replace:TextReplacement",
                "options": {"max_replacements": 2},
            }
        }
    )
    result = augment_frame(image, labels, registry.create("replace_two"), 3)

    old_regions = labels[0].payload["regions"]
    painted = [
        [math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)]
        for x1, y1, x2, y2 in (r["bbox"] for r in old_regions)
    ]
    assert sorted(entry["box"] for entry in result.params["replacements"]) == sorted(painted)
    assert sorted(entry["fill"] for entry in result.params["replacements"]) == ["inpaint", "median"]
    inside = np.zeros(image.shape[:2], bool)
    for x1, y1, x2, y2 in painted:
        inside[y1:y2, x1:x2] = True
    assert np.array_equal(result.image[~inside], image[~inside]), "pixels outside the text boxes changed"
    for x1, y1, x2, y2 in painted:
        assert not np.array_equal(result.image[y1:y2, x1:x2], image[y1:y2, x1:x2])

    new_regions = result.labels[0].payload["regions"]
    assert new_regions[0]["text"] in ("Send", "Confirm", "Apply")
    assert new_regions[1]["text"] in ("发送", "确认") and new_regions[1]["language"] == "zh"
    for old, new in zip(old_regions, new_regions):
        assert pixel_box(new["bbox"], 360, 170) != pixel_box(old["bbox"], 360, 170) or new["text"] != old["text"]
        x1, y1, x2, y2 = pixel_box(new["bbox"], 360, 170)
        assert inside[y1:y2, x1:x2].all(), "the new text must lie inside the repainted box"

    gui = result.labels[1].payload
    assert [e["text"] for e in gui["elements"]] == [r["text"] for r in new_regions]
    assert gui["elements"][0]["bbox"] == [24.0, 20.0, 225.0, 81.0]  # a button keeps its box
    assert gui["elements"][1]["bbox"] == new_regions[1]["bbox"]  # a text element is boxed by its ink
    assert gui["instruction"] == f'Click "{new_regions[0]["text"]}" after reading {new_regions[1]["text"]}'
    assert gui["requested_instruction"] == f"Click {new_regions[0]['text']}"
    x, y = gui["actions"][1]["point"]
    x1, y1, x2, y2 = gui["elements"][1]["bbox"]
    assert x1 <= x <= x2 and y1 <= y <= y2

    engine = RapidOcrBackend(use_angle_cls=False).engine()
    read = engine(np.ascontiguousarray(result.image[:, :, ::-1]))
    read_back = {
        text: [min(p[0] for p in quad), min(p[1] for p in quad), max(p[0] for p in quad), max(p[1] for p in quad)]
        for quad, text, _score in read
    }
    for region in new_regions:
        assert region["text"] in read_back, (region["text"], sorted(read_back))
        assert iou(read_back[region["text"]], region["bbox"]) >= 0.5


def test_text_replacement_finds_a_buttons_text_without_an_ocr_label():
    image, labels = button_scene()
    gui = labels[1]
    code = Labels(
        "image_to_code",
        {
            "html": '<button>Submit</button><input value="Submit"><p>提交</p>',
            "layout": {"tag": "body", "role": "page", "bbox": [0.0, 0.0, 360.0, 170.0], "children": []},
        },
    )
    augmentation = TextReplacement(replacements={"Submit": "Go"})
    result = augment_frame(image, [gui, code], augmentation, 0)
    (entry,) = result.params["replacements"]
    x1, y1, x2, y2 = entry["box"]
    assert 24 <= x1 and 20 <= y1 and x2 <= 225 and y2 <= 81, "painting must stay inside the button"
    outside = np.ones(image.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert np.array_equal(result.image[outside], image[outside])
    button = result.labels[0].payload["elements"][0]
    assert button["text"] == "Go" and button["bbox"] == [24.0, 20.0, 225.0, 81.0]
    assert result.labels[0].payload["actions"][0]["point"] == [124.0, 50.0]
    assert result.labels[1].payload["html"] == '<button>Go</button><input value="Go"><p>提交</p>'
    # The new word is painted in the button's white, centred where "Submit" was.
    nx1, _, nx2, _ = entry["new_bbox"]
    assert abs((nx1 + nx2) / 2 - 124) <= 2 and entry["ink"] == [255, 255, 255]


def test_text_replacement_rejects_a_frame_without_replaceable_text():
    with pytest.raises(AugmentationRejected, match="replacement table"):
        augment_sample(
            rectangle_scene(), ocr_payload(text="Total"), "ocr", "text_replace", 0, registry=builtin_registry()
        )


def test_text_replacement_keeps_the_case_style():
    augmentation = TextReplacement()
    assert augmentation.lookup("SUBMIT") == ("SEND", "CONFIRM", "APPLY")
    assert augmentation.lookup(" cancel ") == ("close", "dismiss")
    assert augmentation.lookup("Submit order") is None


# --------------------------------------------------------------------------------------------
# Registry and plugins
# --------------------------------------------------------------------------------------------


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(UnknownAugmentationError) as error:
        augment_sample(rectangle_scene(), ocr_payload(), "ocr", "hflip", 0, registry=builtin_registry())
    message = str(error.value)
    assert "'hflip'" in message and "rotate" in message and "text_replace" in message and "entry-point" in message


def test_config_dotted_path_registers_a_user_factory_with_options(tmp_path, monkeypatch):
    (tmp_path / "user_augs.py").write_text(
        textwrap.dedent("""
        import albumentations as A

        def strong_blur(sigma=1.0):
            return A.GaussianBlur(sigma_limit=(sigma, sigma), blur_limit=0, p=1.0)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = default_registry(
        {
            "strong_blur": {"factory": "user_augs:strong_blur", "options": {"sigma": 2.5}},
            "plain_blur": "user_augs:strong_blur",
        },
        entry_points=False,
    )
    assert {"strong_blur", "plain_blur", "rotate"} <= set(registry.names())
    assert registry.origin("strong_blur") == "config user_augs:strong_blur"
    out, payload, lineage = augment_sample(rectangle_scene(), ocr_payload(), "ocr", "strong_blur", 1, registry=registry)
    assert payload == ocr_payload() and not np.array_equal(out, rectangle_scene())
    ((name, strong),) = lineage["params"]["transforms"]
    assert lineage["augmenter"] == f"albumentations=={A.__version__}: GaussianBlur [config user_augs:strong_blur]"
    _, _, plain_lineage = augment_sample(rectangle_scene(), ocr_payload(), "ocr", "plain_blur", 1, registry=registry)
    ((_, plain),) = plain_lineage["params"]["transforms"]
    # The options reached the factory: sigma 2.5 draws a wider kernel than the default 1.0.
    assert name == "GaussianBlur" and len(strong["kernel"]) > len(plain["kernel"])

    with pytest.raises(PluginError, match="cannot import module 'no_such_module'"):
        default_registry({"x": "no_such_module:factory"}, entry_points=False)
    with pytest.raises(PluginError, match="not a dotted path"):
        default_registry({"x": "user_augs.strong_blur"}, entry_points=False)
    with pytest.raises(ValueError, match="already registered"):
        default_registry({"rotate": "user_augs:strong_blur"}, entry_points=False)
    with pytest.raises(ValueError, match="not allowed"):
        default_registry({"Bad Name": "user_augs:strong_blur"}, entry_points=False)


def write_plugin_distribution(root, entries: dict[str, str], module_source: str) -> None:
    """A minimal installed distribution (dist-info with entry_points.txt) under ``root``."""
    (root / "acme_aug_plugin.py").write_text(textwrap.dedent(module_source))
    info = root / "acme_aug_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-aug-plugin\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[qwen_dataset.augmentations]\n{lines}\n")


def test_entry_point_plugins_are_found_and_loaded_on_first_use(tmp_path, monkeypatch):
    write_plugin_distribution(
        tmp_path,
        {"acme_sharpen": "acme_aug_plugin:sharpen", "acme_broken": "acme_aug_plugin:missing_factory"},
        """
        import albumentations as A

        def sharpen():
            return [A.Sharpen(alpha=(0.5, 0.5), lightness=(1.0, 1.0), p=1.0)]
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = default_registry()
    assert {"acme_sharpen", "acme_broken", "blur"} <= set(registry.names())
    assert registry.origin("acme_sharpen") == "entry point acme_aug_plugin:sharpen"
    _, _, lineage = augment_sample(rectangle_scene(), ocr_payload(), "ocr", "acme_sharpen", 0, registry=registry)
    # The lineage names the plugin's source, not only the albumentations transforms it built.
    assert lineage["augmenter"] == f"albumentations=={A.__version__}: Sharpen [entry point acme_aug_plugin:sharpen]"
    with pytest.raises(PluginError, match="acme_broken"):
        registry.create("acme_broken")
    registry.create("blur")  # a broken plugin does not take the others down


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def stored_frame(store: BlobStore, image: np.ndarray, upload: str, index: int, **overrides) -> FrameRecord:
    _, uri = store.put_bytes(encode_picture(image, "png"))
    values = dict(
        frame_id=frame_id_for(upload, index),
        upload_id=upload,
        batch="b1",
        kind="video_frame",
        index=index,
        page=None,
        t=index * 0.5,
        width=image.shape[1],
        height=image.shape[0],
        blob_uri=uri,
        low_light=False,
        mean_luma=150.0,
        enhanced_uri="",
    )
    values.update(overrides)
    return FrameRecord(**values)


def annotation(
    frame: FrameRecord, task: str, payload: dict, source: str = "human", author: str = "alice", status: str = "ok"
) -> AnnotationRecord:
    return AnnotationRecord(
        annotation_id=annotation_id_for(frame.frame_id, task, source, author),
        frame_id=frame.frame_id,
        upload_id=frame.upload_id,
        batch=frame.batch,
        task=task,
        source=source,
        author=author,
        template_version="ocr@1.0",
        created_at="2026-01-01T00:00:00+00:00",
        status=status,
        error="" if status == "ok" else "timeout",
        payload=dump_payload(payload if status == "ok" else {}),
        reviewed=True,
    )


def batch_inputs(store: BlobStore):
    upload = "c" * 64
    good = stored_frame(store, rectangle_scene(), upload, 0)
    other = stored_frame(store, rectangle_scene(box=[40, 40, 140, 100]), upload, 1)
    missing = stored_frame(store, rectangle_scene(), upload, 2, blob_uri="blobs/sha256/00/00/absent")
    annotations = [
        annotation(good, "ocr", ocr_payload()),
        annotation(good, "gui_action", gui_payload(), source="ai", author="qwen3-vl"),
        annotation(good, "ocr", {}, source="ai", author="rapidocr", status="failed"),
        annotation(other, "ocr", ocr_payload(box=[40, 40, 140, 100])),
        annotation(missing, "ocr", ocr_payload()),
    ]
    return to_frame([good, other, missing], FrameRecord), to_frame(annotations, AnnotationRecord)


def test_augment_batch_writes_pictures_and_rows_with_lineage(tmp_path):
    store = BlobStore(tmp_path)
    frames, annotations = batch_inputs(store)
    result = augment_batch(frames, annotations, store, ["rotate", "color"], seed=5)

    assert len(result.frames) == 4 and len(result.annotations) == 6
    assert result.rejected["reason"].str.contains("cannot read the frame's picture").sum() == 2
    assert set(result.rejected["source_frame_id"]) == {frames.loc[2, "frame_id"]}
    assert list(result.lineage.columns) == LINEAGE_COLUMNS and len(result.lineage) == 6
    for frame in result.frames.itertuples(index=False):
        source_id, pipeline, seed = frame.frame_id.split("~")
        assert source_id in set(frames["frame_id"]) and seed == "5" and pipeline in ("rotate", "color")
        assert frame.upload_id == "c" * 64 and frame.kind == "video_frame"
        picture = np.asarray(Image.open(io.BytesIO(store.read_bytes(frame.blob_uri))).convert("RGB"))
        assert picture.shape == (frame.height, frame.width, 3)
        for row in result.annotations[result.annotations["frame_id"] == frame.frame_id].itertuples(index=False):
            payload = load_payload(row.payload)
            box = payload["regions"][0]["bbox"] if row.task == "ocr" else payload["elements"][0]["bbox"]
            assert iou(box, locate_colour(picture)) >= 0.9
    merged = result.annotations.merge(result.lineage, on="annotation_id", suffixes=("", "_lineage"))
    sources = annotations.set_index("annotation_id")
    for row in merged.itertuples(index=False):
        source = sources.loc[row.source_annotation_id]
        assert (row.source, row.author, row.template_version, row.created_at) == (
            source.source,
            source.author,
            source.template_version,
            source.created_at,
        )
        assert row.task == source.task and json.loads(row.params)["transforms"]
        assert row.augmenter.endswith("[builtin]") and row.augmenter.startswith(f"albumentations=={A.__version__}: ")
    assert set(result.annotations["source"]) == {"human", "ai"}  # provenance kept, never "augmented"


def test_augment_batch_is_reproducible_and_refuses_unknown_names_before_writing(tmp_path):
    first_store, second_store = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    frames_a, annotations_a = batch_inputs(first_store)
    frames_b, annotations_b = batch_inputs(second_store)
    first = augment_batch(frames_a, annotations_a, first_store, ["geometric", "noise"], seed=1, copies=2)
    second = augment_batch(frames_b, annotations_b, second_store, ["geometric", "noise"], seed=1, copies=2)
    pd.testing.assert_frame_equal(first.frames, second.frames)
    pd.testing.assert_frame_equal(first.annotations, second.annotations)
    pd.testing.assert_frame_equal(first.lineage, second.lineage)
    assert set(first.lineage["seed"]) == {1, 2}

    before = sorted(p for p in (tmp_path / "a").rglob("*") if p.is_file())
    with pytest.raises(UnknownAugmentationError):
        augment_batch(frames_a, annotations_a, first_store, ["blur", "mirror"])
    assert sorted(p for p in (tmp_path / "a").rglob("*") if p.is_file()) == before
