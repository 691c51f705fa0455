"""Augmentation pipelines: albumentations transforms that keep every label of a frame correct.

Built-in pipelines (see :func:`builtin_registry`):

========================  ====================================================================
geometric                 ``rotate`` (±4°, whole picture kept), ``scale`` (0.7-1.2x),
                          ``crop`` (never cuts a labelled box), ``perspective`` (slight
                          keystone, whole picture kept), ``geometric`` (a random mix of them)
colour                    ``brightness``, ``contrast``, ``saturation``, ``hue``, ``color``
                          (all four): the differences between displays and cameras
synthetic noise           ``blur``, ``motion_blur``, ``pixelate`` (downscale then nearest
                          upscale, a mosaic), ``shadow``, ``jpeg`` (compression artefacts),
                          ``noise`` (one of them)
text                      ``text_replace`` (:mod:`qwen_dataset.augment.text_replace`)
========================  ====================================================================

There is deliberately no horizontal flip: mirrored text is wrong data for the text tasks, and it
would turn ``left_of`` into ``right_of`` in spatial labels.

Labels follow the transform, exactly: the geometric built-ins are the albumentations transforms
of :mod:`qwen_dataset.augment.transforms`, which map pixels, boxes and points with one mapping
and fill a grown canvas with the picture's edge colour (never by repeating edge pixels, which
would drag an object touching the edge out past its box). ``tests/test_augment_geometry.py``
checks every output box against the pixels of its object.

Every box of a payload (``ocr`` regions, ``gui_action`` elements, ``spatial`` objects, the
``image_to_code`` layout tree) goes through albumentations as a ``pascal_voc`` box and every
action point (``gui_action`` ``point``/``end_point``) as a keypoint, so they move with the
pixels. A geometric draw must keep every labelled box whole and every action point inside the
picture: a text line cut by the border no longer matches its text, and a click off the screen is
no action, so such a draw raises :class:`AugmentationRejected` and the batch records it. A cut
of any size counts (only float noise of 0.005 px is let through); a cut box is never clipped
into the picture. Pipelines made only of pixel-level transforms leave the labels untouched.

Reproducible: the same seed and the same input give the same pixels and boxes (albumentations
2's ``Compose.set_random_seed`` reseeds before each call).

Batch output (:func:`augment_batch`): new frame and annotation rows with the canonical columns.
An augmented frame's id is ``<source frame_id>~<pipeline>~<seed>``; it keeps the source's
``upload_id`` (so it always lands in the same train/val/test split as its source), ``batch``,
``kind``, ``index``, ``page`` and ``t``. Its annotations keep ``source`` (``ai`` | ``human`` |
``arbitrated``), ``author``, ``template_version``, ``created_at`` and ``reviewed`` of the label
they were derived from: the label's provenance is unchanged, only the picture was transformed.
What was applied lives in a separate lineage table (one row per augmented annotation: source
frame and annotation ids, pipeline, seed, the exact random parameters drawn, and the augmenter:
library version, transforms and the pipeline's origin as the registry knows it: ``builtin``,
``entry point pkg.mod:factory`` or ``config pkg.mod:factory``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

# albumentations asks PyPI for a newer version on import unless told not to; nothing in this
# project may reach the network at run time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from qwen_dataset.augment.registry import (  # noqa: E402
    Augmentation,
    AugmentationRegistry,
    AugmentationRejected,
    AugmentedFrame,
    Labels,
    PluginError,
)
from qwen_dataset.augment.text_replace import TextReplacement  # noqa: E402
from qwen_dataset.augment.transforms import (  # noqa: E402
    ExactAffine,
    ExactBBoxSafeRandomCrop,
    ExactPerspective,
    ExactRandomScale,
)
from qwen_dataset.geometry import clip_box, is_valid_box  # noqa: E402
from qwen_dataset.ingest.frames import FrameOptions, encode_picture, load_image_rgb, mean_luma  # noqa: E402
from qwen_dataset.payloads import BOX_TASKS, iter_boxes, iter_points  # noqa: E402
from qwen_dataset.records import (  # noqa: E402
    AUGMENTATION_LINEAGE_COLUMNS,
    AUGMENTATION_REJECTED_COLUMNS,
    AnnotationRecord,
    AnnotationStatus,
    FrameRecord,
    annotation_id_for,
    dump_payload,
    from_frame,
    load_payload,
    to_frame,
)
from qwen_dataset.store.blobs import BlobStore  # noqa: E402

# Tasks whose payload geometry (boxes, points) is carried through a transform.
GEOMETRY_TASKS = frozenset(BOX_TASKS)
# A box corner may land this far outside the picture and still count as inside: float noise of the
# warp only (albumentations does some box maths in float32), well below the 0.01 px that labels are
# rounded to. Anything more is a cut, and a cut box is rejected, never clipped.
BOX_BORDER_TOLERANCE_PX = 0.005
# An action point is a location, not an extent: one that lands within a pixel of the border is
# clamped onto it (it still hits the edge pixel).
POINT_BORDER_TOLERANCE_PX = 1.0
COORDINATE_DECIMALS = 2

# The lineage and rejection tables' columns live with the other manifest columns (records.py), so
# code that only needs them does not load albumentations.
LINEAGE_COLUMNS = AUGMENTATION_LINEAGE_COLUMNS
REJECTED_COLUMNS = AUGMENTATION_REJECTED_COLUMNS


# --------------------------------------------------------------------------------------------
# Payload geometry
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Ref:
    """Where one box or point lives in a payload, so the transformed value can be written back."""

    label: int
    container: dict[str, Any]
    key: str
    where: str


def box_refs(label_index: int, labels: Labels) -> list[_Ref]:
    """Every box of a payload, wherever its task keeps them (:func:`qwen_dataset.payloads.iter_boxes`)."""
    return [
        _Ref(label_index, box.item, "bbox", f"{labels.task} {box.path}.bbox")
        for box in iter_boxes(labels.task, labels.payload)
    ]


def point_refs(label_index: int, labels: Labels) -> list[_Ref]:
    """Every point of a payload that is set (GUI actions' ``point`` and ``end_point``)."""
    return [
        _Ref(label_index, point.item, point.field, f"{labels.task} {point.path}")
        for point in iter_points(labels.task, labels.payload)
    ]


def _corners(box: Sequence[float]) -> list[list[float]]:
    x1, y1, x2, y2 = box
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def _inside(point: Sequence[float], width: int, height: int, tolerance: float) -> bool:
    x, y = float(point[0]), float(point[1])
    return -tolerance <= x <= width + tolerance and -tolerance <= y <= height + tolerance


def to_jsonable(value: Any, decimals: int = 6) -> Any:
    """albumentations' applied parameters (numpy arrays, tuples, numpy scalars) as plain JSON."""
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item, decimals) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), decimals)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, decimals) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return round(number, decimals) if np.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    return repr(value)


