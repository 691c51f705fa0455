"""Property test: after every geometric pipeline, each box still bounds its object's own pixels.

Random scenes of objects of known extent (solid rectangles, GUI-like buttons with a caption, text
lines), each in its own colour on a mid-grey background, go through every geometric pipeline of
the registry over many seeds. The truth after the transform is read back from the pixels: the
tight box of the pixels that are at least half the object's colour. Each output label is compared
with it:

* no object pixel may lie outside its label by more than ½ px (a pixel whose centre is inside the
  warped box reaches ½ px past it); after two resamplings in a row (``geometric``: a resize, then
  a rotation or keystone) by more than 2 - √2 ≈ 0.59 px, the most that the half-coverage
  threshold can add when a half-covered edge pixel is interpolated again;
* the label of a solid shape equals the tight box of its pixels within 1 px (the corner of a
  rotated or keystoned rectangle is a point, so the nearest pixel centre can sit that far inside).

:func:`measure` is what ``benchmarks/bench_augment_geometry.py`` prints per pipeline.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Sequence

import albumentations as A
import numpy as np
import pytest
from PIL import Image, ImageDraw

from qwen_dataset.augment import AugmentationRegistry, AugmentationRejected, Labels, augment_frame, builtin_registry
from qwen_dataset.samples.drawing import load_font

WIDTH, HEIGHT = 320, 240
SEEDS = range(50)
BACKGROUND = np.array([128, 128, 128], float)
# Corners of the RGB cube around the grey background: every pair is at least 70° apart seen from
# the background, so a blend of one colour with the background never passes for another colour.
PALETTE = [(230, 30, 30), (30, 200, 30), (30, 30, 230), (230, 230, 30), (230, 30, 230), (30, 230, 230)]
CAPTION = (250, 250, 250)
WORDS = ["Total", "Save", "Pay now", "Cancel", "Invoice 42", "OK", "Settings"]
GAP = 6  # px between objects, so no pixel blends two of them even after a rotation
LABEL_ROUNDING = 0.01  # labels are stored with two decimals
# How far an object's pixels (those at least half its colour) may reach past the exact warped box,
# by the number of resampling steps: ½ px after one; after two, an edge pixel a-covered is
# interpolated again, and 2 - a - 1/(2a) peaks at a = 1/√2.
CONTAIN_TOLERANCE = {0: 0.5, 1: 0.5, 2: 2 - math.sqrt(2)}
TIGHT_TOLERANCE = 1.0


@dataclasses.dataclass
class SceneObject:
    kind: str  # "rect", "button" (a rounded rectangle with a caption) or "text"
    colour: tuple[int, int, int]
    box: list[float]  # tight box of the object's pixels (text: of every inked pixel)

    @property
    def solid(self) -> bool:
        """Shapes whose tight box is their label exactly (text ink is anti-aliased)."""
        return self.kind in ("rect", "button")


def _place(rng: random.Random, size: tuple[int, int], taken: list[list[float]]) -> list[int] | None:
    """A free spot for a ``size`` box; a third of the boxes touch the picture's edge on purpose."""
    w, h = size
    for _ in range(50):
        x, y = rng.randint(0, WIDTH - w), rng.randint(0, HEIGHT - h)
        if rng.random() < 0.33:
            x = rng.choice([0, WIDTH - w])
        if rng.random() < 0.33:
            y = rng.choice([0, HEIGHT - h])
        box = [x, y, x + w, y + h]
        if all(
            box[2] + GAP <= t[0] or t[2] + GAP <= box[0] or box[3] + GAP <= t[1] or t[3] + GAP <= box[1] for t in taken
        ):
            return box
    return None


def _text_layer(rng: random.Random, taken: list[list[float]]) -> tuple[Image.Image, list[int]] | None:
    word, font = rng.choice(WORDS), load_font(rng.randint(14, 24))
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), word, font=font)
    spot = _place(rng, (right - left + 2, bottom - top + 2), taken)
    if spot is None:
        return None
    layer = Image.new("L", (WIDTH, HEIGHT), 0)
    ImageDraw.Draw(layer).text((spot[0] - left + 1, spot[1] - top + 1), word, font=font, fill=255)
    return layer, spot


