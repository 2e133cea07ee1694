"""Crops and box mapping, the per-frame tracker, and the tracking tools end to end."""
from __future__ import annotations

import copy
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from track.model import build_tracker
from track.processing import (CropBox, box_cxcywh_to_xywh, box_cxcywh_to_xyxy, box_xywh_to_cxcywh,
                              box_xywh_to_xyxy, box_xyxy_to_cxcywh, box_xyxy_to_xywh, clip_box, crop_and_resize,
                              crop_visible_fraction, crop_window, hann_window, hann_window_2d, jittered_box,
                              map_box_to_crop, map_crop_box_to_image, normalise)
from track.tracker import InferenceNetwork, Tracker
from conftest import write_square_video

REPO = Path(__file__).resolve().parents[1]


# one torch thread: the machine running the suite is shared, and spinning threads waste it
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_tracker().eval()


@pytest.fixture(scope="module")
def tracker(model):
    return Tracker(model, device="cpu")


@pytest.fixture(autouse=True)
def _model_unchanged(request):
    """The tests share the module's model: none may change it, or a later test would check another
    model than it names, depending on the order the tests run in."""
    if "model" not in request.fixturenames:
        yield
        return
    model = request.getfixturevalue("model")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    yield
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert not changed, f"the test changed the shared model: {changed[:5]}"


