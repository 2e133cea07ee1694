"""COCO 2017 objects as static tracking pairs (template and search from the same image).

Layout::

    <root>/annotations/instances_train2017.json
    <root>/images/train2017/<file_name>      (``<root>/train2017/<file_name>`` is accepted too)

The json is parsed with the standard library (pycocotools is not needed for boxes). Each
non-crowd annotation whose box is at least ``min_size`` pixels wide and high is one
"sequence" of a single frame.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import SequenceReader, make_info


def _field(record: dict, key: str, path: Path, where: str):
    if key not in record:
        raise ValueError(f"{path}: {where} has no {key!r} field")
    return record[key]


class CocoDataset(SequenceReader):
    """Annotated objects of a COCO instances file, one single-frame "sequence" each.

    Args:
        root: dataset root (see the module docstring).
        split: image set name, e.g. "train2017".
        min_size: objects narrower or lower than this (pixels) are skipped.
    """

    name = "coco"
    is_video = False

    def __init__(self, root: str | Path, split: str = "train2017", min_size: float = 8.0) -> None:
        super().__init__()
        self.root = Path(root)
        self.anno_path = self.root / "annotations" / f"instances_{split}.json"
        if not self.anno_path.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {self.anno_path}")
        candidates = [self.root / "images" / split, self.root / split]
        self.image_dir = next((d for d in candidates if d.is_dir()), None)
        if self.image_dir is None:
            raise FileNotFoundError(f"COCO image folder not found: tried "
                                    f"{', '.join(str(d) for d in candidates)}")
        try:
            data = json.loads(self.anno_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.anno_path}:{error.lineno}: invalid json "
                             f"(column {error.colno}): {error.msg}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.anno_path}: expected a json object at the top level")
        files: dict[int, str] = {}
        for position, image in enumerate(_field(data, "images", self.anno_path, "the file")):
            where = f"images[{position}]"
            files[int(_field(image, "id", self.anno_path, where))] = str(
                _field(image, "file_name", self.anno_path, where))
        self.objects: list[tuple[str, np.ndarray, int]] = []  # (file name, box, annotation id)
        for position, anno in enumerate(_field(data, "annotations", self.anno_path, "the file")):
            where = f"annotations[{position}]"
            anno_id = int(anno.get("id", position))
            if anno.get("iscrowd", 0):
                continue
            bbox = _field(anno, "bbox", self.anno_path, where)
            try:
                box = np.array([float(v) for v in bbox], dtype=np.float64)
                if box.shape != (4,) or not all(math.isfinite(v) for v in box):
                    raise ValueError
            except (TypeError, ValueError):
                raise ValueError(f"{self.anno_path}: {where} (id {anno_id}) has bbox {bbox!r}, "
                                 "expected 4 finite numbers x,y,w,h") from None
            image_id = int(_field(anno, "image_id", self.anno_path, where))
            if image_id not in files:
                raise ValueError(f"{self.anno_path}: {where} (id {anno_id}) refers to image "
                                 f"{image_id}, which is not in 'images'")
            if box[2] < min_size or box[3] < min_size:
                continue
            self.objects.append((files[image_id], box, anno_id))
        if not self.objects:
            raise ValueError(f"{self.anno_path}: no non-crowd object of at least {min_size} px")

    def __len__(self) -> int:
        return len(self.objects)

    def sequence_name(self, index: int) -> str:
        file_name, _, anno_id = self.objects[index]
        return f"{file_name}#{anno_id}"

    def _load_info(self, index: int) -> dict[str, np.ndarray]:
        return make_info(self.objects[index][1][None])

    def _frame_paths(self, index: int, ids: Sequence[int]) -> list[Path]:
        return [self.image_dir / self.objects[index][0] for _ in ids]