def _shape_layer(rng: random.Random, kind: str, taken: list[list[float]]) -> tuple[Image.Image, list[int]] | None:
    size = (rng.randint(30, 110), rng.randint(18, 40)) if kind == "button" else (rng.randint(8, 90), rng.randint(6, 70))
    spot = _place(rng, size, taken)
    if spot is None:
        return None
    layer = Image.new("L", (WIDTH, HEIGHT), 0)
    x1, y1, x2, y2 = spot
    if kind == "button":
        ImageDraw.Draw(layer).rounded_rectangle((x1, y1, x2 - 1, y2 - 1), radius=5, fill=255)
    else:
        ImageDraw.Draw(layer).rectangle((x1, y1, x2 - 1, y2 - 1), fill=255)
    return layer, spot


def random_scene(seed: int) -> tuple[np.ndarray, list[SceneObject]]:
    """A picture of 3-6 objects, each in its own colour, and the tight box of each object's pixels."""
    rng = random.Random(seed)
    image = np.tile(BACKGROUND, (HEIGHT, WIDTH, 1))
    objects: list[SceneObject] = []
    taken: list[list[float]] = []
    colours = rng.sample(PALETTE, rng.randint(3, len(PALETTE)))
    for colour in colours:
        kind = rng.choice(["rect", "rect", "button", "text"])
        placed = _text_layer(rng, taken) if kind == "text" else _shape_layer(rng, kind, taken)
        if placed is None:
            continue
        layer, spot = placed
        alpha = np.asarray(layer, float)[:, :, None] / 255.0
        image = image * (1 - alpha) + np.array(colour, float) * alpha
        if kind == "button":  # a caption inside, in a colour that belongs to no object
            caption = Image.new("L", (WIDTH, HEIGHT), 0)
            font = load_font(max(10, (spot[3] - spot[1]) // 2))
            centre = ((spot[0] + spot[2]) // 2, (spot[1] + spot[3]) // 2)
            ImageDraw.Draw(caption).text(centre, rng.choice(WORDS)[:6], font=font, fill=255, anchor="mm")
            inner = np.zeros((HEIGHT, WIDTH, 1))
            inner[spot[1] + 3 : spot[3] - 3, spot[0] + 3 : spot[2] - 3] = 1.0
            ink = np.asarray(caption, float)[:, :, None] / 255.0 * inner
            image = image * (1 - ink) + np.array(CAPTION, float) * ink
        taken.append(list(spot))
        ys, xs = np.nonzero(alpha[:, :, 0] > 0)
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        objects.append(SceneObject(kind, colour, box))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), objects


def scene_labels(objects: Sequence[SceneObject]) -> list[Labels]:
    payload = {"objects": [{"bbox": list(o.box), "label": o.kind} for o in objects], "relations": []}
    return [Labels("spatial", payload)]


def pixel_box(image: np.ndarray, colour: Sequence[int]) -> list[float] | None:
    """Tight box (x2/y2 exclusive) of the pixels that are at least half ``colour`` over the background."""
    direction = np.asarray(colour, float) - BACKGROUND
    offset = image.astype(float) - BACKGROUND
    alpha = offset @ direction / (direction @ direction)
    off_line = np.linalg.norm(offset - alpha[:, :, None] * direction, axis=2)
    mine = (alpha >= 0.5) & (off_line <= 0.35 * np.linalg.norm(direction))
    ys, xs = np.nonzero(mine)
    if not xs.size:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@dataclasses.dataclass
class BoxError:
    pipeline: str
    seed: int
    kind: str
    label: list[float]
    truth: list[float]
    on_edge: bool  # the object touched the source picture's edge
    resamplings: int  # how many of the applied transforms resampled the picture (all but crops)

    @property
    def overhang(self) -> float:
        """How far the object's pixels reach past its label (0 when the label contains them)."""
        (lx1, ly1, lx2, ly2), (tx1, ty1, tx2, ty2) = self.label, self.truth
        return max(0.0, lx1 - tx1, ly1 - ty1, tx2 - lx2, ty2 - ly2)

    @property
    def deviation(self) -> float:
        """The largest difference of one coordinate between the label and the pixels' tight box."""
        return max(abs(a - b) for a, b in zip(self.label, self.truth))


def geometric_pipelines(registry: AugmentationRegistry) -> list[str]:
    """Every registered pipeline that moves pixels (and so must move boxes)."""
    return [name for name in registry.names() if getattr(registry.create(name), "pixel_only", True) is False]


def measure(pipeline: str, seeds: Iterable[int], registry: AugmentationRegistry) -> tuple[list[BoxError], int]:
    """Every object's label against its pixels after ``pipeline``; returns the errors and the rejected draws."""
    augmentation = registry.create(pipeline)
    errors: list[BoxError] = []
    rejected = 0
    for seed in seeds:
        image, objects = random_scene(seed)
        try:
            result = augment_frame(image, scene_labels(objects), augmentation, seed)
        except AugmentationRejected:
            rejected += 1
            continue
        resamplings = sum("Crop" not in name for name, _ in result.params["transforms"])
        for item, label in zip(objects, result.labels[0].payload["objects"]):
            truth = pixel_box(result.image, item.colour)
            assert truth is not None, f"{pipeline} seed {seed}: the {item.kind} in {item.colour} vanished"
            on_edge = item.box[0] == 0 or item.box[1] == 0 or item.box[2] == WIDTH or item.box[3] == HEIGHT
            errors.append(BoxError(pipeline, seed, item.kind, label["bbox"], truth, on_edge, resamplings))
    return errors, rejected


def fractional_box(seed: int) -> list[float]:
    """A box whose edges are not whole pixels, where a crop that rounds the wrong way cuts it."""
    rng = random.Random(seed)
    x1, y1 = rng.uniform(1, 150), rng.uniform(1, 100)
    return [round(x1, 2), round(y1, 2), round(x1 + rng.uniform(5, 160), 2), round(y1 + rng.uniform(5, 130), 2)]


def worst(errors: Iterable[BoxError], key: str) -> BoxError:
    return max(errors, key=lambda error: getattr(error, key))


# --------------------------------------------------------------------------------------------
# The properties
# --------------------------------------------------------------------------------------------


def test_the_scenes_are_what_the_property_test_assumes():
    for seed in range(10):
        image, objects = random_scene(seed)
        assert len(objects) >= 2 and len({o.colour for o in objects}) == len(objects)
        for item in objects:
            found = pixel_box(image, item.colour)
            if item.solid:
                assert found == item.box, (seed, item)
            else:  # anti-aliased ink: half-covered pixels lie inside the box of every inked pixel
                assert found is not None and all(abs(a - b) <= 1 for a, b in zip(found, item.box)), (seed, item)
    touching = sum(o.box[0] == 0 or o.box[2] == WIDTH for seed in SEEDS for o in random_scene(seed)[1])
    assert touching >= 20, "objects on the picture's edge are the case a border fill gets wrong"


@pytest.fixture(scope="module")
def registry() -> AugmentationRegistry:
    return builtin_registry()


def test_every_geometric_pipeline_is_covered(registry):
    assert {"rotate", "scale", "crop", "perspective", "geometric"} <= set(geometric_pipelines(registry))


@pytest.mark.parametrize("pipeline", geometric_pipelines(builtin_registry()))
def test_every_box_bounds_its_objects_pixels(pipeline, registry):
    errors, rejected = measure(pipeline, SEEDS, registry)
    assert rejected == 0, f"{pipeline}: {rejected} of {len(SEEDS)} draws rejected; these scenes leave room for all"
    poking = [e for e in errors if e.overhang > CONTAIN_TOLERANCE[e.resamplings] + LABEL_ROUNDING]
    if poking:
        example = worst(poking, "overhang")
        pytest.fail(
            f"{len(poking)} boxes do not contain their object's pixels; worst by {example.overhang:.2f} px: {example}"
        )
    loose = worst((e for e in errors if e.kind != "text"), "deviation")
    assert loose.deviation <= TIGHT_TOLERANCE, f"the box is not the tight box of a solid shape: {loose}"


def test_a_crop_moves_boxes_without_resizing_them(registry):
    """A crop is a translation: a box that comes out smaller was cut and clipped."""
    augmentation = registry.create("crop")
    for seed in range(200):
        box = fractional_box(seed)
        image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
        result = augment_frame(
            image, [Labels("spatial", {"objects": [{"bbox": box, "label": "x"}]})], augmentation, seed
        )
        out = result.labels[0].payload["objects"][0]["bbox"]
        assert math.isclose(out[2] - out[0], box[2] - box[0], abs_tol=0.011), (seed, box, out)
        assert math.isclose(out[3] - out[1], box[3] - box[1], abs_tol=0.011), (seed, box, out)


@pytest.mark.parametrize("cut", [1, 0.5])
def test_a_cut_of_any_size_is_rejected(cut):
    registry = builtin_registry()
    registry.register("fixed_crop", lambda: A.Crop(x_min=41, y_min=0, x_max=WIDTH, y_max=HEIGHT, p=1.0))
    box = [41.0 - cut, 60.0, 120.0, 100.0]
    image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    with pytest.raises(AugmentationRejected, match="cut by the picture's border"):
        augment_frame(
            image, [Labels("spatial", {"objects": [{"bbox": box, "label": "x"}]})], registry.create("fixed_crop"), 0
        )
