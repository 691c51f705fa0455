"""Image to code without a model: a layout tree by recursive XY-cut, and HTML/CSS that draws it.

**Layout.** The boxes of a screenshot (its GUI elements and its OCR lines; a line inside an
element is that element's text, not a box of its own) are split recursively, as in the XY-cut of
document layout analysis (Nagy & Seth 1984): at each node, the widest empty horizontal band
between boxes cuts the node into rows, else the widest empty vertical band cuts it into columns;
a node that no band of at least ``MIN_GAP`` pixels cuts is a leaf group. Row and column nodes are
``div``s with role ``section``; the leaves keep their element role (``button``, ``input``) or are
``paragraph`` text. The root is the ``body``, role ``page``, the whole frame.

**HTML.** Every node is a ``div`` placed absolutely at its box (relative to its parent), so the
page reproduces the boxes exactly; each leaf gets the picture's colour under it as background
(the median of its border pixels) and its text in the ink colour (the pixels that differ most from
that background), at a font size from its box height. Buttons and inputs keep a 1 px outline in
their ink colour. Scripts and remote resources: none. This reproduces geometry, colour blocks and
text; it does not reproduce images, icons' drawings, gradients or fonts.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_GAP = 8  # pixels of empty band needed to cut a node
MAX_DEPTH = 24
FONT_SHARE = 0.8  # font size as a share of a text box's height
LAYOUT_VERSION = f"xycut-1;gap{MIN_GAP};font{FONT_SHARE:g}"

Box = list[float]


def _gaps(intervals: Sequence[tuple[float, float]], low: float, high: float) -> list[tuple[float, float]]:
    """Empty stretches between intervals inside ``[low, high]`` (not at its ends)."""
    ordered = sorted(intervals)
    gaps: list[tuple[float, float]] = []
    reach = ordered[0][1] if ordered else low
    for start, end in ordered[1:]:
        if start > reach:
            gaps.append((reach, start))
        reach = max(reach, end)
    return [(a, b) for a, b in gaps if low < a and b < high]


def _split(indices: list[int], boxes: Sequence[Box], axis: int) -> list[list[int]] | None:
    """Groups of boxes on either side of the widest empty band along ``axis`` (1: rows, 0: columns)."""
    spans = [(boxes[i][axis], boxes[i][axis + 2]) for i in indices]
    low, high = min(s for s, _ in spans), max(e for _, e in spans)
    gaps = [gap for gap in _gaps(spans, low - 1, high + 1) if gap[1] - gap[0] >= MIN_GAP]
    if not gaps:
        return None
    cuts = sorted((a + b) / 2 for a, b in gaps)
    groups: list[list[int]] = [[] for _ in range(len(cuts) + 1)]
    for i in indices:
        middle = (boxes[i][axis] + boxes[i][axis + 2]) / 2
        groups[sum(1 for cut in cuts if middle > cut)].append(i)
    return [group for group in groups if group]


def _union(indices: Sequence[int], boxes: Sequence[Box]) -> Box:
    return [
        min(boxes[i][0] for i in indices),
        min(boxes[i][1] for i in indices),
        max(boxes[i][2] for i in indices),
        max(boxes[i][3] for i in indices),
    ]


def _leaf(item: Mapping[str, Any]) -> dict[str, Any]:
    role = str(item.get("role") or "paragraph")
    role = role if role in ("button", "input", "icon", "image") else "paragraph"
    tag = {"button": "button", "input": "input", "icon": "span", "image": "img"}.get(role, "p")
    return {
        "tag": tag,
        "role": role,
        "bbox": [float(v) for v in item["bbox"]],
        "text": str(item.get("text", "")),
        "children": [],
    }


def _cut(indices: list[int], items: Sequence[Mapping[str, Any]], boxes: Sequence[Box], depth: int) -> dict[str, Any]:
    if len(indices) == 1:
        return _leaf(items[indices[0]])
    groups = None if depth >= MAX_DEPTH else (_split(indices, boxes, 1) or _split(indices, boxes, 0))
    if groups is None or len(groups) == 1:
        # Boxes that no band separates (overlapping ones): one group, its members side by side.
        children = [_leaf(items[i]) for i in sorted(indices, key=lambda i: (boxes[i][1], boxes[i][0]))]
    else:
        children = [_cut(group, items, boxes, depth + 1) for group in groups]
    return {"tag": "div", "role": "section", "bbox": _union(indices, boxes), "children": children}


def layout_tree(items: Sequence[Mapping[str, Any]], width: int, height: int) -> dict[str, Any]:
    """The layout tree of ``items`` (dicts with ``bbox``, optional ``role`` and ``text``) on a frame."""
    boxes = [[float(v) for v in item["bbox"]] for item in items]
    root: dict[str, Any] = {
        "tag": "body",
        "role": "page",
        "bbox": [0.0, 0.0, float(width), float(height)],
        "children": [],
    }
    if boxes:
        top = _cut(list(range(len(boxes))), items, boxes, 0)
        root["children"] = top["children"] if top["tag"] == "div" else [top]
    return root


def layout_items(elements: Sequence[Mapping[str, Any]], regions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """GUI elements plus the OCR lines that no element holds (a button's label is the button's text)."""

    def inside(line: Sequence[float], box: Sequence[float]) -> bool:
        cx, cy = (line[0] + line[2]) / 2, (line[1] + line[3]) / 2
        return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]

    items = [dict(element) for element in elements]
    for region in regions:
        if not any(inside(region["bbox"], element["bbox"]) for element in elements):
            items.append({"bbox": region["bbox"], "role": "paragraph", "text": region.get("text", "")})
    return items


# --------------------------------------------------------------------------------------------
# HTML


def _hex(colour: Sequence[float] | np.ndarray) -> str:
    return "#" + "".join(f"{int(round(min(max(c, 0), 255))):02x}" for c in colour[:3])


def _colours(rgb: np.ndarray, box: Sequence[float]) -> tuple[str, str]:
    """(background, ink) colours under a box: its border's median, and the pixels farthest from it."""
    height, width = rgb.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, max(x1 + 1, int(round(box[2])))), min(height, max(y1 + 1, int(round(box[3]))))
    patch = rgb[y1:y2, x1:x2].reshape(-1, 3).astype(np.int32)
    border = np.concatenate([rgb[y1, x1:x2], rgb[y2 - 1, x1:x2], rgb[y1:y2, x1], rgb[y1:y2, x2 - 1]]).astype(np.int32)
    background = np.median(border, axis=0)
    distance = np.abs(patch - background).sum(axis=1)
    ink = patch[distance >= np.percentile(distance, 90)] if len(patch) else patch
    ink_colour = ink.mean(axis=0) if len(ink) and distance.max() > 40 else np.array([0, 0, 0])
    return _hex(background), _hex(ink_colour)


