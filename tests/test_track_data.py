"""Training-data readers (GOT-10k, TrackingNet, COCO, LaSOT) and the pair sampler.

Every dataset is generated on the fly in its exact on-disk layout (real JPEG files and
annotation text / json files); the sampler is checked against rules and hand-placed objects.
"""
from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from track.datasets import (CocoDataset, Got10kDataset, LasotTrainDataset, TrackingNetDataset,
                            build_dataset, build_train_dataset)
from track.processing import normalise
from track.sampler import TrackingPairDataset, sample_frame_pair, to_network_input
from benchmarks.demo_data.lasot import make_lasot_dataset
from benchmarks.demo_data.tracking_layouts import (make_coco_dataset, make_got10k_dataset,
                                     make_trackingnet_dataset, write_trackingnet_video)

SIZE = (96, 72)  # (W, H) of generated frames


def _imread_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def got10k_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("got10k")
    make_got10k_dataset(root, num_sequences=3, num_frames=40, size=SIZE, seed=1)
    return root


@pytest.fixture(scope="module")
def trackingnet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("trackingnet")
    make_trackingnet_dataset(root, chunks=(0, 2), videos_per_chunk=2, num_frames=40, size=SIZE)
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    make_coco_dataset(root, num_images=3, size=SIZE)
    return root


@pytest.fixture(scope="module")
def lasot_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lasot")
    make_lasot_dataset(root, classes=("cat",), seqs_per_class=3, num_frames=40, size=SIZE,
                       test_per_class=1)
    return root


# ---------------------------------------------------------------------------------- GOT-10k
def test_got10k_reader_matches_files(got10k_root):
    with pytest.warns(UserWarning, match="no split_file"):
        reader = Got10kDataset(got10k_root)
    assert len(reader) == 3 and reader.is_video
    seq_dir = got10k_root / "train" / "GOT-10k_Train_000002"
    assert reader.sequence_name(1) == seq_dir.name
    info = reader.sequence_info(1)
    gt = np.loadtxt(seq_dir / "groundtruth.txt", delimiter=",")
    absence = np.loadtxt(seq_dir / "absence.label", dtype=int)
    cover = np.loadtxt(seq_dir / "cover.label", dtype=int)
    np.testing.assert_array_equal(info["boxes"], gt)
    expected = (absence == 0) & (cover > 0) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    np.testing.assert_array_equal(info["visible"], expected)
    assert 0 < expected.sum() < len(expected)  # the synthetic object leaves the view once
    frames = reader.frames(1, [0, 7])
    np.testing.assert_array_equal(frames[1], _imread_rgb(seq_dir / "00000008.jpg"))
    assert frames[0].shape == (SIZE[1], SIZE[0], 3) and frames[0].dtype == np.uint8