def _noise_image(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, size=(height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------- processing

def test_hann_window_hand_values():
    # 0.5 (1 - cos(2 pi k / 5)) for k = 1..4: cos(72 deg) = 0.309017, cos(144 deg) = -0.809017
    expected = [0.5 * (1 - 0.30901699), 0.5 * (1 + 0.80901699), 0.5 * (1 + 0.80901699), 0.5 * (1 - 0.30901699)]
    torch.testing.assert_close(hann_window(4), torch.tensor(expected), atol=1e-6, rtol=0)
    assert not np.allclose(hann_window(4).numpy(), np.hanning(4))   # np.hanning is zero at both ends
    window = hann_window_2d(16)
    assert window.shape == (16, 16) and window.min() > 0
    torch.testing.assert_close(window[3, 5], hann_window(16)[3] * hann_window(16)[5])


def test_crop_window_hand_values():
    # side = ceil(sqrt(30 * 40) * 2) = ceil(69.28) = 70; centre (25, 40) -> corner round(25 - 35), round(40 - 35)
    assert crop_window((10, 20, 30, 40), 2.0) == CropBox(-10, 5, 70)
    assert crop_window((0, 0, 16, 16), 4.0) == CropBox(-24, -24, 64)
    # jitter: sizes x (2, 0.5) -> 60 x 20; centre moved by (0.5, -1) * sqrt(60 * 20)
    x, y, w, h = jittered_box((10, 20, 30, 40), jitter_center=(0.5, -1.0), jitter_scale=(2.0, 0.5))
    size = math.sqrt(60 * 20)
    assert (w, h) == (60, 20)
    assert math.isclose(x + w / 2, 25 + 0.5 * size) and math.isclose(y + h / 2, 40 - size)
    for bad in [(0, 0, 0, 5), (0, 0, 5, -1), (0, 0, float("nan"), 5)]:
        with pytest.raises(ValueError):
            crop_window(bad, 2.0)


def test_crop_inside_is_the_image_slice():
    image = _noise_image()
    crop = crop_and_resize(image, (40, 30, 16, 16), 2.0, 32)          # side 32 -> scale 1
    assert crop.scale == 1.0 and crop.crop_box == CropBox(32, 22, 32)
    assert np.array_equal(crop.image, image[22:54, 32:64])


def test_crop_resize_matches_opencv_resize():
    """Down- and up-scaled crops sample the same pixel centres as cv2.resize of the window."""
    image = _noise_image()
    down = crop_and_resize(image, (40, 30, 32, 32), 2.0, 32)          # window 64 -> 32
    x1, y1, side = down.crop_box
    reference = cv2.resize(image[y1:y1 + side, x1:x1 + side], (32, 32), interpolation=cv2.INTER_LINEAR)
    assert np.abs(down.image.astype(int) - reference).max() <= 1
    up = crop_and_resize(image, (40, 30, 8, 8), 2.0, 32)              # window 16 -> 32
    x1, y1, side = up.crop_box
    reference = cv2.resize(image[y1:y1 + side, x1:x1 + side], (32, 32), interpolation=cv2.INTER_LINEAR)
    # inside the window; the outermost ring differs (resize replicates the window's edge,
    # the crop reads the real neighbouring pixels)
    assert np.abs(up.image.astype(int) - reference)[1:-1, 1:-1].max() <= 1


def test_crop_at_border_pads_with_zeros():
    image = _noise_image()                                            # all pixels >= 1
    crop = crop_and_resize(image, (0, 0, 10, 10), 4.0, 40)            # window (-15, -15) side 40, scale 1
    assert crop.crop_box == CropBox(-15, -15, 40)
    assert (crop.image[:15] == 0).all() and (crop.image[:, :15] == 0).all()
    assert np.array_equal(crop.image[15:, 15:], image[:25, :25])
    corner = crop_and_resize(image, (150, 110, 20, 20), 4.0, 40)     # bottom-right, scale 0.5
    x1, y1, side = corner.crop_box
    inside = (image.shape[1] - x1) * 40 // side
    assert (corner.image[:, inside + 1:] == 0).all() and corner.image[: inside - 1, : inside - 1].min() > 0
    assert crop_visible_fraction(crop.crop_box, image.shape) == pytest.approx(25 * 25 / 1600)
    assert crop_visible_fraction(CropBox(500, 500, 10), image.shape) == 0.0


def test_box_mapping_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        prev = np.array([*rng.uniform(-20, 300, 2), *rng.uniform(2, 120, 2)])
        box = prev + rng.normal(0, 5, 4) * [1, 1, 0.2, 0.2]
        window = crop_window(prev, 4.0)
        normalised = map_box_to_crop(box, window, 256)
        np.testing.assert_allclose(map_crop_box_to_image(normalised, window), box, atol=1e-9)
        pixels = map_box_to_crop(box, window, 256, normalised=False)
        np.testing.assert_allclose(pixels, [(box[0] - window.x1) * 256 / window.side,
                                            (box[1] - window.y1) * 256 / window.side,
                                            box[2] * 256 / window.side, box[3] * 256 / window.side])
    # the box a crop was cut around sits at the crop centre (up to the corner's rounding)
    box = (100.0, 50.0, 40.0, 10.0)                                   # side ceil(20 * 4) = 80, exact corner
    np.testing.assert_allclose(map_box_to_crop(box, crop_window(box, 4.0), 256), [0.5, 0.5, 0.5, 0.125])


def test_box_conversions():
    xywh = np.array([[10.0, 20.0, 30.0, 40.0]])
    np.testing.assert_allclose(box_xywh_to_cxcywh(xywh), [[25, 40, 30, 40]])
    np.testing.assert_allclose(box_xywh_to_xyxy(xywh), [[10, 20, 40, 60]])
    np.testing.assert_allclose(box_cxcywh_to_xyxy(box_xywh_to_cxcywh(xywh)), [[10, 20, 40, 60]])
    np.testing.assert_allclose(box_xyxy_to_xywh(box_xywh_to_xyxy(xywh)), xywh)
    np.testing.assert_allclose(box_cxcywh_to_xywh(box_xyxy_to_cxcywh(np.array([[10.0, 20, 40, 60]]))), xywh)
    tensor = torch.tensor([[0.5, 0.5, 0.2, 0.4]], requires_grad=True)
    out = box_cxcywh_to_xyxy(tensor)
    assert isinstance(out, torch.Tensor) and out.requires_grad
    torch.testing.assert_close(out, torch.tensor([[0.4, 0.3, 0.6, 0.7]]))


def test_clip_box_hand_values():
    np.testing.assert_allclose(clip_box((10, 10, 20, 20), 100, 100), [10, 10, 20, 20])
    np.testing.assert_allclose(clip_box((-30, 95, 50, 50), 100, 100), [0, 90, 20, 10])
    np.testing.assert_allclose(clip_box((120, -50, 10, 20), 100, 100), [90, 0, 10, 10])


def test_normalise_values():
    pixel = np.array([[[0, 128, 255]]], dtype=np.uint8)
    out = normalise(pixel)
    expected = [(0 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (255 / 255 - 0.406) / 0.225]
    torch.testing.assert_close(out[:, 0, 0], torch.tensor(expected, dtype=torch.float32))
    assert normalise(np.zeros((2, 5, 6, 3), np.uint8)).shape == (2, 3, 5, 6)


# ---------------------------------------------------------------------------- tracker

def test_inference_network_matches_model(model):
    """Folded normalisation + folded BatchNorm (non-trivial statistics, on a copy of the shared
    model) + cached template tokens + fused-attention CE locate the box, and the raw score-map
    peak, that the model's own maps give for normalised crops."""
    from track.model import decode_boxes

    net = copy.deepcopy(model)
    rng = np.random.default_rng(1)
    template = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    search = rng.integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    with torch.no_grad():
        for m in net.head.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    fast = InferenceNetwork(net)
    box, peak = fast.locate(fast.template_tokens(template).expand(4, -1, -1), search)
    with torch.inference_mode():
        reference = net(normalise(template)[None].expand(4, -1, -1, -1), normalise(search))
    window = hann_window_2d(16).view(1, 1, 16, 16)
    expected_box, _ = decode_boxes(reference["score_map"] * window, reference["offset_map"], reference["size_map"])
    np.testing.assert_allclose(box, expected_box.numpy(), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(peak, reference["score_map"].flatten(1).max(1).values.numpy(), rtol=1e-4, atol=2e-5)


def test_offset_size_at_equals_the_full_maps():
    """The offset / size branches run on one cell's receptive field give the full maps' values at
    every cell of the map, borders and corners included (BatchNorm with non-trivial statistics)."""
    from track.model import CenterHead

    torch.manual_seed(5)
    head = CenterHead(24, width=32).eval()
    with torch.no_grad():
        for m in head.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        feat = torch.randn(2, 24, 16, 16)
        _, offset_map, size_map = head(feat)
        cells = torch.arange(256)
        offset, size = head.offset_size_at(feat.repeat_interleave(256, 0), cells.repeat(2))
    expected_offset = offset_map.flatten(2).permute(0, 2, 1).reshape(-1, 2)
    expected_size = size_map.flatten(2).permute(0, 2, 1).reshape(-1, 2)
    torch.testing.assert_close(offset, expected_offset, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(size, expected_size, rtol=1e-5, atol=1e-6)


def test_locate_is_the_windowed_decode(model):
    """``locate`` (score branch on the whole map, offset / size at the chosen cell) returns the box
    that ``decode_boxes`` reads from the windowed full maps, and the raw peak as the score; the
    inference copy (folded normalisation and BatchNorm, uint8 crops) returns the same, for a
    batch of crops as for each crop alone."""
    from track.model import decode_boxes

    rng = np.random.default_rng(6)
    template = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    search = rng.integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    window = hann_window_2d(16).view(1, 1, 16, 16)
    with torch.inference_mode():
        tokens = model.embed_template(normalise(template)[None])
        out = model.forward_tokens(tokens.expand(3, -1, -1), normalise(search))
        expected_box, _ = decode_boxes(out["score_map"] * window, out["offset_map"], out["size_map"])
        box, peak = model.locate(tokens.expand(3, -1, -1), normalise(search), window)
    torch.testing.assert_close(box, expected_box, rtol=0, atol=1e-6)
    torch.testing.assert_close(peak, out["score_map"].flatten(1).max(1).values)
    fast = InferenceNetwork(model)
    fast_tokens = fast.template_tokens(template)
    fast_box, fast_peak = fast.locate(fast_tokens.expand(3, -1, -1), search)
    np.testing.assert_allclose(fast_box, expected_box.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast_peak, peak.numpy(), atol=1e-5)
    for i in range(3):
        one_box, one_peak = fast.locate(fast_tokens, search[i])
        np.testing.assert_allclose(one_box[0], fast_box[i], atol=1e-5)
    no_window = InferenceNetwork(model, window=False)
    plain_box, _ = no_window.locate(fast_tokens.expand(3, -1, -1), search)
    expected_plain, _ = decode_boxes(out["score_map"], out["offset_map"], out["size_map"])
    np.testing.assert_allclose(plain_box, expected_plain.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler")
def test_compiled_network_matches_eager():
    """The frozen, compiled per-frame step returns the eager step's box and peak (fp32), and a second
    compiled network of other weights runs its own weights, not the first one's frozen graph."""
    from track.config import build_model, load_config

    cfg = load_config(REPO / "configs/track/vit_tiny_ce_tiny_synthetic.py")   # small: compiles in seconds
    torch.manual_seed(11)
    first, second = build_model(cfg, pretrained=None).eval(), build_model(cfg, pretrained=None).eval()
    rng = np.random.default_rng(7)
    template = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for net in (first, second):
        eager, compiled = InferenceNetwork(net), InferenceNetwork(net, compile=True)
        tokens = eager.template_tokens(template)
        for _ in range(2):  # the second call runs the cached compiled graph
            search = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
            box, peak = eager.locate(tokens, search)
            compiled_box, compiled_peak = compiled.locate(tokens, search)
            np.testing.assert_allclose(compiled_box, box, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(compiled_peak, peak, atol=1e-4)
        assert len(compiled._steps) == 1


def test_compile_modes_are_checked(model):
    with pytest.raises(ValueError, match="max-autotune"):
        InferenceNetwork(model, compile="fastest")
    assert InferenceNetwork(model, compile=True).compile == "default"
    assert InferenceNetwork(model, compile=False).compile is None


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_cpu_runtimes_match_torch(model, backend):
    """ONNX Runtime and OpenVINO (f32 inference precision) locate the boxes and score peaks PyTorch
    fp32 locates, for one crop and for a batch."""
    pytest.importorskip(backend)
    rng = np.random.default_rng(2)
    template = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    search = rng.integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    torch_net, other = InferenceNetwork(model), InferenceNetwork(model, backend=backend)
    tokens = torch_net.template_tokens(template)
    box, peak = torch_net.locate(tokens.expand(3, -1, -1), search)
    other_box, other_peak = other.locate(tokens.expand(3, -1, -1), search)
    np.testing.assert_allclose(other_box, box, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(other_peak, peak, atol=1e-4)
    one_box, _ = other.locate(tokens, search[1])
    np.testing.assert_allclose(one_box[0], box[1], rtol=1e-4, atol=1e-4)


def test_ostrack_network_gives_the_same_maps(model):
    """Our weights in OSTrack's own network (the peers' code) give our maps: the checkpoint
    mapping, the CE rule and the head are OSTrack's."""
    from benchmarks.peers import load_peers, unavailable_reason
    from track.model import ostrack_to_ours

    peers = load_peers()
    if peers is None:
        pytest.skip(unavailable_reason())
    net, mask = peers.ostrack_vit_tiny_ce()
    ours = model.state_dict()
    names = {key: ostrack_to_ours(key) for key in net.state_dict()}   # the loader's own key mapping
    assert sorted(names.values(), key=str) == sorted(ours)              # one of ours for each of theirs
    net.load_state_dict({key: ours[name] for key, name in names.items()})
    g = torch.Generator().manual_seed(3)
    z, x = torch.randn(2, 3, 128, 128, generator=g), torch.randn(2, 3, 256, 256, generator=g)
    with torch.inference_mode():
        ours = model(z, x)
        theirs = net(template=z, search=x, ce_template_mask=mask.expand(2, -1))
    for name in ("score_map", "size_map", "offset_map"):
        torch.testing.assert_close(theirs[name], ours[name], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(theirs["pred_boxes"].view(2, 4), ours["pred_boxes"], rtol=1e-4, atol=1e-5)


def test_oracle_network_tracks_the_ground_truth(tmp_path):
    """The geometry of tracking end to end, on generated photo-free sequences: a network that
    answers with the ground truth mapped into the crop the tracker cut (around its previous box)
    gives back the ground truth in image pixels frame after frame, and the LaSOT evaluator scores
    it perfect. A wrong crop window, mapping or clip anywhere would make the boxes drift."""
    from benchmarks.demo_data.lasot import make_lasot_dataset
    from evaluation.lasot import evaluate_tracker, load_annotations
    from track.datasets.lasot import LasotDataset

    root = tmp_path / "lasot"
    make_lasot_dataset(root, ("car", "dog"), seqs_per_class=1, num_frames=12, size=(160, 120), events=False)
    tracker = Tracker(build_tracker(depth=1, ce_locations=(0,), template_size=64, search_size=128).eval(),
                      search_factor=3.0, device="cpu")
    frame_index = [0]

    def oracle(template_tokens, crops):
        window = crop_window(tracker.tracks.states[0], tracker.tracks.search_factor)
        box = map_box_to_crop(sequence.gt_boxes[frame_index[0]], window, crops.shape[1])
        return box[None].astype(np.float32), np.ones(1, np.float32)

    tracker.tracks.network.locate = oracle
    for sequence in LasotDataset(root, split="test"):
        boxes = [tracker.initialize(sequence.image(0), sequence.gt_boxes[0])["box"]]
        for frame_index[0] in range(1, len(sequence)):
            boxes.append(tracker.track(sequence.image(frame_index[0]))[0])
        np.testing.assert_allclose(np.array(boxes), sequence.gt_boxes, atol=1e-4)
        np.savetxt(tmp_path / f"{sequence.name}.txt", np.array(boxes), delimiter=",")
    assert evaluate_tracker(tmp_path, load_annotations(root), progress=False).AUC == pytest.approx(100 * 20 / 21)


def test_tracker_step_follows_the_protocol(model, tracker):
    """One step by hand: crop around the previous box, windowed peak, decode, map back, clip."""
    image = _noise_image(200, 300, seed=4)
    tracker.initialize(image, (100, 60, 40, 30))
    box, score = tracker.track(image)
    crop = crop_and_resize(image, (100, 60, 40, 30), 4.0, 256)
    with torch.inference_mode():
        template = crop_and_resize(image, (100, 60, 40, 30), 2.0, 128)
        out = model(normalise(template.image)[None], normalise(crop.image)[None])
    windowed = out["score_map"] * hann_window_2d(16)
    row, col = divmod(int(windowed.flatten().argmax()), 16)
    cx = (col + out["offset_map"][0, 0, row, col].item()) / 16
    cy = (row + out["offset_map"][0, 1, row, col].item()) / 16
    w, h = out["size_map"][0, :, row, col].tolist()
    expected = clip_box(map_crop_box_to_image((cx, cy, w, h), crop.crop_box), 200, 300, 10)
    np.testing.assert_allclose(box, expected, rtol=1e-4, atol=1e-3)
    assert score == pytest.approx(out["score_map"].max().item(), rel=1e-4)
    assert tracker.lost == (score < tracker.lost_threshold)


@pytest.mark.parametrize("bad_box", [(10, 10, 0, 5), (10, 10, -3, 5), (10, 10, 5, float("nan")),
                                     (500, 10, 20, 20), (-50, 10, 20, 20), (10, 10, 5)])
def test_bad_initial_box(tracker, bad_box):
    with pytest.raises(ValueError):
        tracker.initialize(_noise_image(), bad_box)


def test_bad_frames(tracker):
    with pytest.raises(ValueError, match="uint8"):
        tracker.initialize(_noise_image().astype(np.float32), (10, 10, 20, 20))
    with pytest.raises(ValueError, match="shape"):
        tracker.initialize(np.zeros((10, 10, 2), np.uint8), (1, 1, 5, 5))
    fresh = Tracker(build_tracker())
    with pytest.raises(RuntimeError, match="initialize"):
        fresh.track(_noise_image())
    fresh.warm_up(60, 80)  # tracks a blank frame, then forgets it: initialize is needed again
    with pytest.raises(RuntimeError, match="initialize"):
        fresh.track(_noise_image())


def test_grayscale_and_rgba_frames(tracker):
    """A grayscale frame, (H, W) or (H, W, 1), is tracked as the same frame in RGB (its gray level in
    every channel), first frame or later; an RGBA frame as its RGB (the alpha channel is ignored)."""
    rgb = _noise_image()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gray_as_rgb = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, _noise_image(seed=5)[..., :1]], axis=2)

    def first_step(first: np.ndarray, later: np.ndarray) -> tuple[np.ndarray, float]:
        tracker.initialize(first, (50, 40, 30, 20))
        return tracker.track(later)

    box, score = first_step(gray_as_rgb, gray_as_rgb)
    for first, later in [(gray, gray), (gray[..., None], gray[..., None]), (gray_as_rgb, gray), (gray, gray_as_rgb)]:
        got_box, got_score = first_step(first, later)
        np.testing.assert_array_equal(got_box, box)
        assert got_score == score
    box_rgb, score_rgb = first_step(rgb, rgb)
    assert score_rgb != score                                         # the colour frame is another input
    np.testing.assert_array_equal(first_step(rgba, rgba)[0], box_rgb)


def test_target_leaving_the_frame(tracker):
    """A target at the border, boxes partly outside, frames of another size: boxes stay valid."""
    image = _noise_image(120, 160)
    tracker.initialize(image, (150, 110, 40, 30))                     # mostly outside the image
    for frame in [image, np.zeros_like(image), _noise_image(60, 80, seed=2), image]:
        box, score = tracker.track(frame)
        height, width = frame.shape[:2]
        assert np.isfinite(box).all() and box[2] >= 10 and box[3] >= 10
        assert 0 <= box[0] <= width - 10 and 0 <= box[1] <= height - 10
        assert box[0] + box[2] >= 10 and box[1] + box[3] >= 10
    tracker.state = np.array([-500.0, -500.0, 3.0, 3.0])              # far outside: all-padding crop
    box, _ = tracker.track(image)
    assert np.isfinite(box).all()


def _synthetic_sequence(count: int = 16, seed: int = 0, size: tuple[int, int] = (320, 240)):
    """RGB frames and 1-based LaSOT boxes of a generated sequence."""
    from benchmarks.demo_data.lasot import synthesize_sequence

    sequence = synthesize_sequence(np.random.default_rng(seed), count, size)
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in sequence.frames]
    return frames, sequence.gt_boxes.astype(np.float64)


def test_bf16_boxes_follow_fp32(model):
    """bf16 (native on AVX512-BF16 / AMX CPUs) returns the fp32 box on the same frames and search
    regions (IoU > 0.9 on every frame of three sequences) and score-map peaks within bf16 rounding.

    Without candidate elimination: with random weights the CE ranking of near-equal candidates
    flips under any rounding and reshapes the feature map (a trained tracker ranks clearly); the
    CE scores themselves are float32 in the bf16 copy (checked here).
    """
    from evaluation.boxes import box_iou

    fp32 = Tracker(model, device="cpu", ce_keep_ratio=1.0)
    bf16 = Tracker(model, device="cpu", dtype="bf16", ce_keep_ratio=1.0)
    net = bf16.network.net
    assert net.backbone.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for attn in net.ce_attention_modules() for p in attn.parameters())
    ious, peak_errors = [], []
    for seed in range(3):
        frames, boxes = _synthetic_sequence(8, seed=seed)
        fp32.initialize(frames[0], boxes[0])
        bf16.initialize(frames[0], boxes[0])
        for frame in frames[1:]:
            bf16.state = fp32.state.copy()                               # the same search region
            ious.append(box_iou(fp32.track(frame)[0], bf16.track(frame)[0]))
            peak_errors.append(abs(fp32.score - bf16.score))
    assert min(ious) > 0.9, np.round(ious, 3)
    assert max(peak_errors) < 0.05, max(peak_errors)
    with pytest.raises(ValueError, match="dtype='fp16' needs a GPU"):
        Tracker(model, dtype="fp16", device="cpu")


def test_non_finite_network_output_is_reported_lost(model):
    """A NaN from the network (here: a NaN weight in the score branch) is the documented "lost"
    outcome: the previous box (clipped to the frame), score NaN, ``lost`` True; the next frame
    is searched around that box again."""
    image = _noise_image(200, 300, seed=8)
    broken = Tracker(model, device="cpu")
    with torch.no_grad():
        broken.network.net.head.score[-1].bias.fill_(float("nan"))
    broken.initialize(image, (100, 60, 40, 30))
    box, score = broken.track(image)
    np.testing.assert_array_equal(box, [100, 60, 40, 30])
    assert math.isnan(score) and broken.lost and broken.info["non_finite"]
    small = _noise_image(50, 60, seed=9)                               # the kept box is clipped to the frame
    box, score = broken.track(small)
    np.testing.assert_array_equal(box, clip_box((100, 60, 40, 30), 50, 60))
    assert math.isnan(score) and broken.lost
    healthy = Tracker(model, device="cpu")
    healthy.initialize(image, (100, 60, 40, 30))
    healthy.track(image)
    assert not healthy.info["non_finite"] and math.isfinite(healthy.score)


# ---------------------------------------------------------------------------- tools

def _run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_track_test_tool_writes_scorable_results(tmp_path):
    from benchmarks.demo_data.lasot import make_lasot_dataset

    root = tmp_path / "lasot"
    names = make_lasot_dataset(root, classes=("car", "dog"), seqs_per_class=1, num_frames=6,
                               size=(160, 120), test_per_class=1)
    out = tmp_path / "results"
    config = str(REPO / "configs" / "track" / "_base_" / "model.py")
    first = _run_tool("tools/track_test.py", config, "none", "--lasot-root", str(root), "--out", str(out),
                      "--workers", "2", "--threads", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    for name in names:
        boxes = np.loadtxt(out / f"{name}.txt", delimiter=",")
        times = np.loadtxt(out / f"{name}_time.txt")
        gt = np.loadtxt(root / name.split("-")[0] / name / "groundtruth.txt", delimiter=",")
        assert boxes.shape == (6, 4) and times.shape == (6,)
        np.testing.assert_allclose(boxes[0], gt[0])                    # frame 1 = the initial box
    assert not list(out.glob(".*"))                                   # no temporary files left
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    second = _run_tool("tools/track_test.py", config, "none", "--lasot-root", str(root), "--out", str(out))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 already finished" in second.stdout and "0 to run" in second.stdout
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    scored = _run_tool("tools/eval_lasot.py", "--results", str(out), "--annos", str(root), "--quiet",
                       "--json", str(tmp_path / "scores.json"))
    assert scored.returncode == 0, scored.stderr[-3000:]
    import json

    scores = json.loads((tmp_path / "scores.json").read_text())
    assert "AUC" in scored.stdout and scores


def test_track_video_tool(tmp_path):
    video = write_square_video(tmp_path / "clip.mp4", 7)
    out = tmp_path / "tracked.mp4"
    result = _run_tool("tools/track_video.py", str(video), "--init", "30,40,31,31", "--out", str(out),
                       "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    capture = cv2.VideoCapture(str(out))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 7
    lines = out.with_suffix(".txt").read_text().splitlines()
    assert lines[0] == "frame,x,y,w,h,score,lost" and len(lines) == 8
    assert lines[1].startswith("1,30.00,40.00,31.00,31.00")
    bad = _run_tool("tools/track_video.py", str(video), "--init", "0,0,0,10", "--out", str(tmp_path / "x.mp4"))
    assert bad.returncode != 0 and "positive width" in bad.stderr


# ---------------------------------------------------------------------------- benchmark helpers

def test_agreement_hand_made_cases():
    from benchmarks.track_speed import agreement_from_boxes

    fp32 = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    same = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 10, 10], [50, 50, 10, 10]], dtype=float)
    free = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [5, 0, 10, 10], [5, 0, 10, 10]], dtype=float)
    truth = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 10, 10], [0, 0, 10, 10]], dtype=float)
    result = agreement_from_boxes(fp32, same, free, truth, iou_threshold=0.8)
    # same: IoU 1, 1, 90 / 110 = 0.818, 0 -> 3 of 4 above 0.8; free: 1, 1/3, 1/3, 1/3 -> 1 of 4
    assert result["per_frame"] == 0.75 and result["free_running"] == 0.25 and result["frames"] == 4
    assert result["mean_iou_per_frame"] == pytest.approx((2 + 90 / 110) / 4)
    # on target: frames 0, 1, 3 (frame 2's truth lies elsewhere); of those, frames 0 and 1 agree
    assert result["frames_on_target"] == 3 and result["per_frame_on_target"] == pytest.approx(2 / 3)
    assert math.isnan(agreement_from_boxes(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 4)))["per_frame"])
    with pytest.raises(ValueError, match="length"):
        agreement_from_boxes(fp32, same[:3], free)


