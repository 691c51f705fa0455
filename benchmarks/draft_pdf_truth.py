"""Draft OCR truth for one PDF page from its text layer, to be checked by eye and committed.

Prints a JSON entry for ``benchmarks/fixtures/ocr_real_truth.json``: the page's text lines as
pdfium lays them out, with boxes in pixels of the page rendered at ``--dpi`` (the frames stage's
``pdf_dpi``). A laid-out line is split where two characters are further apart than ``--split``
font heights (a running header "Debian 新维护者手册 ... 3 / 57" is two pieces of text on the
picture), and characters outside the page are dropped (text clipped at the edge is not seen).

The draft is only a draft: a picture inside the page (a screenshot) has no text layer, and a PDF's
spacing is the typesetter's idea. The committed truth was read against the rendered page.

    .venv/bin/python benchmarks/draft_pdf_truth.py FILE.pdf PAGE_INDEX [--dpi 150]
"""

from __future__ import annotations

import argparse
import json

import pypdfium2 as pdfium


def char_lines(page: pdfium.PdfPage) -> list[list[tuple[str, tuple[float, float, float, float]]]]:
    """Characters with their boxes (PDF points, bottom-left origin), grouped by pdfium's lines."""
    textpage = page.get_textpage()
    text = textpage.get_text_range()
    lines: list[list[tuple[str, tuple[float, float, float, float]]]] = [[]]
    for index in range(textpage.count_chars()):
        char = text[index] if index < len(text) else ""
        if char in "\r\n":
            lines.append([])
            continue
        lines[-1].append((char, textpage.get_charbox(index)))
    return [line for line in lines if line]


def split_at_gaps(line, split: float):
    """Pieces of a line separated by gaps wider than ``split`` x the line's character height."""
    inked = [(char, box) for char, box in line if box[2] > box[0]]
    if not inked:
        return []
    height = max(box[3] - box[1] for _, box in inked)
    pieces, current, last_right = [], [], None
    for char, box in line:
        if box[2] <= box[0]:  # a generated space or a zero-width mark
            current.append((char, box))
            continue
        if last_right is not None and box[0] - last_right > split * height:
            pieces.append(current)
            current = []
        current.append((char, box))
        last_right = box[2]
    pieces.append(current)
    return pieces


def draft(path: str, index: int, dpi: int, split: float) -> dict:
    page = pdfium.PdfDocument(path)[index]
    width_pt, height_pt = page.get_size()
    scale = dpi / 72
    lines = []
    for line in char_lines(page):
        for piece in split_at_gaps(line, split):
            visible = [(c, b) for c, b in piece if b[2] <= b[0] or (b[0] >= 0 and b[2] <= width_pt)]
            boxes = [b for _, b in visible if b[2] > b[0]]
            text = " ".join("".join(c for c, _ in visible).split())
            if not boxes or not text:
                continue
            x1, x2 = min(b[0] for b in boxes), max(b[2] for b in boxes)
            top, bottom = max(b[3] for b in boxes), min(b[1] for b in boxes)
            bbox = [round(x1 * scale, 1), round((height_pt - top) * scale, 1)]
            bbox += [round(x2 * scale, 1), round((height_pt - bottom) * scale, 1)]
            lines.append({"bbox": bbox, "text": text})
    return {"page_index": index, "dpi": dpi, "lines": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf")
    parser.add_argument("page_index", type=int)
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--split", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(draft(args.pdf, args.page_index, args.dpi, args.split), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
