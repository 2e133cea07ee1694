"""LaSOT sequence reader: frame paths, ground-truth boxes and visibility flags.

Layout (as distributed by the benchmark)::

    <root>/testing_set.txt                   optional, one sequence name a line
    <root>/training_set.txt                  optional
    <root>/<class>/<class>-<id>/img/00000001.jpg ...   8-digit, 1-based
    <root>/<class>/<class>-<id>/groundtruth.txt        x,y,w,h a line (1-based pixels)
    <root>/<class>/<class>-<id>/full_occlusion.txt     one comma-separated row of 0/1
    <root>/<class>/<class>-<id>/out_of_view.txt        one comma-separated row of 0/1
    <root>/<class>/<class>-<id>/nlp.txt                one line of text

The annotation text files are read by :mod:`evaluation.annotations` (shared with the evaluation,
which reads tracker result files with the same rules).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluation.annotations import read_lasot_annotation, read_sequence_list, sequence_class

SPLIT_FILES = {"test": "testing_set.txt", "train": "training_set.txt"}
FRAME_NAME = "{:08d}.jpg"


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to an RGB uint8 array (H, W, 3), read-only (copy it to draw on it).

    Pillow decodes (libjpeg-turbo, as fast as OpenCV here) because it reports a truncated file,
    where OpenCV returns the decoded part padded with grey. EXIF orientation is applied, as
    OpenCV's reader does. Raises FileNotFoundError for a missing file and ValueError naming the
    file and the decoder's report when it cannot be decoded.
    """
    from PIL import Image, ImageOps  # here, so that reading annotations (evaluation) needs no imaging package

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            ImageOps.exif_transpose(image, in_place=True)
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's reports of unreadable / truncated data
        raise ValueError(f"cannot decode image {path}: {error}") from None


@dataclass
class LasotSequence:
    """One LaSOT sequence: frame paths, boxes (1-based x,y,w,h) and per-frame flags."""

    name: str
    class_name: str
    path: Path
    frames: list[Path] = field(repr=False)
    gt_boxes: np.ndarray = field(repr=False)        # (N, 4) float64
    full_occlusion: np.ndarray = field(repr=False)  # (N,) bool
    out_of_view: np.ndarray = field(repr=False)     # (N,) bool
    nlp: str | None = None
    visible: np.ndarray = field(init=False, repr=False)  # (N,) bool

    def __post_init__(self) -> None:
        positive = (self.gt_boxes[:, 2] > 0) & (self.gt_boxes[:, 3] > 0)
        self.visible = ~self.full_occlusion & ~self.out_of_view & positive

    @property
    def absent(self) -> np.ndarray:
        """Target fully occluded or out of view (the toolkit's ``absent`` flag), (N,) bool."""
        return self.full_occlusion | self.out_of_view

    def __len__(self) -> int:
        return len(self.gt_boxes)

    def image(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as RGB uint8."""
        return read_image(self.frames[index])


def load_sequence(seq_dir: str | Path, check_images: bool = True) -> LasotSequence:
    """Read one ``<class>/<class>-<id>`` folder.

    With ``check_images`` the ``img/`` folder must hold exactly ``00000001.jpg`` ..
    ``<N>.jpg`` for the N ground-truth rows; without it the frame paths are only built.
    Raises FileNotFoundError / ValueError naming the file at fault.
    """
    seq_dir = Path(seq_dir)
    boxes, full_occlusion, out_of_view = read_lasot_annotation(seq_dir)
    gt_path = seq_dir / "groundtruth.txt"
    count = len(boxes)
    img_dir = seq_dir / "img"
    frames = [img_dir / FRAME_NAME.format(i) for i in range(1, count + 1)]
    if check_images:
        if not img_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {img_dir}")
        present = {p.name for p in img_dir.iterdir() if p.suffix.lower() == ".jpg"}
        expected = {p.name for p in frames}
        if present != expected:
            missing = sorted(expected - present)
            extra = sorted(present - expected)
            detail = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}")
            raise ValueError(f"{img_dir}: {len(present)} JPEG frames but {gt_path.name} has "
                             f"{count} rows ({detail})")
    nlp_path = seq_dir / "nlp.txt"
    nlp = nlp_path.read_text(encoding="utf-8").strip() if nlp_path.is_file() else None
    return LasotSequence(name=seq_dir.name, class_name=sequence_class(seq_dir.name),
                         path=seq_dir, frames=frames, gt_boxes=boxes,
                         full_occlusion=full_occlusion, out_of_view=out_of_view, nlp=nlp)


def _all_sequence_names(root: Path) -> list[str]:
    """Every ``<class>/<class>-<id>`` folder holding a groundtruth.txt, sorted by class then id."""
    names = [p.parent.name for p in root.glob("*/*/groundtruth.txt")
             if p.parent.name.startswith(p.parent.parent.name + "-")]

    def key(name: str) -> tuple[str, int | float, str]:
        class_name, _, index = name.rpartition("-")
        return (class_name, int(index) if index.isdigit() else float("inf"), index)

    return sorted(names, key=key)


def list_sequences(root: str | Path, split: str | None = None) -> list[str]:
    """Sequence names of a LaSOT root for ``split`` ("test", "train" or None for all).

    "test" reads ``testing_set.txt``; "train" reads ``training_set.txt``, or else takes every
    sequence folder not listed in ``testing_set.txt`` (LaSOT's 1120/280 protocol); a missing
    split file otherwise falls back to every sequence folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LaSOT root not found: {root}")
    if split not in (None, "test", "train"):
        raise ValueError(f"unknown split {split!r}: use 'test', 'train' or None")
    if split is not None and (root / SPLIT_FILES[split]).is_file():
        return read_sequence_list(root / SPLIT_FILES[split])
    names = _all_sequence_names(root)
    if split == "train" and (root / SPLIT_FILES["test"]).is_file():
        test = set(read_sequence_list(root / SPLIT_FILES["test"]))
        names = [n for n in names if n not in test]
    return names


class LasotDataset:
    """Sequences of a LaSOT root, loaded on first access and cached.

    Args:
        root: dataset root (the folder holding the class folders).
        split: "test", "train" or None (all sequence folders); see ``list_sequences``.
        check_images: verify each sequence's ``img/`` folder against its box count on load.
    """

    def __init__(self, root: str | Path, split: str | None = "test",
                 check_images: bool = True) -> None:
        self.root = Path(root)
        self.split = split
        self.check_images = check_images
        self.sequence_names = list_sequences(self.root, split)
        split_file = self.root / SPLIT_FILES[split] if split else None
        for name in self.sequence_names:
            seq_dir = self.sequence_dir(name)
            if not seq_dir.is_dir():
                where = f" (listed in {split_file})" if split_file and split_file.is_file() else ""
                raise FileNotFoundError(f"sequence folder not found: {seq_dir}{where}")
        self._cache: dict[str, LasotSequence] = {}

    def sequence_dir(self, name: str) -> Path:
        """Folder of sequence ``name``: ``<root>/<class>/<name>``."""
        return self.root / sequence_class(name) / name

    def __len__(self) -> int:
        return len(self.sequence_names)

    def __getitem__(self, key: int | str) -> LasotSequence:
        name = self.sequence_names[key] if isinstance(key, int) else key
        if name not in self._cache:
            self._cache[name] = load_sequence(self.sequence_dir(name), self.check_images)
        return self._cache[name]

    def __iter__(self) -> Iterator[LasotSequence]:
        for name in self.sequence_names:
            yield self[name]
