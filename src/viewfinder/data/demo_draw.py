"""Drawing for the generated demo data set: shapes on noisy backgrounds, and image distortions.

Kept apart from ``demo.py`` so the layout and CSV code stays readable. Every function here is a pure
function of its arguments and a ``numpy.random.Generator``, so the same seed gives the same pixels.
Shapes are drawn with PIL at 4x and box-filtered down, which gives anti-aliased edges and a
fractional coverage ("alpha") map per shape; the alpha maps give exact areas and overlaps.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "hexagon")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 175, 60),
    "blue": (40, 90, 235),
    "yellow": (245, 220, 40),
    "purple": (150, 60, 200),
    "orange": (250, 140, 20),
    "white": (240, 240, 240),
}
# Muted background colours, named so captions can say "on a navy background".
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25),
    "gray": (120, 120, 120),
    "navy": (25, 35, 95),
    "dark green": (30, 80, 45),
    "brown": (105, 70, 40),
    "teal": (30, 115, 115),
    "beige": (205, 195, 165),
    "maroon": (95, 25, 35),
    "olive": (110, 110, 40),
    "pink": (225, 160, 175),
}
DISTORTIONS: tuple[str, ...] = ("blur", "noise", "jpeg", "exposure")

_SUPERSAMPLE = 4
_STAR_INNER = 0.45  # inner/outer radius of the 5-point star
_CROSS_HALF_WIDTH = 0.32  # arm half-width / circumradius of the cross
_CROSS_ARM = math.sqrt(1.0 - _CROSS_HALF_WIDTH**2)  # so the arm corners lie on the circumcircle
# Area of each shape with circumradius 1, so a target area in pixels gives the radius to draw.
_AREA_PER_R2: dict[str, float] = {
    "circle": math.pi,
    "square": 2.0,
    "triangle": 3.0 * math.sqrt(3.0) / 4.0,
    "star": 5.0 * _STAR_INNER * math.sin(math.pi / 5.0),
    "cross": 8.0 * _CROSS_ARM * _CROSS_HALF_WIDTH - 4.0 * _CROSS_HALF_WIDTH**2,
    "hexagon": 3.0 * math.sqrt(3.0) / 2.0,
}
_MIN_CONTRAST = 110.0  # RGB distance a shape keeps from the background under it (10th percentile)
_MIN_PAIR_DISTANCE = 130.0  # RGB distance between the colours of two overlapping shapes
_MAX_OVERLAP = 0.10  # overlap allowed, as a fraction of the smaller shape's area
DOMINANT_RATIO = 2.0  # the dominant shape's area is at least this times any other shape's


@dataclass(frozen=True)
class Shape:
    """One drawn shape; ``radius`` is the circumradius in pixels, ``rotation`` in degrees."""

    kind: str
    color: str
    rgb: tuple[int, int, int]
    x: float
    y: float
    radius: float
    rotation: float


def _outline(kind: str) -> np.ndarray:
    """Polygon vertices of a shape with circumradius 1, centred on the origin, pointing up."""
    if kind == "star":
        angles = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        radii = np.tile([1.0, _STAR_INNER], 5)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if kind == "cross":
        a, w = _CROSS_ARM, _CROSS_HALF_WIDTH
        arm = [(a, -w), (a, w), (w, w)]
        points = []
        for quarter in range(4):  # the same three corners, turned by 90 degrees each time
            c, s = math.cos(quarter * math.pi / 2), math.sin(quarter * math.pi / 2)
            points += [(px * c - py * s, px * s + py * c) for px, py in arm]
        return np.array(points)
    sides, start = {"square": (4, 45.0), "triangle": (3, -90.0), "hexagon": (6, 0.0)}[kind]
    angles = np.deg2rad(start + 360.0 / sides * np.arange(sides))
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def shape_alpha(shape: Shape, size: int) -> np.ndarray:
    """Coverage (0..1) of ``shape`` on a ``size``-pixel square image, anti-aliased."""
    k = _SUPERSAMPLE
    canvas = Image.new("L", (size * k, size * k), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy, r = shape.x * k, shape.y * k, shape.radius * k
    if shape.kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        theta = math.radians(shape.rotation)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        points = _outline(shape.kind) @ rot.T * r + (cx, cy)
        draw.polygon([tuple(p) for p in points.tolist()], fill=255)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def make_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """A gradient or two-tone background, sometimes striped: float32 HxWx3 plus its description."""
    names = list(BACKGROUNDS)
    first = names[int(rng.integers(len(names)))]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size - 1)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    proj = math.cos(angle) * xx + math.sin(angle) * yy
    proj = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
    base = np.array(BACKGROUNDS[first], dtype=np.float32)
    if rng.random() < 0.5:
        low, high = base * rng.uniform(0.55, 0.85), base * rng.uniform(1.1, 1.4) + 15.0
        t = proj[..., None]
        image = low * (1.0 - t) + high * t
        info = {"style": "gradient", "colors": [first]}
    else:
        second = names[int(rng.choice([i for i, n in enumerate(names) if n != first]))]
        split = proj[..., None] > rng.uniform(0.3, 0.7)
        image = np.where(split, np.array(BACKGROUNDS[second], dtype=np.float32), base)
        info = {"style": "two-tone", "colors": [first, second]}
    info["stripes"] = bool(rng.random() < 0.35)
    if info["stripes"]:
        phase_angle = rng.uniform(0.0, math.pi)
        period = rng.uniform(5.0, 14.0)
        along = (math.cos(phase_angle) * xx + math.sin(phase_angle) * yy) * (size - 1)
        image = image + (rng.uniform(4.0, 10.0) * np.sin(2.0 * math.pi * along / period))[..., None]
    return np.clip(image, 0.0, 255.0).astype(np.float32), info


def _random_shape(rng: np.random.Generator, size: int, kind: str, area: float) -> Shape:
    """A ``kind`` shape of about ``area`` px in a jittered random colour, fully inside the image."""
    radius = math.sqrt(area / _AREA_PER_R2[kind])
    margin = radius + 1.5
    color = list(COLORS)[int(rng.integers(len(COLORS)))]
    jitter = rng.integers(-15, 16, size=3)
    rgb = tuple(int(v) for v in np.clip(np.array(COLORS[color]) + jitter, 0, 255))
    rotation = 0.0 if kind == "circle" else float(rng.uniform(0.0, 360.0))
    x, y = rng.uniform(margin, max(margin, size - margin), size=2)
    return Shape(kind, color, rgb, float(x), float(y), radius, rotation)


def _fits(shape: Shape, alpha: np.ndarray, placed: list, background: np.ndarray) -> bool:
    """Check contrast with the background, size below the dominant one, and little overlap."""
    mask = alpha > 0.5
    area = float(alpha.sum())
    if mask.sum() < 8:
        return False
    distance = np.linalg.norm(background[mask] - np.array(shape.rgb, dtype=np.float32), axis=1)
    if np.percentile(distance, 10) < _MIN_CONTRAST:
        return False
    if placed and area * DOMINANT_RATIO > float(placed[0][1].sum()):
        return False
    for other, other_alpha in placed:
        overlap = float(np.logical_and(mask, other_alpha > 0.5).sum())
        if overlap > _MAX_OVERLAP * min(area, float(other_alpha.sum())):
            return False
        gap = np.linalg.norm(np.subtract(shape.rgb, other.rgb))
        if overlap > 0 and gap < _MIN_PAIR_DISTANCE:
            return False
    return True


def place_shapes(
    rng: np.random.Generator, size: int, label: str, background: np.ndarray
) -> list[tuple[Shape, np.ndarray]]:
    """Place the dominant ``label`` shape, then 0-2 smaller ones, each checked by ``_fits``."""
    count = int(rng.integers(1, 4))
    image_area = float(size * size)
    dominant_area = rng.uniform(0.12, 0.25) * image_area
    kinds = [label] + [SHAPES[int(i)] for i in rng.integers(len(SHAPES), size=count - 1)]
    placed: list[tuple[Shape, np.ndarray]] = []
    for index, kind in enumerate(kinds):
        for attempt in range(60):
            low, high = 0.018 * image_area, dominant_area / (DOMINANT_RATIO + 0.25)
            area = dominant_area if index == 0 else rng.uniform(low, max(low, high))
            shape = _random_shape(rng, size, kind, area)
            alpha = shape_alpha(shape, size)
            if _fits(shape, alpha, placed, background) or (index == 0 and attempt == 59):
                placed.append((shape, alpha))
                break
    return placed


def render_image(rng: np.random.Generator, size: int, label: str) -> tuple[np.ndarray, dict]:
    """One demo image (uint8 HxWx3) whose largest shape is ``label``, and its annotation."""
    background, info = make_background(rng, size)
    placed = place_shapes(rng, size, label, background)
    image = background.copy()
    for shape, alpha in placed:
        a = alpha[..., None]
        image = image * (1.0 - a) + np.array(shape.rgb, dtype=np.float32) * a
    image += rng.normal(0.0, rng.uniform(3.0, 10.0), size=image.shape).astype(np.float32)
    shapes = []
    for z, (shape, alpha) in enumerate(placed):
        covered = np.ones_like(alpha)
        for _, above in placed[z + 1 :]:
            covered *= 1.0 - above
        shapes.append(
            {
                "kind": shape.kind,
                "color": shape.color,
                "x": round(shape.x, 1),
                "y": round(shape.y, 1),
                "size": int(round(2.0 * shape.radius)),
                "rotation": round(shape.rotation, 1),
                "area": int(round(float(alpha.sum()))),
                "visible_area": int(round(float((alpha * covered).sum()))),
                "z": z,
            }
        )
    shapes.sort(key=lambda s: -s["area"])
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return pixels, {"background": info, "shapes": shapes}


_BLUR_RADIUS = (0.5, 1.0, 1.6, 2.4, 3.5)  # at 96 px; scaled with the image size
_NOISE_SIGMA = (5.0, 10.0, 18.0, 28.0, 42.0)
_JPEG_QUALITY = (45, 28, 16, 9, 4)
_OVER_GAIN = (1.25, 1.5, 1.8, 2.2, 2.7)
_UNDER_GAIN = (0.8, 0.62, 0.47, 0.35, 0.24)


def distort(
    pixels: np.ndarray, kind: str, severity: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """Degrade ``pixels`` by a known distortion at ``severity`` 1..5 (0 = unchanged).

    Returns the degraded uint8 image and a detail word ("over"/"under" for exposure, else "").
    """
    if severity == 0 or kind == "none":
        return pixels.copy(), ""
    level = severity - 1
    if kind == "blur":
        radius = _BLUR_RADIUS[level] * pixels.shape[0] / 96.0
        blurred = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius))
        return np.asarray(blurred), ""
    if kind == "noise":
        noise = rng.normal(0.0, _NOISE_SIGMA[level], size=pixels.shape)
        return np.clip(np.rint(pixels + noise), 0, 255).astype(np.uint8), ""
    if kind == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=_JPEG_QUALITY[level])
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("RGB")), ""
    if kind == "exposure":
        direction = "over" if rng.random() < 0.5 else "under"
        gain = (_OVER_GAIN if direction == "over" else _UNDER_GAIN)[level]
        return np.clip(np.rint(pixels * gain), 0, 255).astype(np.uint8), direction
    raise ValueError(f"unknown distortion {kind!r}; expected one of {DISTORTIONS}")
