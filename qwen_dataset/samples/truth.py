"""The ground truth of a generated sample batch: what is in each file, to the pixel.

Box convention (see ``DESIGN.md``): ``[x1, y1, x2, y2]`` float pixels, origin top-left, ``x2``/``y2``
exclusive, i.e. the box of pixel columns ``x1 .. x2-1``. PDF boxes are the same in PDF points
(72 per inch) from the page's top-left: render at ``dpi`` and scale by ``dpi / 72``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pydantic import TypeAdapter

from qwen_dataset.store.paths import atomic_write_text


@dataclasses.dataclass
class TextLine:
    """One rendered line of text: a single box, never wrapped inside it."""

    text: str
    bbox: list[float]  # tight around the ink; pixels (images) or PDF points (pages)
    language: str  # "en" | "zh"


@dataclasses.dataclass
class UIElement:
    """A GUI element. Buttons and inputs are boxed by their control; labels, links and titles by
    their text ink."""

    role: str  # button | input | label | link | title
    text: str
    bbox: list[float]


@dataclasses.dataclass
class SceneObject:
    """An object of the sample scene: what it is and its full extent."""

    label: str
    bbox: list[float]


@dataclasses.dataclass
class SceneRelation:
    """A relation that holds by construction: ``objects[subject] predicate objects[object]``."""

    subject: int
    predicate: str
    object: int


@dataclasses.dataclass
class ImageTruth:
    """An image file; coordinates are those of the upright image (after EXIF transpose)."""

    file_name: str
    width: int
    height: int
    lines: list[TextLine]
    elements: list[UIElement]
    low_light: bool = False
    exif_orientation: int = 1  # as stored in the file; 1 = upright already
    instruction: str = ""  # what a GUI action on this screen should do ("" = none given)
    target: str = ""  # the text of the element that instruction acts on
    objects: list[SceneObject] = dataclasses.field(default_factory=list)
    relations: list[SceneRelation] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PageTruth:
    page: int  # 1-based
    width_pt: float
    height_pt: float
    lines: list[TextLine]  # bboxes in PDF points from the top-left corner


@dataclasses.dataclass
class PdfTruth:
    file_name: str
    pages: list[PageTruth]
    rendered_dpi: int  # the DPI the generator drew the pages at (informative only)


@dataclasses.dataclass
class VideoTruth:
    """A generated video: frame ``i`` is presented at exactly ``i / fps`` seconds."""

    file_name: str
    width: int
    height: int
    fps: int
    frame_count: int
    duration: float  # frame_count / fps
    scene_cuts: list[float]  # seconds of the first frame of each new scene
    scene_cut_frames: list[int]
    codec: str = "h264"
    pix_fmt: str = "yuv420p"


@dataclasses.dataclass
class SampleTruth:
    """Everything a test needs to know about one generated batch."""

    seed: int
    files: list[str]  # every file written into the batch folder, sorted
    images: list[ImageTruth]
    pdfs: list[PdfTruth]
    videos: list[VideoTruth]
    broken: dict[str, str]  # file name -> reason code the ingest stage must give
    duplicates: dict[str, str]  # duplicate file name -> original file name (sorts before it)

    def image(self, file_name: str) -> ImageTruth:
        """The truth of one image by file name."""
        for image in self.images:
            if image.file_name == file_name:
                return image
        raise KeyError(f"no image named {file_name!r} in this sample batch")


_TRUTH_ADAPTER = TypeAdapter(SampleTruth)


def write_truth(truth: SampleTruth, path: Path) -> None:
    """Write the truth as JSON (atomically: a crash never leaves half a file)."""
    document = json.dumps(dataclasses.asdict(truth), ensure_ascii=False, indent=1, sort_keys=True)
    atomic_write_text(Path(path), document + "\n")


def read_truth(path: Path) -> SampleTruth:
    """Read a truth file written by :func:`write_truth`."""
    return _TRUTH_ADAPTER.validate_json(Path(path).read_bytes())


def language_of(text: str) -> str:
    """``"zh"`` when the text holds any CJK ideograph or CJK punctuation, else ``"en"``."""
    for char in text:
        code = ord(char)
        if 0x4E00 <= code <= 0x9FFF or 0x3000 <= code <= 0x303F or 0xFF00 <= code <= 0xFFEF:
            return "zh"
    return "en"