def _node_html(node: Mapping[str, Any], origin: tuple[float, float], rgb: np.ndarray) -> str:
    x1, y1, x2, y2 = node["bbox"]
    style = f"position:absolute;left:{x1 - origin[0]:.0f}px;top:{y1 - origin[1]:.0f}px;width:{x2 - x1:.0f}px;height:{y2 - y1:.0f}px;"
    children = node.get("children") or []
    if children:
        inner = "".join(_node_html(child, (x1, y1), rgb) for child in children)
        return f'<div style="{style}">{inner}</div>'
    background, ink = _colours(rgb, node["bbox"])
    size = max(6, int((y2 - y1) * FONT_SHARE))
    text = html_lib.escape(str(node.get("text", "")))
    if node.get("role") in ("button", "input"):
        align = "center" if node.get("role") == "button" else "left;padding-left:12px"
        size = max(6, min(size, int((y2 - y1) * 0.4)))
        style += f"box-sizing:border-box;border:1px solid {ink};border-radius:6px;text-align:{align};line-height:{y2 - y1:.0f}px;"
    else:
        style += f"line-height:{y2 - y1:.0f}px;"
    style += f"background:{background};color:{ink};font-size:{size}px;white-space:nowrap;overflow:hidden;"
    return f'<div data-role="{node.get("role")}" style="{style}">{text}</div>'


def page_html(tree: Mapping[str, Any], rgb: np.ndarray) -> str:
    """A self-contained HTML page drawing the layout tree over the picture's background colour."""
    height, width = rgb.shape[:2]
    background, _ = _colours(rgb, [0, 0, width, height])
    body = "".join(_node_html(child, (0.0, 0.0), rgb) for child in tree.get("children") or [])
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>'
        f"html,body{{margin:0;padding:0;}}body{{position:relative;width:{width}px;height:{height}px;"
        f"background:{background};font-family:'Noto Sans CJK SC','Noto Sans CJK TC',sans-serif;overflow:hidden;}}"
        f"</style></head><body>{body}</body></html>"
    )


def _strip_text(node: dict[str, Any]) -> dict[str, Any]:
    """The payload's layout node: tag, role, box, children (the text lives in the HTML)."""
    return {
        "tag": node["tag"],
        "role": node["role"],
        "bbox": [round(v, 2) for v in node["bbox"]],
        "children": [_strip_text(child) for child in node.get("children") or []],
    }


def code_payload(
    bgr: np.ndarray, elements: Sequence[Mapping[str, Any]], regions: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The ``image_to_code`` payload of one screenshot: ``html`` and ``layout``."""
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    height, width = rgb.shape[:2]
    tree = layout_tree(layout_items(elements, regions), width, height)
    return {"html": page_html(tree, rgb), "layout": _strip_text(tree)}
