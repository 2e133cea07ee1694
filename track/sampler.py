"""Training pairs for the one-stream tracker: frame-pair sampling, cropping and augmentation.

One sample = a template crop (128 px, context factor 2, no jitter) and a search crop (256 px,
factor 4, centre and scale jitter) of the same target, the target's box in the search crop
(normalised ``cx, cy, w, h``) and its Gaussian heat-map target. The rules follow the recipe
(see the project's protocol notes):

* a dataset is drawn by ratio, then a sequence uniformly; a video needs more than 4 visible
  frames; the template is a visible frame ``t`` and the search a visible frame in
  ``(t, t + gap]``, ``gap`` starting at 200 and widened by 5 (with a new ``t``) until one
  qualifies; an image dataset (COCO) gives a static pair (same frame twice);
* search jitter: size x ``exp(N(0, 1) x 0.25)`` per axis, centre moved by
  ``sqrt(w' h') x 3 x U(-0.5, 0.5)`` per axis; crop side ``ceil(sqrt(w h) x factor)``, zero
  padding; a sample whose search crop is all padding is drawn again;
* joint horizontal flip (p 0.5) and grayscale (p 0.05) of both crops, brightness x
  ``U(0.8, 1.2)`` per crop, ImageNet normalisation.

Every random number of sample ``index`` of ``epoch`` comes from
``np.random.default_rng([seed, epoch, index])``: the data stream does not depend on the
number of workers, their order or on resuming, and needs no global RNG.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset

from track.datasets.base import SequenceReader
from track.losses import gaussian_heatmap
from track.processing import crop_and_resize, crop_visible_fraction, map_box_to_crop, random_jitter


def sample_frame_pair(visible: np.ndarray, rng: np.random.Generator, max_gap: int = 200,
                      gap_increase: int = 5,
                      min_visible_frames: int = 5) -> tuple[int, int] | None:
    """Template frame ``t`` and search frame ``s`` of a video, or None if too few are visible.

    ``t`` is a visible frame with a later visible frame; ``s`` a visible frame in
    ``(t, t + gap]``; when there is none, ``gap`` grows by ``gap_increase`` and ``t`` is drawn
    again (pytracking's "causal" mode). Needs at least ``min_visible_frames`` visible frames.
    """
    visible_ids = np.flatnonzero(np.asarray(visible, dtype=bool))
    if len(visible_ids) < min_visible_frames or len(visible_ids) < 2:
        return None
    gap = max_gap
    while True:
        template = int(visible_ids[rng.integers(0, len(visible_ids) - 1)])
        later = visible_ids[(visible_ids > template) & (visible_ids <= template + gap)]
        if len(later):
            return template, int(later[rng.integers(0, len(later))])
        gap += gap_increase


_SCALE = (1.0 / (255.0 * np.array(IMAGENET_DEFAULT_STD))).astype(np.float32)
_SHIFT = (-np.array(IMAGENET_DEFAULT_MEAN) / np.array(IMAGENET_DEFAULT_STD)).astype(np.float32)


def to_network_input(crop: np.ndarray, brightness: float = 1.0) -> torch.Tensor:
    """uint8 RGB crop (H, W, 3) -> brightness-scaled (clipped to 0..255), ImageNet-normalised
    float32 (3, H, W), as ``track.processing.normalise`` does.

    In numpy: data loading often runs in the main process next to the training threads,
    where small torch element-wise ops pay for thread hand-offs.
    """
    pixels = crop.astype(np.float32)
    if brightness != 1.0:
        pixels = np.clip(pixels * np.float32(brightness), 0.0, 255.0)
    return torch.from_numpy(np.ascontiguousarray((pixels * _SCALE + _SHIFT).transpose(2, 0, 1)))


class TrackingPairDataset(Dataset):
    """``samples_per_epoch`` training pairs drawn from several readers.

    Index with ``i`` (uses ``set_epoch``'s epoch) or with a pair ``(epoch, i)`` (what
    :class:`engine.EpochSampler` yields, so that worker processes need no epoch state).

    Args:
        datasets: training readers (:class:`track.datasets.base.SequenceReader`).
        ratios: relative sampling weight of each reader (default equal).
        samples_per_epoch: pairs per epoch.
        seed: base seed of the data stream.
        template_size, search_size: crop sides in pixels.
        template_factor, search_factor: context factors.
        center_jitter, scale_jitter: search jitter factors (3 and 0.25).
        max_gap, gap_increase, min_visible_frames: frame-pair rules.
        flip_prob, gray_prob, brightness_jitter: photometric/geometric augmentation.
        feat_size: side of the heat-map target (default ``search_size // 16``).
        max_attempts: draws allowed for one sample before giving up with an error.
    """

    def __init__(self, datasets: Sequence[SequenceReader], ratios: Sequence[float] | None = None,
                 samples_per_epoch: int = 60000, seed: int = 0, template_size: int = 128,
                 search_size: int = 256, template_factor: float = 2.0,
                 search_factor: float = 4.0, center_jitter: float = 3.0,
                 scale_jitter: float = 0.25, max_gap: int = 200, gap_increase: int = 5,
                 min_visible_frames: int = 5, flip_prob: float = 0.5, gray_prob: float = 0.05,
                 brightness_jitter: float = 0.2, feat_size: int | None = None,
                 max_attempts: int = 100) -> None:
        if not datasets:
            raise ValueError("need at least one training dataset")
        ratios = [1.0] * len(datasets) if ratios is None else [float(r) for r in ratios]
        if len(ratios) != len(datasets) or min(ratios) < 0 or sum(ratios) <= 0:
            raise ValueError(f"ratios {ratios} must be {len(datasets)} non-negative numbers "
                             "with a positive sum")
        empty = [getattr(r, "name", type(r).__name__) for r in datasets if len(r) == 0]
        if empty:
            raise ValueError(f"training datasets without sequences: {empty}")
        self.datasets = list(datasets)
        self.probabilities = np.array(ratios) / sum(ratios)
        self.samples_per_epoch = int(samples_per_epoch)
        self.seed = int(seed)
        self.epoch = 0
        self.template_size, self.search_size = int(template_size), int(search_size)
        self.template_factor, self.search_factor = float(template_factor), float(search_factor)
        self.center_jitter, self.scale_jitter = float(center_jitter), float(scale_jitter)
        self.max_gap, self.gap_increase = int(max_gap), int(gap_increase)
        self.min_visible_frames = int(min_visible_frames)
        self.flip_prob, self.gray_prob = float(flip_prob), float(gray_prob)
        self.brightness_jitter = float(brightness_jitter)
        self.feat_size = int(feat_size) if feat_size else self.search_size // 16
        self.max_attempts = int(max_attempts)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by plain integer indices."""
        self.epoch = int(epoch)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) \
            else (self.epoch, int(key))
        return self.sample(epoch, index)

    # ------------------------------------------------------------------------------ drawing
    def _draw_frames(self, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(dataset, sequence, template frame, search frame) following the pair rules."""
        for _ in range(self.max_attempts):
            dataset_index = int(rng.choice(len(self.datasets), p=self.probabilities))
            reader = self.datasets[dataset_index]
            sequence = int(rng.integers(0, len(reader)))
            visible = reader.sequence_info(sequence)["visible"]
            if not reader.is_video:
                if visible[0]:
                    return dataset_index, sequence, 0, 0
                continue
            pair = sample_frame_pair(visible, rng, self.max_gap, self.gap_increase,
                                     self.min_visible_frames)
            if pair is not None:
                return dataset_index, sequence, pair[0], pair[1]
        raise RuntimeError(f"no sequence with at least {self.min_visible_frames} visible frames "
                           f"found in {self.max_attempts} draws from "
                           f"{[r.name for r in self.datasets]}")

    def sample(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index`` of ``epoch`` (deterministic in (seed, epoch, index))."""
        rng = np.random.default_rng([self.seed, epoch, index])
        for _ in range(self.max_attempts):
            dataset_index, sequence, template_id, search_id = self._draw_frames(rng)
            reader = self.datasets[dataset_index]
            boxes = reader.sequence_info(sequence)["boxes"]
            jitter_center, jitter_scale = random_jitter(rng, self.center_jitter,
                                                        self.scale_jitter)
            template_img, search_img = reader.frames(sequence, [template_id, search_id])
            search = crop_and_resize(search_img, boxes[search_id], self.search_factor,
                                     self.search_size, jitter_center, jitter_scale)
            if crop_visible_fraction(search.crop_box, search_img.shape) <= 0:
                continue  # all padding: draw a new pair
            template = crop_and_resize(template_img, boxes[template_id], self.template_factor,
                                       self.template_size)
            search_box = map_box_to_crop(boxes[search_id], search.crop_box, self.search_size)
            template_box = map_box_to_crop(boxes[template_id], template.crop_box,
                                           self.template_size)
            return self._augment(rng, template.image, search.image, template_box, search_box,
                                 (dataset_index, sequence, template_id, search_id))
        raise RuntimeError(f"sample {index} of epoch {epoch}: every one of {self.max_attempts} "
                           "search crops was all padding")

    def _augment(self, rng: np.random.Generator, template: np.ndarray, search: np.ndarray,
                 template_box: np.ndarray, search_box: np.ndarray,
                 source: tuple[int, int, int, int]) -> dict[str, torch.Tensor]:
        gray = rng.random() < self.gray_prob
        flip = rng.random() < self.flip_prob
        low = max(0.0, 1.0 - self.brightness_jitter)
        factors = rng.uniform(low, 1.0 + self.brightness_jitter, size=2)
        crops, out_boxes = [], []
        for crop, box in ((template, template_box), (search, search_box)):
            if gray:
                crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            if flip:
                crop = np.ascontiguousarray(crop[:, ::-1])
                box = np.array([1.0 - box[0], box[1], box[2], box[3]])
            crops.append(crop)
            out_boxes.append(box)
        search_box = torch.tensor(out_boxes[1], dtype=torch.float32)
        return {
            "template": to_network_input(crops[0], float(factors[0])),
            "search": to_network_input(crops[1], float(factors[1])),
            "search_box": search_box,
            "template_box": torch.tensor(out_boxes[0], dtype=torch.float32),
            "heatmap": gaussian_heatmap(search_box, self.feat_size),
            "source": torch.tensor(source, dtype=torch.int64),
            "flipped": torch.tensor(flip),
        }
