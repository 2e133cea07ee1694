"""Small synthetic tracking sequences written in LaSOT's exact layout.

Used by tests and demos to exercise the LaSOT reader, the trackers and the evaluation end to
end without the real dataset. Each sequence shows one textured object (class-dependent shape,
two-colour stripes or checks, a dark centre mark) moving smoothly over a cluttered background
(colour gradient + blurred noise + random shapes) with slight camera panning. The object
changes scale, leaves the frame once (``out_of_view`` = 1, box ``0,0,0,0`` while it is out, as
LaSOT writes absent targets) and is hidden once by an occluder painted with background texture
that slides over it (``full_occlusion`` = 1 while it covers the whole object; the box is kept,
as LaSOT does for most fully occluded frames). Boxes are the tight bounds of the object's
visible pixels in LaSOT's 1-based convention (``x = column + 1``). Everything is determined
by the seed. ``events=False`` leaves out the exit and the occlusion (the object is always visible).

``source="photos"`` (:func:`make_lasot_dataset`) uses real photographs instead (see
:mod:`.photos`): the object is a shape cut from its class's photo, the scene a crop of another
photo, with the same motion, scale changes, exit and occlusion.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fileio import atomic_dir, atomic_write_text

from .photos import PHOTOS, photo_region, random_crop

PALETTE = {  # BGR
    "red": (40, 40, 220), "green": (60, 180, 60), "blue": (210, 90, 30),
    "yellow": (40, 220, 230), "purple": (170, 50, 150), "orange": (30, 140, 250),
    "cyan": (220, 210, 40), "white": (245, 245, 245), "black": (25, 25, 25),
}
SHAPES = ("ellipse", "rectangle", "diamond")
PATTERNS = ("striped", "checked")
_PAN_MARGIN = 24
_EVENT_RAMP = 4


@dataclass
class SyntheticSequence:
    """A rendered sequence: BGR frames and LaSOT-style annotations."""

    frames: list[np.ndarray]          # (H, W, 3) uint8 BGR
    gt_boxes: np.ndarray              # (N, 4) int64, 1-based x,y,w,h; 0,0,0,0 when out of view
    full_occlusion: np.ndarray        # (N,) bool
    out_of_view: np.ndarray           # (N,) bool
    nlp: str


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Colour gradient + low-frequency and fine blurred noise + a few shapes, uint8 BGR."""
    corners = rng.uniform(40, 215, size=(2, 2, 3)).astype(np.float32)
    canvas = cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR)
    coarse = rng.normal(0, 1, size=(max(2, height // 16), max(2, width // 16), 3))
    canvas += 18 * cv2.resize(coarse.astype(np.float32), (width, height),
                              interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 1, size=(height, width, 3)).astype(np.float32)
    canvas += 10 * cv2.GaussianBlur(fine, (0, 0), 1.2)
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(5, 10))):
        colour = tuple(int(c) for c in rng.uniform(30, 225, size=3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(6, max(8, min(width, height) // 6)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.circle(image, (x, y), size, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.5, 2))),
                          colour, -1)
        else:
            end = (x + int(rng.integers(-60, 60)), y + int(rng.integers(-60, 60)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(2, 5)), cv2.LINE_AA)
    return cv2.GaussianBlur(image, (3, 3), 0)


def _object_patch(rng: np.random.Generator, shape: str, pattern: str, colours: list[tuple],
                  width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Textured object image (BGR float32) and its alpha mask (float32, 1 inside), same size."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(8, 14)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    if pattern == "striped":
        select = (np.floor(u / period) % 2).astype(bool)
    else:
        v = -xs * np.sin(angle) + ys * np.cos(angle)
        select = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(bool)
    patch = np.where(select[..., None], np.float32(colours[0]), np.float32(colours[1]))
    patch += rng.normal(0, 8, size=patch.shape).astype(np.float32)
    cv2.circle(patch, (width // 2, height // 2), max(2, min(width, height) // 8),
               (20, 20, 20), -1, cv2.LINE_AA)
    return patch, _shape_mask(shape, width, height)


def _shape_mask(shape: str, width: int, height: int) -> np.ndarray:
    """Alpha mask (float32, 1 inside) of an ellipse, rectangle or diamond filling width x height."""
    mask = np.zeros((height, width), np.float32)
    if shape == "ellipse":
        cv2.ellipse(mask, (width // 2, height // 2), (width // 2 - 1, height // 2 - 1), 0, 0,
                    360, 1.0, -1, cv2.LINE_AA)
    elif shape == "rectangle":
        mask[:] = 1.0
    else:
        points = np.array([[width // 2, 0], [width - 1, height // 2], [width // 2, height - 1],
                           [0, height // 2]], np.int32)
        cv2.fillConvexPoly(mask, points, 1.0, cv2.LINE_AA)
    return mask


def _smooth_walk(rng: np.random.Generator, count: int, step: float, limit: float) -> np.ndarray:
    """Smoothed random walk clipped to [-limit, limit], (count,)."""
    velocity, value, out = 0.0, 0.0, np.empty(count)
    for i in range(count):
        velocity = 0.8 * velocity + rng.normal(0, step)
        value = float(np.clip(value + velocity, -limit, limit))
        out[i] = value
    return out


def _event_profile(count: int, start: int, hold: int) -> np.ndarray:
    """0 -> 1 ramp over _EVENT_RAMP frames, ``hold`` frames at 1, ramp back to 0; (count,)."""
    profile = np.zeros(count)
    ramp = np.linspace(0, 1, _EVENT_RAMP + 2)[1:-1]
    shape = np.concatenate([ramp, np.ones(hold), ramp[::-1]])
    end = min(count, start + len(shape))
    profile[start:end] = shape[:end - start]
    return profile


def _trajectory(rng: np.random.Generator, count: int, width: int, height: int,
                sizes: np.ndarray) -> np.ndarray:
    """Object centres (count, 2) that stay inside the frame: damped random-walk velocity,
    reflected at the borders."""
    centres = np.empty((count, 2))
    position = np.array([rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height])
    velocity = rng.normal(0, 2, size=2)
    for i in range(count):
        velocity = np.clip(0.85 * velocity + rng.normal(0, 1.0, size=2), -6, 6)
        position = position + velocity
        low = sizes[i] / 2 + 2
        high = np.array([width, height]) - sizes[i] / 2 - 2
        for axis in range(2):
            if position[axis] < low[axis] or position[axis] > high[axis]:
                velocity[axis] = -velocity[axis]
                position[axis] = np.clip(position[axis], low[axis], max(low[axis], high[axis]))
        centres[i] = position
    return centres


def _visible_box(mask: np.ndarray, x0: int, y0: int, width: int,
                 height: int) -> tuple[int, int, int, int] | None:
    """Tight 0-based inclusive bounds (c0, r0, c1, r1) of mask pixels inside the image."""
    h, w = mask.shape
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, width), min(y0 + h, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    inside = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] > 0.5
    cols, rows = np.flatnonzero(inside.any(axis=0)), np.flatnonzero(inside.any(axis=1))
    if len(cols) == 0 or len(rows) == 0:
        return None
    return cx0 + cols[0], cy0 + rows[0], cx0 + cols[-1], cy0 + rows[-1]


def synthesize_sequence(rng: np.random.Generator, num_frames: int = 60,
                        size: tuple[int, int] = (320, 240), shape: str = "ellipse",
                        pattern: str = "striped", object_photo: np.ndarray | None = None,
                        background_photo: np.ndarray | None = None,
                        description: str | None = None, events: bool = True) -> SyntheticSequence:
    """Render one sequence in memory (see the module docstring); ``size`` is (W, H).

    ``events=False`` leaves out the exit and the occlusion: the object stays in view and
    visible in every frame, moving, scaling and panning as otherwise (the same draws up to there).

    With ``object_photo`` / ``background_photo`` (BGR images) the object is a ``shape`` cut from
    a random crop of the first and the scene a random crop of the second, instead of the
    two-colour pattern and the generated clutter; ``description`` replaces the generated
    ``nlp`` sentence.
    """
    width, height = size
    if num_frames < 2 or width < 32 or height < 32:
        raise ValueError(f"need at least 2 frames of 32x32 pixels, got {num_frames} frames "
                         f"of {width}x{height}")
    margin = _PAN_MARGIN
    world_size = (width + 2 * margin, height + 2 * margin)
    world = (_background(rng, *world_size) if background_photo is None
             else random_crop(rng, background_photo, world_size, scale=(0.3, 1.0)))
    pan = np.stack([_smooth_walk(rng, num_frames, 0.4, margin - 1) for _ in range(2)], 1)
    pan = np.rint(pan).astype(int) + margin

    colour_names = [str(c) for c in rng.choice(list(PALETTE), size=2, replace=False)]
    base = rng.uniform(0.18, 0.28) * min(width, height)
    aspect = rng.uniform(0.6, 1.6)
    base_wh = np.array([base * np.sqrt(aspect), base / np.sqrt(aspect)])
    patch_wh = (int(np.ceil(base_wh[0] * 1.6)), int(np.ceil(base_wh[1] * 1.6)))
    if object_photo is None:
        patch, mask = _object_patch(rng, shape, pattern, [PALETTE[c] for c in colour_names], *patch_wh)
    else:
        patch = random_crop(rng, object_photo, patch_wh, scale=(0.05, 0.3)).astype(np.float32)
        mask = _shape_mask(shape, *patch_wh)
    scales = np.exp(_smooth_walk(rng, num_frames, 0.015, 0.35))
    sizes = base_wh[None] * scales[:, None]
    centres = _trajectory(rng, num_frames, width, height, sizes)

    # one out-of-view excursion and one full occlusion, in different halves of the sequence
    exit_profile = np.zeros(num_frames)
    occlusion_profile = np.zeros(num_frames)
    half = num_frames // 2
    if events and half >= 2 * _EVENT_RAMP + 8:
        halves = [(2, half), (half, num_frames)]
        if rng.random() < 0.5:
            halves.reverse()
        for (lo, hi), profile in zip(halves, (exit_profile, occlusion_profile)):
            hold = int(rng.integers(3, min(7, hi - lo - 2 * _EVENT_RAMP - 1)))
            start = int(rng.integers(lo, hi - 2 * _EVENT_RAMP - hold + 1))
            profile[:] = _event_profile(num_frames, start, hold)
    direction = [(-1, 0), (1, 0), (0, -1), (0, 1)][int(rng.integers(0, 4))]
    axis = 0 if direction[1] == 0 else 1
    limit = (width, height)[axis]
    for i in np.flatnonzero(exit_profile):
        towards = centres[i, axis] if direction[axis] < 0 else limit - centres[i, axis]
        centres[i, axis] += direction[axis] * exit_profile[i] * (towards + sizes[i, axis] / 2 + 3)
    occluder_side = 1 if rng.random() < 0.5 else -1

    frames, boxes = [], np.zeros((num_frames, 4), np.int64)
    occluded = np.zeros(num_frames, bool)
    out_of_view = np.zeros(num_frames, bool)
    for i in range(num_frames):
        frame = world[pan[i, 1]:pan[i, 1] + height, pan[i, 0]:pan[i, 0] + width].copy()
        w, h = (max(4, int(round(v))) for v in sizes[i])
        x0 = int(round(centres[i, 0] - w / 2))
        y0 = int(round(centres[i, 1] - h / 2))
        obj = cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
        visible = _visible_box(alpha, x0, y0, width, height)
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + w, width), min(y0 + h, height)
        if cx1 > cx0 and cy1 > cy0:
            a = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
            region = frame[cy0:cy1, cx0:cx1].astype(np.float32)
            blended = a * obj[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] + (1 - a) * region
            frame[cy0:cy1, cx0:cx1] = np.clip(blended, 0, 255).astype(np.uint8)
        if visible is None or visible[2] - visible[0] < 2 or visible[3] - visible[1] < 2:
            out_of_view[i] = True
        else:
            c0, r0, c1, r1 = (int(v) for v in visible)
            boxes[i] = (c0 + 1, r0 + 1, c1 - c0 + 1, r1 - r0 + 1)
        if occlusion_profile[i] > 0:
            pad_w, pad_h = int(0.25 * w) + 4, int(0.25 * h) + 4
            occ_w, occ_h = w + 2 * pad_w, h + 2 * pad_h
            shift = int(round((1 - occlusion_profile[i]) * (occ_w + w) * occluder_side))
            ox0, oy0 = x0 - pad_w + shift, y0 - pad_h
            ox1, oy1 = ox0 + occ_w, oy0 + occ_h
            sx0, sy0, sx1, sy1 = max(ox0, 0), max(oy0, 0), min(ox1, width), min(oy1, height)
            if sx1 > sx0 and sy1 > sy0:  # background texture from another part of the world
                fy = (sy0 + height // 2) % (world.shape[0] - (sy1 - sy0) + 1)
                fx = (sx0 + width // 2) % (world.shape[1] - (sx1 - sx0) + 1)
                frame[sy0:sy1, sx0:sx1] = world[fy:fy + sy1 - sy0, fx:fx + sx1 - sx0]
                cv2.rectangle(frame, (sx0, sy0), (sx1 - 1, sy1 - 1), (60, 60, 60), 1)
            if not out_of_view[i]:
                c0, r0 = boxes[i, 0] - 1, boxes[i, 1] - 1
                c1, r1 = c0 + boxes[i, 2] - 1, r0 + boxes[i, 3] - 1
                occluded[i] = ox0 <= c0 and oy0 <= r0 and ox1 > c1 and oy1 > r1
        frames.append(frame)

    nlp = description or (f"the {colour_names[0]} and {colour_names[1]} {pattern} {shape} moving "
                          "over a cluttered background")
    return SyntheticSequence(frames, boxes, occluded, out_of_view, nlp)


def write_sequence(seq_dir: str | Path, sequence: SyntheticSequence,
                   jpeg_quality: int = 90) -> Path:
    """Write ``sequence`` as a LaSOT sequence folder (built in a temporary folder, then renamed)."""
    seq_dir = Path(seq_dir)
    with atomic_dir(seq_dir) as temp:
        (temp / "img").mkdir()
        for index, frame in enumerate(sequence.frames, start=1):
            path = temp / "img" / f"{index:08d}.jpg"
            if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                raise OSError(f"could not write {path}")
        (temp / "groundtruth.txt").write_text(
            "".join(f"{x},{y},{w},{h}\n" for x, y, w, h in sequence.gt_boxes.tolist()))
        for name, flags in (("full_occlusion", sequence.full_occlusion),
                            ("out_of_view", sequence.out_of_view)):
            (temp / f"{name}.txt").write_text(",".join(str(int(v)) for v in flags) + "\n")
        (temp / "nlp.txt").write_text(sequence.nlp + "\n")
    return seq_dir


def make_lasot_dataset(root: str | Path, classes: Sequence[str] = ("car", "dog"),
                       seqs_per_class: int = 2, num_frames: int = 60,
                       size: tuple[int, int] = (320, 240), seed: int = 0,
                       test_per_class: int = 1, write_training_set: bool = True,
                       source: str = "shapes", events: bool = True) -> list[str]:
    """Write ``<root>/<class>/<class>-<id>/`` sequences (ids 1..seqs_per_class) and split files.

    The first ``test_per_class`` ids of each class are listed in ``<root>/testing_set.txt``,
    the others in ``<root>/training_set.txt`` (when ``write_training_set`` and any are left).
    Each sequence depends only on (seed, class name, id). Returns all sequence names.

    Args:
        size: (W, H) of the frames.
        source: ``"shapes"`` (generated patterns and clutter) or ``"photos"``: the classes are
            photos of :data:`.photos.PHOTOS`; each object is a shape cut from its class's photo,
            moving over a crop of another photo. Test sequences take both from the photos'
            held-out regions, training sequences from their training regions.
        events: False: no exit and no occlusion (see :func:`synthesize_sequence`); every frame
            is visible.
    """
    if seqs_per_class < 1 or not classes:
        raise ValueError("need at least one class and one sequence per class")
    if not 0 <= test_per_class <= seqs_per_class:
        raise ValueError(f"test_per_class={test_per_class} must lie in [0, {seqs_per_class}]")
    for class_name in classes:
        if not class_name or "/" in class_name or class_name.startswith("."):
            raise ValueError(f"invalid class name {class_name!r}")
    if source not in ("shapes", "photos"):
        raise ValueError(f"source must be 'shapes' or 'photos', got {source!r}")
    if source == "photos":
        unknown = [c for c in classes if c not in PHOTOS]
        if unknown:
            raise ValueError(f"source='photos' needs photo names as classes; unknown: {unknown} "
                             f"(known: {', '.join(PHOTOS)})")
        if len(PHOTOS) < 2:
            raise ValueError("source='photos' needs at least two photos (object and background)")

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names, test, train = [], [], []
    for class_name in classes:
        class_seed = zlib.crc32(class_name.encode("utf-8"))
        for seq_id in range(1, seqs_per_class + 1):
            name = f"{class_name}-{seq_id}"
            rng = np.random.default_rng([seed, class_seed, seq_id])
            shape = SHAPES[class_seed % len(SHAPES)]
            photos: dict[str, Any] = {}
            if source == "photos":
                region = "heldout" if seq_id <= test_per_class else "train"
                others = [p for p in PHOTOS if p != class_name]
                background = others[int(rng.integers(len(others)))]
                shape = SHAPES[int(rng.integers(len(SHAPES)))]
                photos = {"object_photo": photo_region(class_name, region),
                          "background_photo": photo_region(background, region),
                          "description": f"the {shape} cut from the {class_name} photograph moving "
                                         f"over the {background} photograph"}
            sequence = synthesize_sequence(rng, num_frames, size, shape=shape,
                                           pattern=PATTERNS[(class_seed // 7) % len(PATTERNS)],
                                           events=events, **photos)
            write_sequence(root / class_name / name, sequence)
            names.append(name)
            (test if seq_id <= test_per_class else train).append(name)
    atomic_write_text(root / "testing_set.txt", "".join(f"{n}\n" for n in test))
    if write_training_set and train:
        atomic_write_text(root / "training_set.txt", "".join(f"{n}\n" for n in train))
    return names


def fill_generated_lasot_roots(data_cfg: dict[str, Any], work_dir: str | Path) -> Path | None:
    """Point the root-less LaSOT entries of a tracking config's ``data.datasets`` at the generated set
    that ``data.generate`` describes, writing it first if it is not there yet.

    The set lands in ``<work_dir>/<generate.dirname>`` and is reused when its ``testing_set.txt``
    exists. Returns its root, or None when the config asks for nothing to be generated. With
    several processes, call it on one and let the others wait (the tools do).
    """
    generate = dict(data_cfg.get("generate") or {})
    rootless = [e for e in data_cfg["datasets"] if e.get("type") == "lasot" and not e.get("root")]
    if not generate or not rootless:
        return None
    root = Path(work_dir) / generate.pop("dirname", "synthetic_lasot")
    for entry in rootless:
        entry["root"] = str(root)
    if not (root / "testing_set.txt").is_file():
        if "size" in generate:
            generate["size"] = tuple(generate["size"])
        make_lasot_dataset(root, **generate)
    return root