# --------------------------------------------------------------------------------------------
# albumentations wrapper
# --------------------------------------------------------------------------------------------


def _leaf_transforms(transforms: Sequence[Any]) -> Iterator[A.BasicTransform]:
    for transform in transforms:
        if isinstance(transform, A.BaseCompose):
            yield from _leaf_transforms(transform.transforms)
        else:
            yield transform


class AlbumentationsAugmentation:
    """A list of albumentations transforms run as one ``A.Compose`` with boxes and action points.

    ``min_visibility`` is albumentations' own filter; it is 0 by default because this wrapper
    refuses any draw that cuts a box (see the module docstring) rather than dropping labels.
    One instance reseeds its ``Compose`` on every call: share it between calls, not between threads.
    """

    def __init__(
        self,
        name: str,
        transforms: Sequence[A.BasicTransform | A.BaseCompose],
        tasks: frozenset[str] = GEOMETRY_TASKS,
        min_visibility: float = 0.0,
    ) -> None:
        transforms = list(transforms)
        if not transforms:
            raise ValueError(f"augmentation {name!r} has no transforms")
        self.name = name
        self.tasks = frozenset(tasks)
        self.transform_names = [type(t).__name__ for t in _leaf_transforms(transforms)]
        self.pixel_only = all(isinstance(t, A.ImageOnlyTransform) for t in _leaf_transforms(transforms))
        if self.pixel_only:
            # No label moves, so none is handed to albumentations: the payload stays bit-identical.
            self.compose = A.Compose(transforms, seed=0, save_applied_params=True)
        else:
            self.compose = A.Compose(
                transforms,
                bbox_params=A.BboxParams(
                    format="pascal_voc", label_fields=["box_index"], min_visibility=min_visibility, clip=True
                ),
                keypoint_params=A.KeypointParams(format="xy", label_fields=["point_index"], remove_invisible=False),
                seed=0,
                save_applied_params=True,
            )

    def describe(self) -> str:
        return f"albumentations=={A.__version__}: {' + '.join(self.transform_names)}"

    def apply(self, image: np.ndarray, labels: Sequence[Labels], seed: int) -> AugmentedFrame:
        out_labels = copy.deepcopy(list(labels))
        self.compose.set_random_seed(seed)
        if self.pixel_only:
            result = self.compose(image=image)
            return AugmentedFrame(result["image"], out_labels, self._params(result))
        height, width = image.shape[:2]
        boxes = [ref for index, item in enumerate(out_labels) for ref in box_refs(index, item)]
        points = [ref for index, item in enumerate(out_labels) for ref in point_refs(index, item)]
        box_values = [_checked_input_box(ref, width, height) for ref in boxes]
        # Each box's corners travel as keypoints too: albumentations clips boxes silently, the
        # corners show whether the transform pushed part of a box out of the picture.
        keypoints = [list(map(float, ref.container[ref.key])) for ref in points]
        keypoints += [corner for box in box_values for corner in _corners(box)]
        result = self.compose(
            image=image,
            bboxes=np.asarray(box_values, dtype=np.float64).reshape(-1, 4),
            box_index=np.arange(len(box_values)),
            keypoints=np.asarray(keypoints, dtype=np.float64).reshape(-1, 2),
            point_index=np.arange(len(keypoints)),
        )
        new_height, new_width = result["image"].shape[:2]
        self._write_points(points, result["keypoints"], new_width, new_height)
        self._check_corners(boxes, result["keypoints"][len(points) :], new_width, new_height)
        self._write_boxes(boxes, result["bboxes"], result["box_index"], new_width, new_height)
        return AugmentedFrame(result["image"], out_labels, self._params(result))

    @staticmethod
    def _params(result: Mapping[str, Any]) -> dict[str, Any]:
        return {"transforms": [[name, to_jsonable(params)] for name, params in result.get("applied_transforms", [])]}

    @staticmethod
    def _write_points(refs: Sequence[_Ref], moved: np.ndarray, width: int, height: int) -> None:
        for ref, point in zip(refs, moved):
            if not _inside(point, width, height, POINT_BORDER_TOLERANCE_PX):
                raise AugmentationRejected(f"{ref.where} would leave the picture ({point[0]:.1f}, {point[1]:.1f})")
            ref.container[ref.key] = [
                round(min(max(float(point[0]), 0.0), width), COORDINATE_DECIMALS),
                round(min(max(float(point[1]), 0.0), height), COORDINATE_DECIMALS),
            ]

    @staticmethod
    def _check_corners(refs: Sequence[_Ref], corners: np.ndarray, width: int, height: int) -> None:
        for index, ref in enumerate(refs):
            if not all(_inside(c, width, height, BOX_BORDER_TOLERANCE_PX) for c in corners[4 * index : 4 * index + 4]):
                raise AugmentationRejected(f"{ref.where} would be cut by the picture's border")

    @staticmethod
    def _write_boxes(refs: Sequence[_Ref], moved: np.ndarray, kept: Sequence[Any], width: int, height: int) -> None:
        by_index = {int(index): box for index, box in zip(kept, moved)}
        for index, ref in enumerate(refs):
            if index not in by_index:
                raise AugmentationRejected(f"{ref.where} was dropped by the transform")
            box = [round(v, COORDINATE_DECIMALS) for v in clip_box(by_index[index][:4], width, height)]
            if not is_valid_box(box, width, height):
                raise AugmentationRejected(f"{ref.where} collapsed to an empty box {box}")
            ref.container[ref.key] = box