def test_got10k_split_file_names_or_indices(got10k_root, tmp_path):
    split = tmp_path / "vot_train.txt"
    split.write_text("2\n0\n")
    assert Got10kDataset(got10k_root, split_file=split).sequence_names == [
        "GOT-10k_Train_000003", "GOT-10k_Train_000001"]
    split.write_text("GOT-10k_Train_000002\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning with a split file
        assert Got10kDataset(got10k_root, split_file=split).sequence_names == [
            "GOT-10k_Train_000002"]
    split.write_text("0\nGOT-10k_Train_999999\n")
    with pytest.raises(ValueError, match=r"vot_train\.txt:2: 'GOT-10k_Train_999999'"):
        Got10kDataset(got10k_root, split_file=split)


def _copy_tree(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_got10k_malformed_and_missing_files(got10k_root, tmp_path):
    root = _copy_tree(got10k_root, tmp_path / "got")
    seq_dir = root / "train" / "GOT-10k_Train_000001"
    lines = (seq_dir / "groundtruth.txt").read_text().splitlines()
    lines[4] = "10.0,20.0,abc,5.0"
    (seq_dir / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    reader = _quiet(Got10kDataset, root)
    with pytest.raises(ValueError, match=r"GOT-10k_Train_000001/groundtruth\.txt:5:"):
        reader.sequence_info(0)
    labels = (seq_dir.parent / "GOT-10k_Train_000002" / "absence.label")
    rows = labels.read_text().splitlines()
    rows[2] = "yes"
    labels.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"GOT-10k_Train_000002/absence\.label:3: expected an "
                                         r"integer, got 'yes'"):
        reader.sequence_info(1)
    (seq_dir.parent / "GOT-10k_Train_000003" / "absence.label").unlink()
    with pytest.raises(FileNotFoundError, match=r"GOT-10k_Train_000003/absence\.label"):
        reader.sequence_info(2)
    (root / "train" / "list.txt").write_text("GOT-10k_Train_000001\nGOT-10k_Train_000009\n")
    with pytest.raises(FileNotFoundError, match=r"GOT-10k_Train_000009 \(listed in .*list\.txt"):
        _quiet(Got10kDataset, root)


def _quiet(factory, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return factory(*args, **kwargs)


# ------------------------------------------------------------------------------ TrackingNet
def test_trackingnet_reader_matches_files(trackingnet_root):
    reader = TrackingNetDataset(trackingnet_root, chunks=[0, 2])
    assert len(reader) == 4
    assert reader.sequence_name(2) == "TRAIN_2/synthetic_2_000"
    anno = trackingnet_root / "TRAIN_2" / "anno" / "synthetic_2_000.txt"
    gt = np.loadtxt(anno, delimiter=",")
    info = reader.sequence_info(2)
    np.testing.assert_array_equal(info["boxes"], gt)
    np.testing.assert_array_equal(info["visible"], (gt[:, 2] > 0) & (gt[:, 3] > 0))
    frame = reader.frames(2, [0])[0]  # 0-based names without padding
    np.testing.assert_array_equal(
        frame, _imread_rgb(trackingnet_root / "TRAIN_2" / "frames" / "synthetic_2_000" / "0.jpg"))
    with pytest.raises(IndexError, match="frame 40 out of range"):
        reader.frames(2, [40])


def test_trackingnet_errors(trackingnet_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"TRAIN_1/anno"):
        TrackingNetDataset(trackingnet_root, chunks=[0, 1])
    root = _copy_tree(trackingnet_root, tmp_path / "tn")
    anno = root / "TRAIN_0" / "anno" / "synthetic_0_001.txt"
    lines = anno.read_text().splitlines()
    lines[9] = "1,2,3"
    anno.write_text("\n".join(lines) + "\n")
    reader = TrackingNetDataset(root, chunks=[0])
    with pytest.raises(ValueError, match=r"synthetic_0_001\.txt:10: expected 4 numbers"):
        reader.sequence_info(1)
    missing = root / "TRAIN_0" / "frames" / "synthetic_0_000" / "3.jpg"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=r"synthetic_0_000/3\.jpg"):
        reader.frames(0, [3])
    corrupt = root / "TRAIN_0" / "frames" / "synthetic_0_000" / "4.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cannot decode image .*synthetic_0_000/4\.jpg: .*[Tt]runcated"):
        reader.frames(0, [4])


# ------------------------------------------------------------------------------------- COCO
def test_coco_reader_skips_crowd_and_tiny(coco_root, tmp_path):
    reader = build_dataset("coco", root=coco_root)  # also in the general reader registry
    assert isinstance(reader, CocoDataset)
    data = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())
    assert len(data["annotations"]) == 5 and len(reader) == 3  # 1 crowd + 1 tiny skipped
    assert not reader.is_video
    info = reader.sequence_info(1)
    np.testing.assert_array_equal(info["boxes"], [data["annotations"][1]["bbox"]])
    assert info["visible"].tolist() == [True]
    template, search = reader.frames(1, [0, 0])
    np.testing.assert_array_equal(template, search)
    np.testing.assert_array_equal(template, _imread_rgb(coco_root / "images" / "train2017" /
                                                        "000000000002.jpg"))
    # the flat <root>/train2017 layout is accepted too
    flat = tmp_path / "flat"
    make_coco_dataset(flat, num_images=2, size=SIZE, image_subdir="")
    assert len(CocoDataset(flat)) == 2 and CocoDataset(flat).image_dir == flat / "train2017"


def test_coco_errors(coco_root, tmp_path):
    root = _copy_tree(coco_root, tmp_path / "coco")
    path = root / "annotations" / "instances_train2017.json"
    text = path.read_text()
    data = json.loads(text)
    data["annotations"][2]["bbox"] = [1, 2, "x", 4]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"instances_train2017\.json: annotations\[2\] \(id 3\) "
                                         r"has bbox"):
        CocoDataset(root)
    path.write_text(text.replace('"images"', '"images" "broken"', 1))
    with pytest.raises(ValueError, match=r"instances_train2017\.json:\d+: invalid json"):
        CocoDataset(root)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"instances_train2017\.json"):
        CocoDataset(root)


