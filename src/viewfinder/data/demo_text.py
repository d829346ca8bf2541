"""Text for the generated demo data set: VQA questions, captions and image-quality comments.

Everything is derived from the ground-truth annotations, so every answer can be checked. Questions
are only asked when their answer is unambiguous (e.g. "What color is the star?" needs exactly one
star; "Where is ...?" needs the shape to be clearly in one region).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from viewfinder.data.demo_draw import COLORS, SHAPES

_NUMBER_WORDS = ("zero", "one", "two", "three", "four")
_PLURAL = {"cross": "crosses"}
_PHRASE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}


def plural(kind: str) -> str:
    """English plural of a shape name ("crosses", "circles")."""
    return _PLURAL.get(kind, kind + "s")


def region(x: float, y: float, size: int, *, strict: bool = True) -> str | None:
    """left/right/top/bottom/center of a point; with ``strict``, None when it is borderline.

    Strict mode is for VQA answers, which must be unambiguous; captions use the loose mode.
    """
    dx, dy = (x - size / 2) / size, (y - size / 2) / size
    reach = max(abs(dx), abs(dy))
    if reach < 0.08 or (not strict and reach < 0.12):
        return "center"
    if strict and reach < 0.16:
        return None
    factor = 2.0 if strict else 1.0
    if abs(dx) >= factor * abs(dy):
        return "left" if dx < 0 else "right"
    if abs(dy) >= factor * abs(dx):
        return "top" if dy < 0 else "bottom"
    return None


def _pick(rng: np.random.Generator, present: list[str], every: tuple[str, ...]) -> str:
    """A name in the image 60% of the time, else any: so count answers are not mostly "0"."""
    pool = present if rng.random() < 0.6 else list(every)
    return pool[int(rng.integers(len(pool)))]


def _shape_questions(rng: np.random.Generator, shapes: list[dict], size: int) -> dict:
    """Candidate (question, answer) pairs grouped by category: color, shape, count, position."""
    kinds = Counter(s["kind"] for s in shapes)
    colors = Counter(s["color"] for s in shapes)
    found: dict[str, list[tuple[str, str]]] = {
        "color": [],
        "shape": [],
        "count": [],
        "position": [],
    }
    found["shape"].append(("What shape is the largest object?", shapes[0]["kind"]))
    for s in shapes:
        kind = s["kind"]
        if colors[s["color"]] == 1:
            found["shape"].append((f"What shape is the {s['color']} object?", kind))
        if kinds[kind] != 1:
            continue
        found["color"].append((f"What color is the {kind}?", s["color"]))
        where = region(s["x"], s["y"], size)
        if where is not None:
            found["position"].append((f"Where is the {kind}?", where))
        if abs(s["x"] - size / 2) > 0.12 * size:
            side = "left" if rng.random() < 0.5 else "right"
            on_side = (s["x"] < size / 2) == (side == "left")
            answer = "yes" if on_side else "no"
            found["position"].append((f"Is the {kind} on the {side} side?", answer))
    asked = _pick(rng, list(kinds), SHAPES)
    found["shape"].append((f"Is there a {asked} in the image?", "yes" if kinds[asked] else "no"))
    found["count"].append(("How many shapes are there?", str(len(shapes))))
    color = _pick(rng, list(colors), tuple(COLORS))
    found["count"].append((f"How many {color} shapes are there?", str(colors[color])))
    kind = _pick(rng, list(kinds), SHAPES)
    found["count"].append((f"How many {plural(kind)} are there?", str(kinds[kind])))
    return found


def vqa_pairs(rng: np.random.Generator, shapes: list[dict], size: int) -> list[tuple[str, str]]:
    """3-5 distinct (question, answer) pairs, spread over the question categories."""
    found = _shape_questions(rng, shapes, size)
    pools = [[found[c][i] for i in rng.permutation(len(found[c]))] for c in found if found[c]]
    pools = [pools[i] for i in rng.permutation(len(pools))]
    wanted = int(rng.integers(3, 6))
    chosen: list[tuple[str, str]] = []
    while len(chosen) < wanted and any(pools):
        for pool in pools:  # one from each category in turn, so every image mixes question kinds
            if pool and len(chosen) < wanted:
                chosen.append(pool.pop(0))
    return chosen


def _a(phrase: str) -> str:
    """Prefix the indefinite article: 'a red circle', 'an orange star'."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _background_phrase(background: dict) -> str:
    """'a navy background' / 'a gray and pink background', with 'striped' when it has stripes."""
    colors = " and ".join(background["colors"])
    striped = "striped " if background.get("stripes") else ""
    return _a(f"{striped}{colors} background")


def captions(shapes: list[dict], background: dict, size: int) -> list[str]:
    """Three different phrasings describing the same image."""
    named = [f"{s['color']} {s['kind']}" for s in shapes]
    sized = [f"a large {named[0]}"] + [
        _a(f"{'small' if s['area'] * 2 < shapes[0]['area'] else 'medium-sized'} {n}")
        for s, n in zip(shapes[1:], named[1:], strict=True)
    ]
    first = f"{_join(sized)} on {_background_phrase(background)}"
    placed = [
        _a(f"{n} {_PHRASE[region(s['x'], s['y'], size, strict=False) or 'center']}")
        for s, n in zip(shapes, named, strict=True)
    ]
    count = len(shapes)
    noun = "shape" if count == 1 else "shapes"
    second = f"{_NUMBER_WORDS[count]} {noun}: {_join(placed)}"
    third = f"the biggest shape is {_a(named[0])}"
    if count > 1:
        third += ", next to " + _join([_a(n) for n in named[1:]])
    third += f", drawn on {_background_phrase(background)}"
    return [first, second, third]


_COMMENTS: dict[str, tuple[str, str, str]] = {  # mild (1-2), clear (3), heavy (4-5)
    "blur": (
        "Slight blur softens the edges, but the {obj} is still easy to see.",
        "Noticeable blur smears the edges of the {obj}.",
        "Heavy blur makes the shapes' edges hard to see.",
    ),
    "noise": (
        "A little grain is visible, but the {obj} is still clear.",
        "Visible noise covers the image and the {obj} looks grainy.",
        "Strong noise hides the detail; the shapes are hard to make out.",
    ),
    "jpeg": (
        "Mild compression artifacts appear around the {obj}.",
        "Blocky compression artifacts distort the {obj}.",
        "Severe compression blocks and color banding ruin the image.",
    ),
    "over": (
        "The image is slightly too bright, but the {obj} is still visible.",
        "The image is overexposed and the colors of the {obj} look washed out.",
        "Heavy overexposure makes the shapes fade into the bright background.",
    ),
    "under": (
        "The image is slightly too dark, but the {obj} is still visible.",
        "The image is underexposed and the {obj} is hard to see.",
        "The image is very dark; the shapes are barely visible.",
    ),
}


def quality_comment(distortion: str, severity: int, detail: str, dominant: dict) -> str:
    """A short human-style remark on image quality that names the dominant shape."""
    obj = f"{dominant['color']} {dominant['kind']}"
    if severity == 0:
        return f"The image is sharp and clean; the {obj} is clearly visible."
    key = detail if distortion == "exposure" else distortion
    band = 0 if severity <= 2 else 1 if severity == 3 else 2
    return _COMMENTS[key][band].format(obj=obj)
