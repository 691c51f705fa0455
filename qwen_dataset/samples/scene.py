"""The sample scene: coloured objects on a plain floor with relations known by construction.

Six objects are drawn in a fixed arrangement (jittered a little per seed) so that each relation
of :data:`SCENE_RELATIONS` holds by construction: which is left of or above which, the cup lies
inside the tray, and the orange block is drawn after the ball, over its lower right part, so it
occludes it (the ball's visible extent is still its whole box: the block covers neither its
rightmost nor its lowest point). Boxes are the objects' full extents in pixels, ``x2``/``y2``
exclusive, as everywhere in the sample truth.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from qwen_dataset.samples.truth import ImageTruth, SceneObject, SceneRelation

SCENE_NAME = "scene_objects.png"
SCENE_SIZE = (1024, 640)
FLOOR = (236, 234, 228)

# name, colour, shape, box at the origin of the arrangement
_OBJECTS = (
    ("red box", (200, 40, 40), "rectangle", (80, 300, 300, 520)),
    ("blue ball", (40, 70, 200), "ellipse", (340, 290, 520, 470)),
    ("green book", (40, 150, 60), "rectangle", (260, 110, 620, 190)),
    ("yellow tray", (230, 200, 40), "rectangle", (660, 250, 980, 560)),
    ("purple cup", (130, 50, 160), "rectangle", (740, 330, 860, 470)),
    ("orange block", (240, 130, 30), "rectangle", (440, 400, 570, 540)),
)

#: (subject, predicate, object) by object name; true for every seed.
SCENE_RELATIONS = (
    ("red box", "left_of", "blue ball"),
    ("blue ball", "left_of", "yellow tray"),
    ("red box", "left_of", "yellow tray"),
    ("green book", "above", "blue ball"),
    ("green book", "above", "red box"),
    ("purple cup", "inside", "yellow tray"),
    ("orange block", "occludes", "blue ball"),
    ("orange block", "overlaps", "blue ball"),
    ("green book", "above", "yellow tray"),
)


def draw_scene(rng: random.Random) -> tuple[Image.Image, ImageTruth]:
    """The scene picture and its truth (objects and relations; no text, no GUI elements)."""
    dx, dy = rng.randrange(0, 21), rng.randrange(0, 21)
    image = Image.new("RGB", SCENE_SIZE, FLOOR)
    draw = ImageDraw.Draw(image)
    objects = []
    for name, colour, shape, (x1, y1, x2, y2) in _OBJECTS:
        box = (x1 + dx, y1 + dy, x2 + dx - 1, y2 + dy - 1)  # Pillow's boxes are inclusive
        if shape == "ellipse":
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
        objects.append(SceneObject(label=name, bbox=[float(x1 + dx), float(y1 + dy), float(x2 + dx), float(y2 + dy)]))
    index = {obj.label: position for position, obj in enumerate(objects)}
    relations = [SceneRelation(index[s], p, index[o]) for s, p, o in SCENE_RELATIONS]
    truth = ImageTruth(
        file_name=SCENE_NAME,
        width=SCENE_SIZE[0],
        height=SCENE_SIZE[1],
        lines=[],
        elements=[],
        objects=objects,
        relations=relations,
    )
    return image, truth