# ------------------------------------------------------------------------------------ LaSOT
def test_lasot_train_reader_and_registry(lasot_root):
    reader = build_train_dataset("lasot", root=lasot_root)
    assert isinstance(reader, LasotTrainDataset)
    assert [reader.sequence_name(i) for i in range(len(reader))] == ["cat-2", "cat-3"]
    seq_dir = lasot_root / "cat" / "cat-3"
    info = reader.sequence_info(1)
    occluded = np.loadtxt(seq_dir / "full_occlusion.txt", delimiter=",").astype(bool)
    out = np.loadtxt(seq_dir / "out_of_view.txt", delimiter=",").astype(bool)
    gt = np.loadtxt(seq_dir / "groundtruth.txt", delimiter=",")
    np.testing.assert_array_equal(info["visible"], ~occluded & ~out & (gt[:, 2] > 0) & (gt[:, 3] > 0))
    np.testing.assert_array_equal(reader.frames(1, [5])[0], _imread_rgb(seq_dir / "img" / "00000006.jpg"))
    with pytest.raises(KeyError, match="unknown training dataset 'imagenet'"):
        build_train_dataset("imagenet", root=lasot_root)
    with pytest.raises(ValueError, match=r"'trackingnet' has no root.*--trackingnet-root"):
        build_train_dataset("trackingnet", root=None)


# ----------------------------------------------------------------------------- frame pairs
def test_pair_gap_rule_and_visibility():
    rng = np.random.default_rng(0)
    visible = rng.random(1000) < 0.7
    gaps = []
    for _ in range(2000):
        template, search = sample_frame_pair(visible, rng)
        assert visible[template] and visible[search]
        gaps.append(search - template)
    gaps = np.array(gaps)
    assert gaps.min() >= 1 and gaps.max() <= 200 and gaps.max() >= 190
    # more than 4 visible frames are needed
    four = np.zeros(50, bool)
    four[[3, 9, 20, 41]] = True
    assert sample_frame_pair(four, rng) is None
    four[45] = True
    template, search = sample_frame_pair(four, rng)
    assert four[template] and four[search] and template < search


def test_pair_gap_widens_by_five():
    visible = np.zeros(1400, bool)
    visible[[0, 250, 500, 750, 1000, 1250]] = True  # every gap is 250 > 200
    rng = np.random.default_rng(1)
    pairs = {sample_frame_pair(visible, rng) for _ in range(200)}
    # widening 200 -> 205 -> ... -> 250 reaches exactly the next visible frame, never two ahead
    assert pairs == {(0, 250), (250, 500), (500, 750), (750, 1000), (1000, 1250)}
    # gaps 500, 250, 500: the template is drawn again at each widening, so the 250 gap is
    # found (after 10 widenings) long before the gap could reach 500
    visible[[250, 1000]] = False
    pairs = {sample_frame_pair(visible, np.random.default_rng(seed), min_visible_frames=4)
             for seed in range(100)}
    assert pairs == {(500, 750)}


# ------------------------------------------------------------------------------ pair dataset
@pytest.fixture(scope="module")
def mixed_pairs(got10k_root, trackingnet_root, coco_root, lasot_root):
    readers = [_quiet(Got10kDataset, got10k_root), TrackingNetDataset(trackingnet_root, [0, 2]),
               CocoDataset(coco_root), LasotTrainDataset(lasot_root)]
    return TrackingPairDataset(readers, samples_per_epoch=32, seed=3)


def test_pair_dataset_shapes_and_rules(mixed_pairs):
    sources = []
    for index in range(24):
        sample = mixed_pairs[index]
        assert sample["template"].shape == (3, 128, 128)
        assert sample["search"].shape == (3, 256, 256)
        assert sample["heatmap"].shape == (16, 16) and sample["heatmap"].max() == 1.0
        assert sample["search_box"].shape == (4,) and sample["template_box"].shape == (4,)
        dataset, sequence, template_id, search_id = sample["source"].tolist()
        reader = mixed_pairs.datasets[dataset]
        visible = reader.sequence_info(sequence)["visible"]
        assert visible[template_id] and visible[search_id]
        if reader.is_video:
            assert 0 < search_id - template_id <= 200
        else:
            assert template_id == search_id == 0
        # the template is not jittered: its box sits at the centre (up to the crop's integer
        # corner) with a geometric-mean side of 1/factor (up to the crop side's ceil)
        box = sample["template_box"].numpy()
        w, h = reader.sequence_info(sequence)["boxes"][template_id][2:]
        side = np.ceil(np.sqrt(w * h) * 2.0)
        np.testing.assert_allclose(box[:2], 0.5, atol=0.5 / side + 1e-6)
        assert np.sqrt(w * h) / side <= np.sqrt(box[2] * box[3]) + 1e-6 <= 0.5 + 1e-6
        sources.append(dataset)
    assert set(sources) == {0, 1, 2, 3}


