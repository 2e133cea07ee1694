"""The one-stream tracker network: CE, head, box decoding, checkpoints, bf16, ONNX."""
from __future__ import annotations

import math

import pytest
import torch

from backbones import CheckpointError, build_backbone, load_pretrained
from track.model import (CenterHead, OneStreamTracker, build_tracker, decode_boxes, load_tracker_checkpoint,
                         save_tracker_checkpoint, template_centre_indices)


# one torch thread: the machine running the suite is shared, and spinning threads waste it
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> OneStreamTracker:
    torch.manual_seed(0)
    net = build_tracker().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that loading them is checked too
        for module in net.head.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net


def _inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 128, 128, generator=g), torch.randn(batch, 3, 256, 256, generator=g)


def test_output_shapes(model):
    z, x = _inputs(2)
    with torch.inference_mode():
        out = model(z, x)
    assert out["score_map"].shape == (2, 1, 16, 16)
    assert out["size_map"].shape == (2, 2, 16, 16)
    assert out["offset_map"].shape == (2, 2, 16, 16)
    assert out["pred_boxes"].shape == (2, 4)
    assert out["score_map"].min() >= 1e-4 and out["score_map"].max() <= 1 - 1e-4
    assert ((out["size_map"] > 0) & (out["size_map"] < 1)).all()


def test_template_centre_choice():
    assert template_centre_indices(8, "ctr_point") == [3 * 8 + 3]          # OSTrack's CTR_POINT
    assert template_centre_indices(8, "ctr_rec") == [27, 28, 35, 36]
    assert template_centre_indices(7, "ctr_point") == [3 * 7 + 3]
    assert template_centre_indices(8, "all") == list(range(64))
    with pytest.raises(ValueError, match="ce_template_range"):
        template_centre_indices(8, "middle")


def test_ce_keeps_ceil_ratio_and_head_sees_zeros(model):
    z, x = _inputs(2)
    captured = {}

    def keep_input(module, inputs, output) -> None:
        captured["feat"] = inputs[0]

    hook = model.head.register_forward_hook(keep_input)
    try:
        with torch.inference_mode():
            out = model(z, x)
    finally:
        hook.remove()
    counts = [k.shape[1] for k in out["keep_indices"]]
    expected, n = [], 256
    for _ in range(3):
        n = math.ceil(0.7 * n)
        expected.append(n)
    assert counts == expected == [180, 126, 89]
    feat = captured["feat"].flatten(2)                     # [B, C, 256] in original token order
    removed = out["removed_mask"]
    assert removed.sum(1).tolist() == [256 - 89] * 2
    for b in range(2):
        assert (feat[b][:, removed[b]] == 0).all()
        assert (feat[b][:, ~removed[b]].abs().sum(0) > 0).all()
        # every stage keeps a subset of the previous one, all distinct
        previous = set(range(256))
        for stage in out["keep_indices"]:
            kept = set(stage[b].tolist())
            assert len(kept) == stage.shape[1] and kept <= previous
            previous = kept
        assert previous == set(torch.nonzero(~removed[b]).flatten().tolist())


def test_ce_score_is_template_centre_attention(model):
    """The first CE stage scores tokens by softmax(logits of block 3)[template centre row],
    averaged over heads (computed here through the backbone's own forward_blocks)."""
    z, x = _inputs(1)
    with torch.inference_mode():
        out = model(z, x)
        tokens = torch.cat([model.embed_template(z), model.embed_search(x)], dim=1)
        _, logits = model.backbone.forward_blocks(tokens, logits_from=(3,))
    attn = logits[3].softmax(-1)[0, :, 27, 64:].mean(0)           # [256]
    torch.testing.assert_close(out["ce_scores"][0][0], attn, rtol=1e-4, atol=1e-7)
    top = set(attn.topk(180).indices.tolist())
    assert set(out["keep_indices"][0][0].tolist()) == top


