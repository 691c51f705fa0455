"""Data augmentation for annotated frames: geometric, colour, synthetic noise and text replacement.

* :func:`augment_sample` — one picture and one payload -> ``(image, payload, lineage)``;
* :func:`augment_batch` — frames and annotations manifests -> new rows, pictures into the blob
  store, a lineage table and a table of rejected draws;
* :func:`default_registry` — the named pipelines: built-ins, plugins from the
  ``qwen_dataset.augmentations`` entry-point group, and ``"package.module:factory"`` entries from
  configuration.

See :mod:`qwen_dataset.augment.pipelines` for the conventions (ids, provenance, lineage).
"""

import os

# Set before albumentations is imported anywhere below: it would otherwise query PyPI on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from qwen_dataset.augment.pipelines import (  # noqa: E402
    BUILTINS,
    LINEAGE_COLUMNS,
    REJECTED_COLUMNS,
    AlbumentationsAugmentation,
    AugmentedBatch,
    augment_batch,
    augment_frame,
    augment_sample,
    augmented_frame_id,
    builtin_registry,
    default_registry,
    sample_seed,
)
from qwen_dataset.augment.registry import (  # noqa: E402
    ENTRY_POINT_GROUP,
    Augmentation,
    AugmentationRegistry,
    AugmentationRejected,
    AugmentedFrame,
    Labels,
    PluginError,
    UnknownAugmentationError,
)
from qwen_dataset.augment.text_replace import DEFAULT_REPLACEMENTS, TextReplacement  # noqa: E402

__all__ = [
    "BUILTINS",
    "DEFAULT_REPLACEMENTS",
    "ENTRY_POINT_GROUP",
    "LINEAGE_COLUMNS",
    "REJECTED_COLUMNS",
    "AlbumentationsAugmentation",
    "Augmentation",
    "AugmentationRegistry",
    "AugmentationRejected",
    "AugmentedBatch",
    "AugmentedFrame",
    "Labels",
    "PluginError",
    "TextReplacement",
    "UnknownAugmentationError",
    "augment_batch",
    "augment_frame",
    "augment_sample",
    "augmented_frame_id",
    "builtin_registry",
    "default_registry",
    "sample_seed",
]
