"""Real photographs for the embedded study: the sample photos that scikit-image ships in its wheel.

Only files present in the installed package folder are used (``skimage/data/*.png|jpg``; the
images scikit-image downloads on first use are not), read with OpenCV, so nothing is fetched and
scikit-image is not even imported. Each photo is split once into a *training* region and a
*held-out* region (its rightmost quarter of columns): every generated training image (pre-training,
probe, segmentation, tracking) samples the training regions, every evaluation image the held-out
ones, so the evaluations never see pixels a model was trained on.

:func:`make_photo_imagenet` writes an ImageNet-layout folder (``<root>/{train,val}/<photo>/*.JPEG``)
of random crops of the photos, one class per photo: the data of the study's pre-training and
linear probe. The segmentation and tracking sets built from the same photos live beside the other
generators (:mod:`.ade20k`, :mod:`.lasot`, ``source="photos"``).
"""
from __future__ import annotations

import os
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from fileio import atomic_dir, atomic_write_json

__all__ = ["PHOTOS", "SPLITS", "photo_folder", "load_photo", "photo_region", "random_crop",
           "make_photo_imagenet"]

# name -> file in skimage/data. Photographs only (camera, telescope, microscope, fundus camera);
# drawings, text pages, synthetic charts and silhouettes (logo, page, text, color, horse, ...)
# are left out, and so is motorcycle_right (the stereo twin of motorcycle_left).
PHOTOS: dict[str, str] = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "ihc": "ihc.png",
    "moon": "moon.png",
    "motorcycle": "motorcycle_left.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
}
SPLITS = ("train", "heldout")
HELDOUT_FRACTION = 0.25
_MAX_SIDE = 512  # larger photos (retina, hubble) are downscaled once on loading


def photo_folder() -> Path:
    """The ``data`` folder inside the installed scikit-image package (no import, no download)."""
    spec = find_spec("skimage")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the embedded study needs the sample photos of scikit-image: "
                                  "pip install scikit-image (the project's [dev] extra installs it)")
    return Path(spec.origin).parent / "data"


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """One photo as BGR uint8 (grey photos repeated over three channels), longest side <= 512."""
    if name not in PHOTOS:
        raise KeyError(f"unknown photo {name!r}; known: {', '.join(PHOTOS)}")
    path = photo_folder() / PHOTOS[name]
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # drops alpha, greys become 3 equal channels
    if image is None:
        raise FileNotFoundError(f"{path}: missing or unreadable (photo {name!r} of scikit-image's "
                                "installed data folder)")
    scale = _MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    image.setflags(write=False)
    return image


def photo_region(name: str, split: str) -> np.ndarray:
    """The training region (left three quarters) or the held-out region (right quarter) of a photo."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    image = load_photo(name)
    cut = int(round(image.shape[1] * (1 - HELDOUT_FRACTION)))
    return image[:, :cut] if split == "train" else image[:, cut:]


def random_crop(rng: np.random.Generator, image: np.ndarray, size: tuple[int, int],
                scale: tuple[float, float] = (0.05, 0.5), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                flip: bool = True) -> np.ndarray:
    """A crop covering a random ``scale`` fraction of ``image`` (aspect in ``ratio``, clipped to
    the image), resized to ``size`` = (W, H) with area interpolation, optionally mirrored."""
    height, width = image.shape[:2]
    area = height * width * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))) * size[0] / size[1]
    crop_w = int(np.clip(round(np.sqrt(area * aspect)), 4, width))
    crop_h = int(np.clip(round(np.sqrt(area / aspect)), 4, height))
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    crop = cv2.resize(image[y0:y0 + crop_h, x0:x0 + crop_w], size, interpolation=cv2.INTER_AREA)
    if flip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def _jitter(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Mild brightness / contrast change, as different exposures of the same scene."""
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-12, 12)
    return np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


def make_photo_imagenet(root: str | os.PathLike, photos: Sequence[str] = tuple(PHOTOS),
                        per_class: int = 100, probe_per_class: int = 0, val_per_class: int = 20,
                        size: int = 80, scale: tuple[float, float] = (0.05, 0.5), seed: int = 0) -> dict:
    """Write ``size`` x ``size`` JPEG crops in ImageNet's layout, one class per photo:
    ``<root>/train/<photo>/`` (crops of the training regions, for pre-training),
    ``<root>/probe/<photo>/`` (other crops of the training regions, a smaller labelled set for
    linear probing; only with ``probe_per_class`` > 0) and ``<root>/val/<photo>/`` (crops of the
    held-out regions).

    The folder is built under a temporary name and renamed at the end, so an interrupted call
    leaves no partial set behind; ``<root>/photos.json`` records the classes and settings.
    Returns that record. Deterministic given the arguments.
    """
    if per_class < 1 or probe_per_class < 0 or val_per_class < 0 or size < 16:
        raise ValueError(f"need per_class >= 1, probe_per_class >= 0, val_per_class >= 0 and size >= 16, "
                         f"got {per_class}, {probe_per_class}, {val_per_class}, {size}")
    unknown = [p for p in photos if p not in PHOTOS]
    if unknown or not photos:
        raise ValueError(f"unknown photos {unknown} (known: {', '.join(PHOTOS)})" if unknown
                         else "need at least one photo")
    root = Path(root)
    with atomic_dir(root) as temp:
        counts = {}
        splits = [("train", per_class, "train"), ("probe", probe_per_class, "train"),
                  ("val", val_per_class, "heldout")]
        for stream, (split, count, region) in enumerate(splits):
            if split == "probe" and not count:
                continue
            for k, name in enumerate(photos):
                folder = temp / split / name
                folder.mkdir(parents=True)
                rng = np.random.default_rng([seed, stream, k])
                source = photo_region(name, region)
                for i in range(count):
                    crop = _jitter(rng, random_crop(rng, source, (size, size), scale))
                    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
                    if not ok:
                        raise RuntimeError(f"OpenCV could not encode {folder / f'{name}_{i:05d}.JPEG'}")
                    (folder / f"{name}_{split}_{i:05d}.JPEG").write_bytes(data.tobytes())
            counts[split] = count * len(photos)
        record = {"classes": list(photos), "counts": counts, "size": size, "scale": list(scale),
                  "seed": seed, "heldout_fraction": HELDOUT_FRACTION,
                  "source": {p: PHOTOS[p] for p in photos}}
        atomic_write_json(temp / "photos.json", record)
    return record