def test_pair_dataset_is_deterministic(mixed_pairs):
    first = mixed_pairs[(2, 5)]
    again = mixed_pairs[(2, 5)]
    mixed_pairs.set_epoch(2)
    by_epoch = mixed_pairs[5]
    other_epoch = mixed_pairs[(3, 5)]
    for key in first:
        assert torch.equal(first[key], again[key]) and torch.equal(first[key], by_epoch[key])
    assert not torch.equal(first["search"], other_epoch["search"])
    loader = torch.utils.data.DataLoader(mixed_pairs, batch_size=3, num_workers=2,
                                         sampler=[(2, i) for i in range(6)])
    batches = list(loader)
    for i in range(6):
        direct = mixed_pairs[(2, i)]
        assert torch.equal(batches[i // 3]["search"][i % 3], direct["search"])
        assert torch.equal(batches[i // 3]["source"][i % 3], direct["source"])


def _unnormalise(image: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def red_box_video(tmp_path_factory):
    """A TrackingNet-layout video: grey frames with a pure red rectangle at known boxes."""
    root = tmp_path_factory.mktemp("redbox")
    frames, boxes = [], []
    for i in range(8):
        frame = np.full((120, 160, 3), 110, np.uint8)
        x, y, w, h = 30 + 6 * i, 40 + 2 * i, 36, 24
        frame[y:y + h, x:x + w] = (0, 0, 255)  # BGR red
        frames.append(frame)
        boxes.append((x, y, w, h))
    write_trackingnet_video(root, 0, "redbox", frames, np.array(boxes, float))
    return root


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_search_box_lies_on_the_object(red_box_video, flip_prob):
    dataset = TrackingPairDataset([TrackingNetDataset(red_box_video, [0])], samples_per_epoch=10,
                                  seed=7, flip_prob=flip_prob, gray_prob=0.0,
                                  brightness_jitter=0.0)
    for index in range(6):
        sample = dataset[index]
        assert bool(sample["flipped"]) == (flip_prob == 1.0)
        for image_key, box_key, side in (("search", "search_box", 256),
                                         ("template", "template_box", 128)):
            pixels = _unnormalise(sample[image_key])
            cx, cy, w, h = (sample[box_key].numpy() * side).tolist()
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
            inside = red[int(np.ceil(y1)) + 2:int(y2) - 2, int(np.ceil(x1)) + 2:int(x2) - 2]
            assert inside.size > 0 and inside.mean() > 0.97
            rows, cols = np.nonzero(red)
            # every red pixel lies inside the box (up to the bilinear/JPEG fringe)
            assert cols.min() >= x1 - 2 and cols.max() <= x2 + 1
            assert rows.min() >= y1 - 2 and rows.max() <= y2 + 1


def test_all_padding_search_crops_are_drawn_again(red_box_video, tmp_path):
    frames = [np.full((60, 80, 3), 90, np.uint8) for _ in range(8)]
    far = np.tile([[2000.0, 2000.0, 20.0, 20.0]], (8, 1))  # annotated far outside the frame
    write_trackingnet_video(tmp_path, 0, "outside", frames, far)
    bad = TrackingNetDataset(tmp_path, [0])
    with pytest.raises(RuntimeError, match="all padding"):
        TrackingPairDataset([bad], samples_per_epoch=4, max_attempts=5)[0]
    good = TrackingNetDataset(red_box_video, [0])
    mixed = TrackingPairDataset([bad, good], samples_per_epoch=16, seed=0)
    for index in range(10):
        sample = mixed[index]
        assert sample["source"][0].item() == 1
        assert _unnormalise(sample["search"]).max() > 100


def test_network_input_matches_normalise():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert torch.equal(to_network_input(image), normalise(image))
    brighter = torch.from_numpy(image).float().mul(1.15).clamp(0, 255)
    torch.testing.assert_close(to_network_input(image, 1.15), normalise(brighter))