def _checked_input_box(ref: _Ref, width: int, height: int) -> list[float]:
    """The box clipped to the frame (absorbs sub-pixel drift); an empty or foreign box is refused."""
    raw = ref.container.get(ref.key)
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise AugmentationRejected(f"{ref.where} is not a [x1, y1, x2, y2] box: {raw!r}")
    box = clip_box(raw, width, height)
    if not is_valid_box(box, width, height):
        raise AugmentationRejected(f"{ref.where} {list(raw)} is empty or outside the {width}x{height} frame")
    return box


# --------------------------------------------------------------------------------------------
# Built-in pipelines (each factory's keyword options can be overridden from configuration)
# --------------------------------------------------------------------------------------------


def rotate(max_degrees: float = 4.0) -> list[A.BasicTransform]:
    """Small rotation; the canvas grows so the whole picture (and every box) stays visible.

    The new corners are filled with the picture's edge colour (see :mod:`qwen_dataset.augment.transforms`).
    """
    return [ExactAffine(rotate=(-max_degrees, max_degrees), fit_output=True, border_mode=cv2.BORDER_CONSTANT, p=1.0)]


def scale(low: float = 0.7, high: float = 1.2) -> list[A.BasicTransform]:
    """Resize the whole picture (other screen resolutions); area interpolation when shrinking."""
    return [
        ExactRandomScale(
            scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR, area_for_downscale="image", p=1.0
        )
    ]


