"""Run in the Datumaro venv: import each COCO file of a dataset folder and describe what came in.

Each task has its own categories, so each ``annotations/instances_<task>.json`` is imported on its
own (a folder import merges the subsets and refuses different categories).

    python datumaro_check.py <dataset folder>   -> one JSON line
"""

import json
import sys
from collections import Counter
from pathlib import Path

import datumaro
from datumaro.components.annotation import AnnotationType
from datumaro.components.dataset import Dataset
from datumaro.components.environment import Environment


def describe(path: Path) -> dict:
    dataset = Dataset.import_from(str(path), "coco_instances")
    items = list(dataset)
    return {
        "subsets": sorted(dataset.subsets()),
        "labels": [category.name for category in dataset.categories()[AnnotationType.label]],
        "items": len(items),
        "annotations": dict(Counter(annotation.type.name for item in items for annotation in item.annotations)),
        "missing_media": [item.id for item in items if not Path(item.media.path).is_file()],
        "boxes": sorted(
            [round(v, 3) for v in annotation.get_bbox()]
            for item in items
            for annotation in item.annotations
            if annotation.type == AnnotationType.bbox
        ),
    }


def main(root: str) -> None:
    files = sorted((Path(root) / "annotations").glob("instances_*.json"))
    detected = Environment().detect_dataset(root)
    described = {path.name: describe(path) for path in files}
    print(json.dumps({"version": datumaro.__version__, "detected": detected, "files": described}))


if __name__ == "__main__":
    main(sys.argv[1])