def test_ce_keeps_most_attended_tokens_constructed():
    """Hand-built logits: the template-centre rows favour chosen search tokens; exactly those stay,
    whatever the other template rows prefer."""
    net = build_tracker(ce_template_range="ctr_rec").eval()    # centre rows 27, 28, 35, 36
    B, nz, ns, C, heads = 2, 64, 10, 4, 3
    tokens = torch.randn(B, nz + ns, C)
    logits = torch.zeros(B, heads, nz + ns, nz + ns)
    favoured = [[7, 2, 9, 0], [1, 3, 5, 8]]
    decoys = [4, 6]
    logits[:, :, 0, nz + torch.tensor(decoys)] = 50.0         # a non-centre row: must be ignored
    logits[:, :, 63, nz + torch.tensor(decoys)] = 50.0
    for b, chosen in enumerate(favoured):
        for rank, j in enumerate(chosen):
            # one centre row (35) of one head carries the signal: the average keeps the order
            logits[b, 1, 35, nz + j] = 10.0 - rank
    keep_index = torch.arange(ns).expand(B, ns)
    centre = net.template_centre
    assert centre.tolist() == [27, 28, 35, 36]
    new_tokens, kept, score = net.eliminate(tokens, logits[:, :, centre], keep_index, nz, keep_ratio=0.35)
    assert kept.shape == (B, 4)                                # ceil(0.35 * 10) = 4
    for b in range(B):
        assert set(kept[b].tolist()) == set(favoured[b])
        torch.testing.assert_close(new_tokens[b, :nz], tokens[b, :nz])
        torch.testing.assert_close(new_tokens[b, nz:], tokens[b, nz + kept[b]])
    assert score.shape == (B, ns)
    assert (score[0, favoured[0]].diff() < 0).all()            # ranked as constructed