def crop(erosion_rate: float = 0.0) -> list[A.BasicTransform]:
    """Random crop that contains every labelled box."""
    return [ExactBBoxSafeRandomCrop(erosion_rate=erosion_rate, p=1.0)]


def perspective(low: float = 0.02, high: float = 0.05) -> list[A.BasicTransform]:
    """Slight keystone, as a photo of a screen; the whole warped picture is kept, in the original size."""
    return [
        ExactPerspective(scale=(low, high), keep_size=True, fit_output=True, border_mode=cv2.BORDER_CONSTANT, p=1.0)
    ]


def geometric() -> list[A.BasicTransform | A.BaseCompose]:
    """A crop, a resize and a rotation or keystone, each drawn at random."""
    return [
        *[replace_probability(t, 0.5) for t in crop()],
        *[replace_probability(t, 0.5) for t in scale()],
        A.OneOf([*rotate(), *perspective()], p=1.0),
    ]


def brightness(limit: float = 0.25) -> list[A.BasicTransform]:
    return [A.RandomBrightnessContrast(brightness_limit=(-limit, limit), contrast_limit=(0.0, 0.0), p=1.0)]


def contrast(limit: float = 0.25) -> list[A.BasicTransform]:
    return [A.RandomBrightnessContrast(brightness_limit=(0.0, 0.0), contrast_limit=(-limit, limit), p=1.0)]


def saturation(limit: float = 0.4) -> list[A.BasicTransform]:
    return [A.ColorJitter(brightness=0.0, contrast=0.0, saturation=(1.0 - limit, 1.0 + limit), hue=0.0, p=1.0)]


def hue(limit: float = 0.04) -> list[A.BasicTransform]:
    """Hue shift as a fraction of the colour wheel (0.04 = ±14°)."""
    return [A.ColorJitter(brightness=0.0, contrast=0.0, saturation=0.0, hue=(-limit, limit), p=1.0)]


def color() -> list[A.BasicTransform]:
    return [A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.3, hue=0.03, p=1.0)]


def blur(low_sigma: float = 0.5, high_sigma: float = 1.5) -> list[A.BasicTransform]:
    return [A.GaussianBlur(sigma_limit=(low_sigma, high_sigma), blur_limit=0, p=1.0)]


def motion_blur(max_kernel: int = 7) -> list[A.BasicTransform]:
    return [A.MotionBlur(blur_limit=(3, max_kernel), p=1.0)]


def pixelate(low: float = 0.3, high: float = 0.6) -> list[A.BasicTransform]:
    """Downscale with area averaging, upscale with nearest neighbour: a mosaic of blocks."""
    return [
        A.Downscale(
            scale_range=(low, high),
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_NEAREST},
            p=1.0,
        )
    ]


