"""Small synthetic training sets written in the exact layouts of GOT-10k, TrackingNet and COCO.

The frames come from :func:`benchmarks.demo_data.lasot.synthesize_sequence` (a textured object moving
over clutter, leaving the view once and being occluded once), so the readers, the pair
sampler and the training loop can run end to end without the real datasets. Each ``write_*``
function stores given frames and boxes; each ``make_*`` function renders and writes a whole
small dataset, determined by its seed. Boxes are written in 0-based pixels (the left edge of
pixel column 0 is x = 0), as these datasets do.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from benchmarks.demo_data.lasot import PATTERNS, SHAPES, SyntheticSequence, synthesize_sequence


def _write_jpeg(path: Path, image_bgr: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")


def _box_lines(boxes: np.ndarray) -> str:
    return "".join(",".join(f"{v:.4f}" for v in box) + "\n" for box in np.asarray(boxes, float))


def _zero_based(sequence: SyntheticSequence) -> np.ndarray:
    """LaSOT-style 1-based boxes of a rendered sequence -> 0-based (absent rows stay 0,0,0,0)."""
    boxes = sequence.gt_boxes.astype(np.float64)
    present = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    boxes[present, :2] -= 1
    return boxes


def _render(seed: int, key: str, index: int, num_frames: int,
            size: tuple[int, int]) -> SyntheticSequence:
    key_seed = zlib.crc32(key.encode("utf-8"))
    rng = np.random.default_rng([seed, key_seed, index])
    return synthesize_sequence(rng, num_frames, size, shape=SHAPES[index % len(SHAPES)],
                               pattern=PATTERNS[(index // len(SHAPES)) % len(PATTERNS)])


# ------------------------------------------------------------------------------------ GOT-10k
def write_got10k_sequence(seq_dir: str | Path, frames_bgr: Sequence[np.ndarray],
                          boxes: np.ndarray, absent: np.ndarray,
                          cover: np.ndarray | None = None) -> Path:
    """Write one ``GOT-10k_Train_XXXXXX`` folder: frames, groundtruth.txt and the label files."""
    seq_dir = Path(seq_dir)
    seq_dir.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames_bgr, start=1):
        _write_jpeg(seq_dir / f"{index:08d}.jpg", frame)
    absent = np.asarray(absent, dtype=int)
    if cover is None:
        cover = np.where(absent, 0, 8)
    (seq_dir / "groundtruth.txt").write_text(_box_lines(boxes))
    (seq_dir / "absence.label").write_text("".join(f"{v}\n" for v in absent))
    (seq_dir / "cover.label").write_text("".join(f"{int(v)}\n" for v in cover))
    (seq_dir / "cut_by_image.label").write_text("".join("0\n" for _ in absent))
    height, width = frames_bgr[0].shape[:2]
    (seq_dir / "meta_info.ini").write_text(
        "[METAINFO]\nurl: synthetic\nbegin: 00:00:00\nend: 00:00:01\nanno_fps: 10Hz\n"
        f"object_class: synthetic\nmotion_class: moving\nmajor_class: synthetic\n"
        f"root_class: object\nmotion_adverb: smoothly\nresolution: ({width}, {height})\n")
    return seq_dir


def make_got10k_dataset(root: str | Path, num_sequences: int = 3, num_frames: int = 40,
                        size: tuple[int, int] = (160, 120), seed: int = 0) -> list[str]:
    """Write ``<root>/train/GOT-10k_Train_00000k/`` sequences and ``train/list.txt``.

    Absent (``absence.label`` = 1, ``cover.label`` = 0) where the rendered object is out of
    view or fully occluded. Returns the sequence names.
    """
    names = []
    for index in range(num_sequences):
        name = f"GOT-10k_Train_{index + 1:06d}"
        sequence = _render(seed, "got10k", index, num_frames, size)
        absent = sequence.out_of_view | sequence.full_occlusion
        write_got10k_sequence(Path(root) / "train" / name, sequence.frames,
                              _zero_based(sequence), absent)
        names.append(name)
    (Path(root) / "train" / "list.txt").write_text("".join(f"{n}\n" for n in names))
    return names


# -------------------------------------------------------------------------------- TrackingNet
def write_trackingnet_video(root: str | Path, chunk: int, video: str,
                            frames_bgr: Sequence[np.ndarray], boxes: np.ndarray) -> Path:
    """Write ``TRAIN_<chunk>/frames/<video>/<i>.jpg`` and ``TRAIN_<chunk>/anno/<video>.txt``."""
    chunk_dir = Path(root) / f"TRAIN_{chunk}"
    for index, frame in enumerate(frames_bgr):
        _write_jpeg(chunk_dir / "frames" / video / f"{index}.jpg", frame)
    (chunk_dir / "anno").mkdir(parents=True, exist_ok=True)
    anno_path = chunk_dir / "anno" / f"{video}.txt"
    anno_path.write_text(_box_lines(boxes))
    return anno_path


def make_trackingnet_dataset(root: str | Path, chunks: Sequence[int] = (0, 1),
                             videos_per_chunk: int = 2, num_frames: int = 40,
                             size: tuple[int, int] = (160, 120), seed: int = 0) -> list[str]:
    """Write small TrackingNet chunks; out-of-view frames get a 0,0,0,0 box. Returns
    ``TRAIN_<k>/<video>`` names."""
    names = []
    for chunk in chunks:
        for index in range(videos_per_chunk):
            video = f"synthetic_{chunk}_{index:03d}"
            sequence = _render(seed, f"trackingnet{chunk}", index, num_frames, size)
            write_trackingnet_video(root, chunk, video, sequence.frames, _zero_based(sequence))
            names.append(f"TRAIN_{chunk}/{video}")
    return names


# ------------------------------------------------------------------------------------- COCO
def write_coco_dataset(root: str | Path, images_bgr: Sequence[np.ndarray],
                       annotations: Sequence[dict], split: str = "train2017",
                       image_subdir: str = "images") -> Path:
    """Write images ``<root>/<image_subdir>/<split>/<id:012d>.jpg`` and the instances json.

    ``annotations``: dicts with ``image_index`` (into ``images_bgr``), ``bbox`` and optional
    ``iscrowd`` / ``category_id``. Returns the json path.
    """
    root = Path(root)
    image_dir = root / image_subdir / split if image_subdir else root / split
    images = []
    for index, image in enumerate(images_bgr):
        file_name = f"{index + 1:012d}.jpg"
        _write_jpeg(image_dir / file_name, image)
        images.append({"id": index + 1, "file_name": file_name, "height": image.shape[0],
                       "width": image.shape[1]})
    annos = []
    for anno_id, anno in enumerate(annotations, start=1):
        x, y, w, h = (float(v) for v in anno["bbox"])
        annos.append({"id": anno_id, "image_id": anno["image_index"] + 1,
                      "category_id": anno.get("category_id", 1), "bbox": [x, y, w, h],
                      "area": w * h, "iscrowd": int(anno.get("iscrowd", 0)),
                      "segmentation": []})
    data = {"info": {"description": "synthetic"}, "images": images, "annotations": annos,
            "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}
    json_path = root / "annotations" / f"instances_{split}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data, indent=1))
    return json_path


def make_coco_dataset(root: str | Path, num_images: int = 4, size: tuple[int, int] = (160, 120),
                      seed: int = 0, image_subdir: str = "images") -> dict[str, int]:
    """Write a small COCO-layout set: one object per image, plus one crowd annotation and one
    tiny (3 x 3 px) box on the first image, which the reader must skip.

    Returns counts: ``{"images", "annotations", "usable"}``.
    """
    images, annotations = [], []
    for index in range(num_images):
        sequence = _render(seed, "coco", index, 2, size)
        images.append(sequence.frames[0])
        annotations.append({"image_index": index, "bbox": _zero_based(sequence)[0].tolist()})
    annotations.append({"image_index": 0, "bbox": [5.0, 5.0, 30.0, 20.0], "iscrowd": 1})
    annotations.append({"image_index": 0, "bbox": [50.0, 50.0, 3.0, 3.0]})
    write_coco_dataset(root, images, annotations, image_subdir=image_subdir)
    return {"images": num_images, "annotations": len(annotations), "usable": num_images}