def test_agreement_of_a_precision_with_itself_is_total(model):
    """fp32 against fp32 agrees on every frame, same-input and free-running: the bookkeeping pairs
    each frame's boxes."""
    from benchmarks.track_speed import bf16_agreement

    frames, boxes = _synthetic_sequence(8, seed=3)
    result = bf16_agreement(model, [(frames, boxes[0], boxes)], dtype="fp32")
    assert result["frames"] == 7 and result["per_frame"] == 1.0 and result["free_running"] == 1.0
    assert result["mean_iou_per_frame"] == pytest.approx(1.0)


def test_agreement_on_a_lasot_layout(tmp_path):
    """Agreement read from a LaSOT-layout folder through the benchmark's command line, in the low
    precision the command asks for, equals the agreement of the same sequences given directly (frames
    decoded here, ground truth from the text files), and each frame meets its own ground-truth box:
    the truth follows the fp32 track on odd frames and lies beside it on even ones."""
    import json

    from benchmarks.demo_data.lasot import make_lasot_dataset
    from benchmarks.track_speed import bf16_agreement, main
    from track.config import load_config, model_from_checkpoint, tracker_kwargs
    from track.model import save_tracker_checkpoint

    root = tmp_path / "lasot"
    names = make_lasot_dataset(root, ("car",), seqs_per_class=2, num_frames=6, size=(160, 120), test_per_class=2,
                               write_training_set=False)
    config = REPO / "configs/track/vit_tiny_ce_tiny_synthetic.py"
    cfg = load_config(config)
    model, _ = model_from_checkpoint(cfg, None)
    save_tracker_checkpoint(model, str(tmp_path / "tracker.pth"))
    reference = Tracker(model, device="cpu", **tracker_kwargs(cfg))
    sequences = []
    for name in sorted(names):
        folder = root / "car" / name
        frames = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in sorted((folder / "img").glob("*.jpg"))]
        truth = np.loadtxt(folder / "groundtruth.txt", delimiter=",")
        reference.initialize(frames[0], truth[0])
        for index, frame in enumerate(frames[1:], start=1):
            box = reference.track(frame)[0]
            truth[index] = box if index % 2 else box + [box[2], 0, 0, 0]   # on the track / beside it (IoU 0)
        np.savetxt(folder / "groundtruth.txt", truth, delimiter=",", fmt="%.6f")
        sequences.append((frames, truth[0], np.loadtxt(folder / "groundtruth.txt", delimiter=",")))
    main(["--config", str(config), "--checkpoint", str(tmp_path / "tracker.pth"), "--dtype", "bf16", "--backend",
          "torch", "--batch", "1", "--frames", "2", "--threads", "1", "--no-full-step", "--agreement", str(root), "--demo-sequences", "1",
          "--json", str(tmp_path / "speed.json")])
    demo, agreement = json.loads((tmp_path / "speed.json").read_text())["agreement"]
    assert demo["source"] == "embedded demo sequences" and demo["dtype"] == "bf16"   # always measured first
    expected = bf16_agreement(model, sequences, dtype="bf16", **tracker_kwargs(cfg))
    assert agreement["sequences"] == 2 and agreement["frames"] == 2 * 5 and agreement["frames_on_target"] == 2 * 3
    assert agreement == {"sequences": 2, **expected}