def shadow() -> list[A.BasicTransform]:
    return [
        A.RandomShadow(
            shadow_roi=(0.0, 0.0, 1.0, 1.0),
            num_shadows_limit=(1, 2),
            shadow_dimension=5,
            shadow_intensity_range=(0.3, 0.6),
            p=1.0,
        )
    ]


def jpeg(low_quality: int = 20, high_quality: int = 60) -> list[A.BasicTransform]:
    return [A.ImageCompression(compression_type="jpeg", quality_range=(low_quality, high_quality), p=1.0)]


def noise() -> list[A.BaseCompose]:
    return [A.OneOf([*blur(), *motion_blur(), *pixelate(), *shadow(), *jpeg()], p=1.0)]


def replace_probability(transform: A.BasicTransform, p: float) -> A.BasicTransform:
    transform.p = p
    return transform


BUILTINS: dict[str, Any] = {
    "rotate": rotate,
    "scale": scale,
    "crop": crop,
    "perspective": perspective,
    "geometric": geometric,
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
    "hue": hue,
    "color": color,
    "blur": blur,
    "motion_blur": motion_blur,
    "pixelate": pixelate,
    "shadow": shadow,
    "jpeg": jpeg,
    "noise": noise,
    "text_replace": TextReplacement,
}


def as_augmentation(name: str, built: Any) -> Augmentation:
    """What a factory returned -> an :class:`Augmentation` (albumentations transforms get wrapped)."""
    if isinstance(built, A.Compose):
        return AlbumentationsAugmentation(name, built.transforms)
    if isinstance(built, (A.BasicTransform, A.BaseCompose)):
        return AlbumentationsAugmentation(name, [built])
    if (
        isinstance(built, (list, tuple))
        and built
        and all(isinstance(t, (A.BasicTransform, A.BaseCompose)) for t in built)
    ):
        return AlbumentationsAugmentation(name, built)
    if isinstance(built, Augmentation):
        return built
    raise PluginError(
        f"the factory of augmentation {name!r} returned {type(built).__name__}; it must return an "
        f"albumentations transform, a list of them, or an object with tasks, describe() and "
        f"apply(image, labels, seed) (see qwen_dataset.augment.registry.Augmentation)"
    )


def builtin_registry() -> AugmentationRegistry:
    """A registry holding only the built-in pipelines."""
    registry = AugmentationRegistry(as_augmentation)
    for name, factory in BUILTINS.items():
        registry.register(name, factory, origin="builtin")
    return registry


def default_registry(config: Mapping[str, Any] | None = None, *, entry_points: bool = True) -> AugmentationRegistry:
    """Built-ins, then installed plugins (entry points), then ``config`` (name -> dotted path)."""
    registry = builtin_registry()
    if entry_points:
        registry.load_entry_points()
    if config:
        registry.register_from_config(config)
    return registry


@lru_cache(maxsize=1)
def _shared_default_registry() -> AugmentationRegistry:
    return default_registry()


# --------------------------------------------------------------------------------------------
# One sample
# --------------------------------------------------------------------------------------------


