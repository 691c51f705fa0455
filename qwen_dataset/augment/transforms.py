"""albumentations transforms whose labels land exactly where their pixels do.

The built-in geometric pipelines use these subclasses of albumentations 2.0.8 transforms. Each
draws the same random parameters as its parent (same seed, same draw); what changes is how the
picture, the boxes and the points are mapped, so that all three follow one mapping:

* :class:`ExactAffine` — ``A.Affine(fit_output=True)`` fits the grown canvas twice, once for the
  picture (in pixel-index coordinates) and once for the boxes (in box coordinates), and rounds each
  fit down on its own: boxes come out shifted by up to 1 px against the pixels, both edges the same
  way. Here one continuous mapping is fitted and the picture's warp is derived from it.
* :class:`ExactPerspective` — ``A.Perspective`` maps boxes with the matrix meant for pixel indices
  and rescales to the kept size with the canvas size rounded to whole pixels; the same cure.
* :class:`ExactRandomScale` — ``A.RandomScale`` moves points by the drawn factor although the
  picture is resized to a whole number of pixels (up to 1 px off at the far edge).
* :class:`ExactBBoxSafeRandomCrop` — ``A.BBoxSafeRandomCrop`` truncates the crop's far edge to an
  integer, so a box ending at x 200.5 (or at 199.9999 after normalisation) loses its last pixel.

The affine and perspective warps fill the new border with one constant colour, the median of the
picture's outermost pixels: ``BORDER_REPLICATE`` would smear an object that touches the edge out
into the border (past its box), and reflection would mirror objects without boxes for the copies.
The edge median is the colour the picture's own margin mostly has (a screenshot's page or window
background), so the border reads as more background rather than as a black frame the model could
learn as a cue; being one flat colour it cannot extend any object's shape.

Coordinates: boxes and points are continuous, pixel ``(row i, column j)`` covers
``[j, j + 1) x [i, i + 1)``; OpenCV warps address pixel centres by their integer index. A mapping
``C`` of continuous coordinates is the OpenCV matrix ``T(-1/2) @ C @ T(1/2)``.
"""

from __future__ import annotations

import math
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.geometric import functional as fgeometric
from albumentations.core.bbox_utils import union_of_bboxes

# A canvas size this close above a whole number of pixels is that number (float noise of the fit).
SIZE_SLACK_PX = 1e-6


def edge_median(image: np.ndarray) -> tuple[float, ...]:
    """Per-channel median of the picture's outermost rows and columns: the colour of its margin."""
    edges = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    if edges.ndim == 1:
        return (float(np.median(edges)),)
    return tuple(float(v) for v in np.median(edges, axis=0))


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def pixel_index_matrix(continuous: np.ndarray) -> np.ndarray:
    """The OpenCV warp matrix (pixel-centre coordinates) of a mapping of continuous coordinates."""
    return _translation(-0.5, -0.5) @ continuous @ _translation(0.5, 0.5)


def continuous_matrix(pixel_index: np.ndarray) -> np.ndarray:
    """The inverse of :func:`pixel_index_matrix`."""
    return _translation(0.5, 0.5) @ pixel_index @ _translation(-0.5, -0.5)


def mapped_extent(matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest (x, y) of the picture's corners ``[0, W] x [0, H]`` under ``matrix``."""
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], float)
    mapped = corners @ matrix.T
    mapped = mapped[:, :2] / mapped[:, 2:]
    return mapped.min(axis=0), mapped.max(axis=0)


def whole_pixels(length: float) -> int:
    """The canvas size, in whole pixels, that holds ``length`` continuous pixels."""
    return max(1, math.ceil(length - SIZE_SLACK_PX))