def test_fast_ce_matches_logits_path(model):
    """Centre-row logits computed beside the fused attention give the same CE and maps."""
    z, x = _inputs(2)
    with torch.inference_mode():
        reference = model(z, x)
        model.fast_ce = True
        try:
            fast = model(z, x)
            centre = model.centre_logits(model.backbone.blocks[3], torch.cat([model.embed_template(z),
                                                                              model.embed_search(x)], 1))
        finally:
            model.fast_ce = False
        tokens = torch.cat([model.embed_template(z), model.embed_search(x)], 1)
        tokens, logits = model.backbone.forward_blocks(tokens, logits_from=(0,))
    for a, b in zip(reference["keep_indices"], fast["keep_indices"]):
        assert torch.equal(a, b)
    torch.testing.assert_close(fast["score_map"], reference["score_map"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast["size_map"], reference["size_map"], rtol=1e-4, atol=1e-5)
    assert centre.shape == (2, 12, 1, 320)
    first = model.centre_logits(model.backbone.blocks[0], torch.cat([model.embed_template(z),
                                                                     model.embed_search(x)], 1))
    torch.testing.assert_close(first, logits[0][:, :, 27:28], rtol=1e-4, atol=1e-5)


def test_keep_ratio_one_is_the_plain_vit(model):
    """Without elimination the network is the backbone's own blocks over [template; search]."""
    z, x = _inputs(1)
    with torch.inference_mode():
        out = model(z, x, ce_keep_ratio=1.0)
        tokens = torch.cat([model.embed_template(z), model.embed_search(x)], dim=1)
        tokens, _ = model.backbone.forward_blocks(tokens)
        feat = model.backbone.norm(tokens)[:, 64:].transpose(1, 2).reshape(1, 192, 16, 16)
        score, offset, size = model.head(feat)
    assert out["keep_indices"] == [] and not out["removed_mask"].any()
    torch.testing.assert_close(out["score_map"], score)
    torch.testing.assert_close(out["size_map"], size)
    torch.testing.assert_close(out["offset_map"], offset)


def test_batch_matches_single_samples(model):
    z, x = _inputs(2)
    with torch.inference_mode():
        batched = model(z, x)
        for b in range(2):
            single = model(z[b:b + 1], x[b:b + 1])
            torch.testing.assert_close(batched["score_map"][b:b + 1], single["score_map"], rtol=1e-4, atol=1e-5)
            assert torch.equal(batched["keep_index"][b].sort().values, single["keep_index"][0].sort().values)


def test_decode_boxes_hand_built():
    score = torch.full((2, 1, 16, 16), 0.1)
    offset = torch.zeros(2, 2, 16, 16)
    size = torch.full((2, 2, 16, 16), 0.05)
    score[0, 0, 5, 9], score[0, 0, 2, 2] = 0.9, 0.5          # peak at row 5, col 9
    offset[0, :, 5, 9] = torch.tensor([0.25, 0.75])
    size[0, :, 5, 9] = torch.tensor([0.3, 0.4])
    score[1, 0, 15, 0] = 0.7                                   # peak at row 15, col 0
    offset[1, :, 15, 0] = torch.tensor([0.5, 0.5])
    size[1, :, 15, 0] = torch.tensor([0.1, 0.2])
    boxes, peak = decode_boxes(score, offset, size)
    expected = torch.tensor([[(9 + 0.25) / 16, (5 + 0.75) / 16, 0.3, 0.4],
                             [(0 + 0.5) / 16, (15 + 0.5) / 16, 0.1, 0.2]])
    torch.testing.assert_close(boxes, expected)
    torch.testing.assert_close(peak, torch.tensor([0.9, 0.7]))


def test_head_channels_and_width():
    head = CenterHead(192)
    for layer in head.score[:-1]:                            # conv3x3 - BN - ReLU
        assert [type(m) for m in layer] == [torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU]
    convs = [layer[0] for layer in head.score[:-1]] + [head.score[-1]]
    chans = [(c.in_channels, c.out_channels, c.kernel_size) for c in convs]
    assert chans == [(192, 256, (3, 3)), (256, 128, (3, 3)), (128, 64, (3, 3)), (64, 32, (3, 3)), (32, 1, (1, 1))]
    assert head.offset[-1].out_channels == 2 and head.size[-1].out_channels == 2
    narrow = CenterHead(192, width=128)
    assert narrow.size[0][0].out_channels == 128 and narrow.size[-1].in_channels == 16


def test_position_embeddings_come_from_the_backbone():
    """A backbone trained at 256 px (16x16 grid) hands its patch embedding over unchanged
    (class position dropped); the 8x8 template one is its bicubic resample."""
    vit = build_backbone("vit_tiny", num_classes=0, img_size=256)
    with torch.no_grad():
        vit.pos_embed.normal_()
    net = OneStreamTracker(vit)
    torch.testing.assert_close(net.pos_embed_x, vit.pos_embed[:, 1:])
    assert net.pos_embed_z.shape == (1, 64, 192)
    smooth = torch.linspace(0, 1, 16)
    with torch.no_grad():  # a linear ramp stays (nearly) a ramp after resampling
        vit.pos_embed[:, 1:] = (smooth[None, :, None] + smooth[:, None, None]).reshape(1, 256, 1).expand(1, 256, 192)
    ramp = OneStreamTracker(vit).pos_embed_z[0, :, 0].reshape(8, 8)
    assert (ramp.diff(dim=0) > 0).all() and (ramp.diff(dim=1) > 0).all()


def _randomised(seed: int) -> OneStreamTracker:
    torch.manual_seed(seed)
    net = build_tracker()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.02)
        for module in net.head.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2)
                module.num_batches_tracked.fill_(seed)
    return net