def _checked_image(image: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", None)
        raise ValueError(
            f"{what} must be an RGB uint8 array of shape (height, width, 3), got shape {shape} dtype {dtype}"
        )
    return np.ascontiguousarray(image)


def augment_frame(
    image_rgb: np.ndarray, labels: Sequence[Labels], augmentation: Augmentation, seed: int
) -> AugmentedFrame:
    """Apply one augmentation to a frame and all its labels at once (the same draw for every label)."""
    unsupported = sorted({item.task for item in labels} - set(augmentation.tasks))
    if unsupported:
        raise ValueError(
            f"{augmentation.describe()} cannot keep {unsupported} labels correct; it supports {sorted(augmentation.tasks)}"
        )
    result = augmentation.apply(_checked_image(image_rgb, "the image"), labels, int(seed))
    result.image = _checked_image(result.image, f"the output of {augmentation.describe()}")
    return result


def augment_sample(
    image_rgb: np.ndarray,
    annotation_payload: Mapping[str, Any] | str,
    task: str,
    pipeline_name: str,
    seed: int,
    *,
    registry: AugmentationRegistry | None = None,
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Augment one picture and one annotation payload.

    Returns ``(image, payload, lineage)``; ``lineage`` is ``{"pipeline", "seed", "augmenter",
    "params"}`` with the exact random draw and the origin of the pipeline (see
    :meth:`AugmentationRegistry.augmenter`). Raises :class:`AugmentationRejected` when this draw
    cannot keep the labels correct (try another seed), :class:`UnknownAugmentationError` for a
    name that is not registered.

    >>> import numpy as np
    >>> image = np.full((40, 60, 3), 255, np.uint8)
    >>> _, payload, lineage = augment_sample(image, {"regions": []}, "ocr", "blur", seed=1)
    >>> lineage["pipeline"], payload
    ('blur', {'regions': []})
    """
    registry = registry or _shared_default_registry()
    augmentation = registry.create(pipeline_name)
    payload = load_payload(annotation_payload) if isinstance(annotation_payload, str) else dict(annotation_payload)
    result = augment_frame(image_rgb, [Labels(task, payload)], augmentation, seed)
    lineage = {
        "pipeline": pipeline_name,
        "seed": int(seed),
        "augmenter": registry.augmenter(pipeline_name),
        "params": result.params,
    }
    return result.image, result.labels[0].payload, lineage


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class AugmentedBatch:
    """Rows produced by :func:`augment_batch`; nothing is dropped without a row in ``rejected``."""

    frames: pd.DataFrame  # FrameRecord columns
    annotations: pd.DataFrame  # AnnotationRecord columns
    lineage: pd.DataFrame  # LINEAGE_COLUMNS, one row per augmented annotation
    rejected: pd.DataFrame  # REJECTED_COLUMNS, one row per (frame, pipeline, seed) not produced

    def counts(self) -> dict[str, int]:
        return {"frames": len(self.frames), "annotations": len(self.annotations), "rejected": len(self.rejected)}


def augmented_frame_id(source_frame_id: str, pipeline: str, seed: int) -> str:
    """``<source frame_id>~<pipeline>~<seed>``: stable across reruns, and says where it came from."""
    return f"{source_frame_id}~{pipeline}~{int(seed)}"


def sample_seed(source_frame_id: str, pipeline: str, seed: int) -> int:
    """Per-frame seed: every frame gets its own draw, and the same draw on every rerun."""
    digest = hashlib.sha256(f"{source_frame_id}|{pipeline}|{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _labels_by_frame(annotations: pd.DataFrame) -> dict[str, list[AnnotationRecord]]:
    ok = annotations[annotations["status"] == AnnotationStatus.OK.value]
    grouped: dict[str, list[AnnotationRecord]] = {}
    for record in from_frame(ok, AnnotationRecord):
        if record.frame_id:
            grouped.setdefault(record.frame_id, []).append(record)
    return grouped


def augment_batch(
    frames: pd.DataFrame,
    annotations: pd.DataFrame,
    store: BlobStore,
    pipelines: Sequence[str],
    *,
    seed: int = 0,
    copies: int = 1,
    registry: AugmentationRegistry | None = None,
    picture_format: str = "png",
) -> AugmentedBatch:
    """Augment every frame with every pipeline (``copies`` draws each, seeds ``seed .. seed+copies-1``).

    Streams: one source picture is decoded at a time and every augmented picture goes straight
    into ``store``; only the manifest rows are kept. Only ``ok`` annotations of the tasks a
    pipeline supports travel with a frame. A frame that cannot be read, has no such annotation,
    or whose draw would break a label gets a row in ``rejected`` instead.
    """
    if int(seed) < 0 or int(copies) < 1:
        raise ValueError(f"seed must be >= 0 and copies >= 1, got seed={seed}, copies={copies}")
    registry = registry or _shared_default_registry()
    chosen = {name: registry.create(name) for name in pipelines}  # unknown names fail before any work
    augmenters = {name: registry.augmenter(name) for name in chosen}
    labels_of = _labels_by_frame(annotations)
    low_light_threshold = FrameOptions().low_light_threshold
    new_frames: list[FrameRecord] = []
    new_annotations: list[AnnotationRecord] = []
    lineage: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    draws = [(name, seed + k) for name in chosen for k in range(int(copies))]

    for source in from_frame(frames, FrameRecord):
        records = labels_of.get(source.frame_id, [])
        try:
            image = _read_frame(source, store)
        except (OSError, ValueError) as exc:
            rejected += [
                _rejection(source.frame_id, name, s, f"cannot read the frame's picture: {exc}") for name, s in draws
            ]
            continue
        for name, draw_seed in draws:
            augmentation = chosen[name]
            usable = [record for record in records if record.task in augmentation.tasks]
            if not usable:
                rejected.append(
                    _rejection(
                        source.frame_id,
                        name,
                        draw_seed,
                        f"no ok annotation of a task {name!r} supports ({sorted(augmentation.tasks)})",
                    )
                )
                continue
            per_frame_seed = sample_seed(source.frame_id, name, draw_seed)
            labels = [Labels(record.task, load_payload(record.payload)) for record in usable]
            try:
                result = augment_frame(image, labels, augmentation, per_frame_seed)
            except AugmentationRejected as exc:
                rejected.append(_rejection(source.frame_id, name, draw_seed, str(exc)))
                continue
            frame = _augmented_frame_record(
                source, result.image, store, name, draw_seed, picture_format, low_light_threshold
            )
            new_frames.append(frame)
            params = json.dumps(result.params, ensure_ascii=False, sort_keys=True)
            for record, label in zip(usable, result.labels):
                annotation = _augmented_annotation(record, frame, label)
                new_annotations.append(annotation)
                lineage.append(
                    {
                        "frame_id": frame.frame_id,
                        "annotation_id": annotation.annotation_id,
                        "source_frame_id": source.frame_id,
                        "source_annotation_id": record.annotation_id,
                        "upload_id": source.upload_id,
                        "batch": source.batch,
                        "task": record.task,
                        "pipeline": name,
                        "seed": draw_seed,
                        "sample_seed": per_frame_seed,
                        "augmenter": augmenters[name],
                        "params": params,
                    }
                )
    return AugmentedBatch(
        frames=to_frame(new_frames, FrameRecord),
        annotations=to_frame(new_annotations, AnnotationRecord),
        lineage=pd.DataFrame(lineage, columns=LINEAGE_COLUMNS),
        rejected=pd.DataFrame(rejected, columns=REJECTED_COLUMNS),
    )


def _rejection(frame_id: str, pipeline: str, seed: int, reason: str) -> dict[str, Any]:
    return {"source_frame_id": frame_id, "pipeline": pipeline, "seed": seed, "reason": reason}


def _read_frame(frame: FrameRecord, store: BlobStore) -> np.ndarray:
    try:
        path = store.local_path(frame.blob_uri) if frame.blob_uri else None
    except FileNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ValueError(f"blob {frame.blob_uri or '<empty uri>'} is missing under {store.root}")
    image = load_image_rgb(path)
    if (image.shape[1], image.shape[0]) != (frame.width, frame.height):
        raise ValueError(
            f"the picture is {image.shape[1]}x{image.shape[0]} but the frame record says "
            f"{frame.width}x{frame.height}; re-extract the frames"
        )
    return image


def _augmented_frame_record(
    source: FrameRecord,
    image: np.ndarray,
    store: BlobStore,
    pipeline: str,
    seed: int,
    picture_format: str,
    low_light_threshold: float,
) -> FrameRecord:
    _, blob_uri = store.put_bytes(encode_picture(image, picture_format))
    luma = mean_luma(image)
    return dataclasses.replace(
        source,
        frame_id=augmented_frame_id(source.frame_id, pipeline, seed),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        blob_uri=blob_uri,
        low_light=bool(luma < low_light_threshold),
        mean_luma=luma,
        enhanced_uri="",
    )


def _augmented_annotation(source: AnnotationRecord, frame: FrameRecord, labels: Labels) -> AnnotationRecord:
    return dataclasses.replace(
        source,
        annotation_id=annotation_id_for(frame.frame_id, source.task, source.source, source.author),
        frame_id=frame.frame_id,
        status=AnnotationStatus.OK.value,
        error="",
        payload=dump_payload(labels.payload),
    )