def fit_to_canvas(matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Shift ``matrix`` so the mapped picture starts at (0, 0); the canvas ``(height, width)`` that holds it."""
    low, high = mapped_extent(matrix, width, height)
    size = high - low
    return _translation(-low[0], -low[1]) @ matrix, (whole_pixels(size[1]), whole_pixels(size[0]))


class ExactAffine(A.Affine):
    """``A.Affine`` with one mapping for pixels, boxes and points, and the edge median as border fill."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        drawn = super().get_params_dependent_on_data(params, data)
        height, width = params["shape"][:2]
        # The parent's box matrix is the drawn transform in continuous coordinates; a fit only
        # translates it, so fitting it afresh gives the same result as fitting the unfitted one.
        mapping = drawn["bbox_matrix"]
        output_shape = (height, width)
        if self.fit_output:
            mapping, output_shape = fit_to_canvas(mapping, width, height)
        drawn.update(
            matrix=pixel_index_matrix(mapping),
            bbox_matrix=mapping,
            output_shape=output_shape,
            fill=edge_median(data["image"]),
        )
        return drawn

    def apply(self, img: np.ndarray, matrix: np.ndarray, output_shape: tuple[int, int], **params: Any) -> np.ndarray:
        return fgeometric.warp_affine(
            img,
            matrix,
            interpolation=self.interpolation,
            fill=params["fill"],
            border_mode=cv2.BORDER_CONSTANT,
            output_shape=output_shape,
        )

    def apply_to_keypoints(self, keypoints: np.ndarray, bbox_matrix: np.ndarray, **params: Any) -> np.ndarray:
        # Points are continuous coordinates, like boxes: they take the boxes' mapping.
        return fgeometric.keypoints_affine(keypoints, bbox_matrix, params["shape"], params["scale"], self.border_mode)


class ExactPerspective(A.Perspective):
    """``A.Perspective`` with one mapping for pixels, boxes and points, and the edge median as border fill."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        drawn = super().get_params_dependent_on_data(params, data)
        height, width = params["shape"][:2]
        mapping = continuous_matrix(drawn["matrix"])
        if self.fit_output:
            low, high = mapped_extent(mapping, width, height)
            mapping = _translation(-low[0], -low[1]) @ mapping
            extent = high - low
        else:  # albumentations maps the four drawn points onto the picture's own rectangle
            extent = np.array([width, height], float)
        if self.keep_size:
            mapping = np.diag([width / extent[0], height / extent[1], 1.0]) @ mapping
            out_width, out_height = width, height
        else:
            out_width, out_height = whole_pixels(extent[0]), whole_pixels(extent[1])
        drawn.update(
            matrix=pixel_index_matrix(mapping),
            matrix_bbox=mapping,
            max_width=out_width,
            max_height=out_height,
            fill=edge_median(data["image"]),
        )
        return drawn

    # The canvas already has its final size (max_width x max_height): nothing is rescaled after the warp.
    def apply(self, img: np.ndarray, matrix: np.ndarray, max_height: int, max_width: int, **params: Any) -> np.ndarray:
        return fgeometric.perspective(
            img, matrix, max_width, max_height, params["fill"], cv2.BORDER_CONSTANT, False, self.interpolation
        )

    def apply_to_mask(
        self, mask: np.ndarray, matrix: np.ndarray, max_height: int, max_width: int, **params: Any
    ) -> np.ndarray:
        return fgeometric.perspective(
            mask, matrix, max_width, max_height, self.fill_mask, cv2.BORDER_CONSTANT, False, self.mask_interpolation
        )

    def apply_to_bboxes(
        self, bboxes: np.ndarray, matrix_bbox: np.ndarray, max_height: int, max_width: int, **params: Any
    ) -> np.ndarray:
        return fgeometric.perspective_bboxes(bboxes, params["shape"], matrix_bbox, max_width, max_height, False)

    def apply_to_keypoints(
        self, keypoints: np.ndarray, matrix_bbox: np.ndarray, max_height: int, max_width: int, **params: Any
    ) -> np.ndarray:
        return fgeometric.perspective_keypoints(keypoints, params["shape"], matrix_bbox, max_width, max_height, False)


class ExactRandomScale(A.RandomScale):
    """``A.RandomScale`` whose points move by the factor the picture was really resized by."""

    def apply_to_keypoints(self, keypoints: np.ndarray, scale: float, **params: Any) -> np.ndarray:
        height, width = params["shape"][:2]
        # fgeometric.scale resizes to int(size * scale) pixels, so that is the true factor.
        return fgeometric.keypoints_scale(keypoints, int(width * scale) / width, int(height * scale) / height)


class ExactBBoxSafeRandomCrop(A.BBoxSafeRandomCrop):
    """``A.BBoxSafeRandomCrop`` whose crop always holds the whole union of the boxes."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        drawn = super().get_params_dependent_on_data(params, data)
        union = union_of_bboxes(data["bboxes"], self.erosion_rate) if len(data["bboxes"]) else None
        if union is None:
            return drawn
        height, width = params["shape"][:2]
        x_min, y_min, x_max, y_max = drawn["crop_coords"]
        # Round outwards: the parent truncates, which cuts a box whose edge is not a whole pixel.
        drawn["crop_coords"] = (
            max(0, min(x_min, math.floor(union[0] * width))),
            max(0, min(y_min, math.floor(union[1] * height))),
            min(width, max(x_max, math.ceil(union[2] * width))),
            min(height, max(y_max, math.ceil(union[3] * height))),
        )
        return drawn