def _in_ostrack_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict under OSTrack's key names, written out here, apart from the loader's table:
    the position embeddings inside ``backbone.``, head layer i of a branch as
    ``box_head.conv{i + 1}_{ctr | offset | size}``."""
    branches = {"score": "ctr", "offset": "offset", "size": "size"}
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if key in ("pos_embed_z", "pos_embed_x"):
            key = "backbone." + key
        elif parts[0] == "head":
            key = ".".join([f"box_head.conv{int(parts[2]) + 1}_{branches[parts[1]]}", *parts[3:]])
        renamed[key] = value
    return renamed


def test_load_ostrack_layout(tmp_path):
    source = _randomised(1)
    state = _in_ostrack_layout(source.state_dict())
    # the rename table must produce OSTrack's CenterPredictor / backbone names
    for key in ("box_head.conv1_ctr.0.weight", "box_head.conv1_ctr.1.running_var", "box_head.conv4_offset.1.bias",
                "box_head.conv5_ctr.weight", "box_head.conv5_size.bias", "backbone.pos_embed_z",
                "backbone.pos_embed_x", "backbone.blocks.11.mlp.fc2.weight", "backbone.patch_embed.proj.weight"):
        assert key in state, key
    assert not any(k.startswith("head.") for k in state)
    state["backbone.head.weight"] = torch.zeros(3)            # something our model does not have
    path = tmp_path / "ostrack_tiny.pth.tar"
    torch.save({"net": state, "epoch": 300}, path)
    target = _randomised(2)
    result = load_tracker_checkpoint(target, str(path))
    assert result.format == "ostrack"
    assert result.missing == [] and result.unexpected == ["backbone.head.weight"]
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_load_reports_missing_and_shape_errors(tmp_path):
    source = _randomised(1)
    state = _in_ostrack_layout(source.state_dict())
    del state["box_head.conv5_size.bias"]
    torch.save({"net": state}, tmp_path / "partial.pth")
    result = load_tracker_checkpoint(_randomised(2), str(tmp_path / "partial.pth"))
    assert result.missing == ["head.size.4.bias"]
    with pytest.raises(CheckpointError, match="head.size.4.bias"):
        load_tracker_checkpoint(_randomised(2), str(tmp_path / "partial.pth"), strict=True)
    state["box_head.conv5_size.bias"] = torch.zeros(7)
    torch.save({"net": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad.pth.*box_head|head.size.4.bias"):
        load_tracker_checkpoint(_randomised(2), str(tmp_path / "bad.pth"))


def test_load_resizes_position_embeddings(tmp_path):
    source = _randomised(1)
    state = source.state_dict()
    state["pos_embed_x"] = torch.randn(1, 20 * 20, 192)        # a 320-px search model
    torch.save({"net": state}, tmp_path / "other_size.pth")
    target = _randomised(2)
    result = load_tracker_checkpoint(target, str(tmp_path / "other_size.pth"))
    assert "pos_embed_x" in result.resized and target.pos_embed_x.shape == (1, 256, 192)


def test_own_checkpoint_round_trip_and_backbone_reuse(tmp_path):
    source = _randomised(3)
    path = tmp_path / "tracker.pth"
    save_tracker_checkpoint(source, str(path), epoch=5)
    target = _randomised(4)
    result = load_tracker_checkpoint(target, str(path))
    assert result.format == "litevit" and not result.missing and not result.unexpected
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    vit = build_backbone("vit_tiny", num_classes=0)
    loaded = load_pretrained(vit, str(path))                   # the backbone of a trained tracker
    assert torch.equal(vit.blocks[5].attn.qkv.weight, source.backbone.blocks[5].attn.qkv.weight)
    assert loaded.format == "ostrack" and not loaded.missing and not loaded.unexpected


def test_bf16_autocast(model):
    z, x = _inputs(1)
    with torch.inference_mode():
        ref = model(z, x, ce_keep_ratio=1.0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(z, x, ce_keep_ratio=1.0)
            out_ce = model(z, x)
    for name in ("score_map", "size_map", "offset_map", "pred_boxes"):
        assert out[name].dtype == torch.float32 and torch.isfinite(out_ce[name]).all()
    assert (out["score_map"] - ref["score_map"]).abs().max() < 0.05
    assert (out["size_map"] - ref["size_map"]).abs().max() < 0.05


def test_training_mode_backward():
    net = build_tracker(drop_path_rate=0.1).train()
    z, x = _inputs(2, seed=4)
    z, x = z[:, :, :64, :64], x[:, :, :128, :128]                 # smaller crops, same code path
    net = OneStreamTracker(net.backbone, template_size=64, search_size=128).train()
    out = net(z, x, ce_keep_ratio=0.8)
    (out["score_map"].mean() + out["size_map"].mean() + out["offset_map"].mean()).backward()
    assert net.pos_embed_x.grad is not None and net.head.score[0][0].weight.grad is not None
    assert net.backbone.cls_token.grad is None                 # unused by the tracker, frozen


def test_model_from_config_and_checkpoints(tmp_path):
    """track_test.py / track_video.py weights: none, a backbone checkpoint, a tracker checkpoint."""
    from backbones import save_backbone
    from track.config import load_config, model_from_checkpoint, tracker_kwargs

    cfg = load_config()                                        # configs/track/_base_/model.py
    assert tracker_kwargs(cfg) == {"template_factor": 2.0, "search_factor": 4.0, "lost_threshold": 0.2}
    untrained, source = model_from_checkpoint(cfg, "none")
    assert "untrained" in source and untrained.ce_locations == (3, 6, 9) and untrained.head.width == 256
    vit = build_backbone("vit_tiny", num_classes=0, pos_embed="sincos")
    with torch.no_grad():
        vit.blocks[2].mlp.fc1.weight.normal_()
    save_backbone(vit, tmp_path / "pretrained.pth", arch="vit_tiny")
    from_backbone, source = model_from_checkpoint(cfg, str(tmp_path / "pretrained.pth"))
    assert "untrained head" in source
    assert torch.equal(from_backbone.backbone.blocks[2].mlp.fc1.weight, vit.blocks[2].mlp.fc1.weight)
    patch_pos = vit.pos_embed[:, 1:]                           # 14x14 sin-cos grid, resampled to 16x16
    assert from_backbone.pos_embed_x.shape == (1, 256, 192)
    torch.testing.assert_close(from_backbone.pos_embed_x.mean(), patch_pos.mean(), atol=0.05, rtol=0)
    trained = _randomised(5)
    save_tracker_checkpoint(trained, str(tmp_path / "tracker.pth"))
    loaded, source = model_from_checkpoint(cfg, str(tmp_path / "tracker.pth"))
    assert source.startswith("tracker checkpoint")
    assert torch.equal(loaded.head.offset[2][0].weight, trained.head.offset[2][0].weight)


def test_onnx_export_parity(model, tmp_path):
    from track.onnx_export import check_onnx, export_onnx

    import onnx

    path = export_onnx(model, tmp_path / "tracker.onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"TopK", "GatherElements", "ScatterElements"} <= ops     # CE is part of the graph
    report = check_onnx(path, model, batch=2)
    for name in ("score_map", "size_map", "offset_map"):
        assert report["max_abs_diff"][name] < 1e-4, report
    assert report["same_peak"]
    assert report["max_abs_diff"]["pred_boxes"] < 1e-4


def test_onnx_export_tool(tmp_path):
    import importlib.util
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "track_export_onnx.py"
    spec = importlib.util.spec_from_file_location("track_export_onnx", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = str(tool.parents[1] / "configs" / "track" / "_base_" / "model.py")
    report = module.main([config, "none", "--out", str(tmp_path / "t.onnx"), "--static-batch", "--keep-ratio", "1.0"])
    assert (tmp_path / "t.onnx").is_file() and report["max_abs_diff"]["score_map"] < 1e-4
    import onnx

    graph = onnx.load(str(tmp_path / "t.onnx")).graph
    assert [i.name for i in graph.input] == ["template", "search"]
    assert graph.input[1].type.tensor_type.shape.dim[0].dim_value == 1
