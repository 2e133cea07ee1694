"""The analyses: CKA against an independent numpy implementation of the unbiased estimator,
attention statistics on hand-built attention, the real path through tools/analyze.py, clear errors."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from analysis import (MinibatchCKA, attention_entropy, attention_logits, block_statistics, linear_cka,
                      mean_attention_distance, patch_attention, patch_distances, report_section, u_center)
from analysis.images import even_batches
from analysis.maps import GAP_PX, HEADER_PX, LABEL_PX
from analysis.models import ModelSpec, build_model, layer_features, layer_names, parse_model_spec
from backbones import build_backbone, save_backbone
from benchmarks.peers import peers_dir, unavailable_reason
from benchmarks.demo_data.imagenet import make_imagenet_folder
from pretrain.data import eval_transform
from conftest import load_tool

REPO = Path(__file__).resolve().parents[1]


analyze = load_tool("analyze")


# --- an independent numpy reference: Song et al. (2012) HSIC_1 written out term by term -----------------

def np_hsic1(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    one = np.ones(n)
    trace = np.trace(k @ l)
    sums = (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (one @ k @ l @ one)
    return float((trace + sums - cross) / (n * (n - 3)))


def np_unbiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    k, l = x @ x.T, y @ y.T
    return np_hsic1(k, l) / math.sqrt(np_hsic1(k, k) * np_hsic1(l, l))


def np_minibatch_cka(xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    """Nguyen et al. (2021): mean HSIC_1 over batches, normalised by the mean self terms."""
    kl = np.mean([np_hsic1(x @ x.T, y @ y.T) for x, y in zip(xs, ys)])
    kk = np.mean([np_hsic1(x @ x.T, x @ x.T) for x in xs])
    ll = np.mean([np_hsic1(y @ y.T, y @ y.T) for y in ys])
    return float(kl / math.sqrt(kk * ll))


def _related(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two representations sharing a latent factor, plus noise (CKA well inside (0, 1))."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6))
    x = z @ rng.normal(size=(6, 20)) + 0.8 * rng.normal(size=(n, 20))
    y = np.tanh(z @ rng.normal(size=(6, 12))) + 0.5 * rng.normal(size=(n, 12))
    return x, y


# --- CKA ---------------------------------------------------------------------------------------------------

def test_cka_of_a_representation_with_itself_is_one():
    x, _ = _related(40)
    assert float(linear_cka(torch.tensor(x), torch.tensor(x))) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling_only():
    x, y = _related(50, seed=1)
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(20, 20)))
    base = float(linear_cka(torch.tensor(x), torch.tensor(y)))
    assert 0.2 < base < 0.95
    assert float(linear_cka(torch.tensor(x @ q * 7.5), torch.tensor(y))) == pytest.approx(base, abs=1e-10)
    assert float(linear_cka(torch.tensor(x), torch.tensor(0.01 * y))) == pytest.approx(base, abs=1e-10)
    stretched = x * np.linspace(0.1, 3.0, 20)  # anisotropic scaling is not an invariance of linear CKA
    assert abs(float(linear_cka(torch.tensor(stretched), torch.tensor(y))) - base) > 1e-3


def test_one_batch_equals_the_full_data_unbiased_cka_of_an_independent_implementation():
    layers_a = [_related(30, seed=s)[0] for s in range(3)]
    layers_b = [_related(30, seed=s)[1] for s in range(2)]
    cka = MinibatchCKA([("a", "b"), ("a", "a")])
    cka.update({"a": [torch.tensor(v, dtype=torch.float32) for v in layers_a],
                "b": [torch.tensor(v, dtype=torch.float32) for v in layers_b]})
    result = cka.result()
    f32 = [np.float32(v).astype(np.float64) for v in layers_a], [np.float32(v).astype(np.float64) for v in layers_b]
    expected = np.array([[np_unbiased_cka(a, b) for b in f32[1]] for a in f32[0]])
    np.testing.assert_allclose(result[("a", "b")].numpy(), expected, rtol=0, atol=1e-10)
    self_expected = np.array([[np_unbiased_cka(a, b) for b in f32[0]] for a in f32[0]])
    np.testing.assert_allclose(result[("a", "a")].numpy(), self_expected, rtol=0, atol=1e-10)
    assert result[("a", "b")].shape == (3, 2)


def test_several_batches_follow_the_minibatch_definition_and_approximate_the_full_data_value():
    x, y = _related(400, seed=3)
    sizes = [120, 100, 80, 100]  # unequal: each batch's HSIC counts once, whatever its size
    cka = MinibatchCKA([("x", "y")])
    xs, ys, start = [], [], 0
    for n in sizes:
        xs.append(x[start:start + n])
        ys.append(y[start:start + n])
        cka.update({"x": [torch.tensor(xs[-1])], "y": [torch.tensor(ys[-1])]})
        start += n
    value = float(cka.result()[("x", "y")][0, 0])
    assert value == pytest.approx(np_minibatch_cka(xs, ys), abs=1e-10)
    assert cka.batches == 4 and cka.examples == 400
    assert value == pytest.approx(np_unbiased_cka(x, y), abs=0.03)


def test_batches_are_near_equal_and_never_below_the_minimum():
    assert [len(b) for b in even_batches(65, 64)] == [32, 33]
    assert [len(b) for b in even_batches(9, 4)] == [3, 3, 3]
    assert sum(even_batches(130, 64), []) == list(range(130))


def test_u_center_needs_four_examples():
    with pytest.raises(ValueError, match="at least 4"):
        u_center(torch.ones(3, 3))


# --- attention statistics on hand-built attention ----------------------------------------------------------

def test_patch_distances_are_centre_distances_in_pixels():
    grid, patch = (2, 3), 16
    d = patch_distances(grid, patch).numpy()
    cells = [(r, c) for r in range(grid[0]) for c in range(grid[1])]
    by_hand = [[patch * math.hypot(r1 - r2, c1 - c2) for r2, c2 in cells] for r1, c1 in cells]
    np.testing.assert_allclose(d, by_hand, atol=1e-12)


def test_attention_all_on_self_has_zero_distance_and_one_hot_has_zero_entropy():
    grid = (3, 3)
    p = grid[0] * grid[1]
    logits = torch.full((1, 2, 1 + p, 1 + p), -1e4)
    logits[:, :, torch.arange(1 + p), torch.arange(1 + p)] = 0.0  # every token attends to itself
    probs, cls_mass = patch_attention(logits)
    assert torch.allclose(probs, torch.eye(p).expand(1, 2, p, p))
    assert mean_attention_distance(probs, patch_distances(grid, 16)).abs().max() == 0
    assert attention_entropy(probs).abs().max() == 0
    assert cls_mass.abs().max() == 0
    assert all(v.abs().max() == 0 for v in block_statistics(logits, patch_distances(grid, 16)))


def test_uniform_attention_over_a_grid_gives_the_mean_centre_distance_and_log_n_entropy():
    n, patch = 4, 16
    cells = [(r, c) for r in range(n) for c in range(n)]
    mean_by_hand = sum(patch * math.hypot(r1 - r2, c1 - c2) for r1, c1 in cells for r2, c2 in cells) / len(cells) ** 2
    # uniform patch-to-patch logits and a class-token key three times as likely as any patch
    logits = torch.zeros(2, 3, 1 + n * n, 1 + n * n)
    logits[..., 0] = math.log(3.0)
    probs, cls_mass = patch_attention(logits)
    distance = mean_attention_distance(probs, patch_distances((n, n), patch))
    entropy = attention_entropy(probs)
    assert distance.shape == entropy.shape == (2, 3)
    torch.testing.assert_close(distance, torch.full((2, 3), mean_by_hand, dtype=torch.float64))
    torch.testing.assert_close(entropy, torch.full((2, 3), math.log(n * n), dtype=torch.float64))
    # the class-token key is removed and the rest renormalised; its share is reported separately
    torch.testing.assert_close(cls_mass, torch.full((2, 3, n * n), 3.0 / (3.0 + n * n)))
    stats = block_statistics(logits, patch_distances((n, n), patch))
    for value, expected in zip(stats, (mean_by_hand, math.log(n * n), 3.0 / (3.0 + n * n))):
        torch.testing.assert_close(value, torch.full((2, 3), expected, dtype=torch.float64))


def test_entropy_and_distance_of_hand_computed_distributions():
    probs = torch.tensor([[0.5, 0.25, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    expected = (-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) + 0.0) / 2  # mean over the two queries
    assert float(attention_entropy(probs)) == pytest.approx(expected, abs=1e-12)
    # through logits: every patch query of a 2x2 grid puts (0.7, 0.2, 0.0999, 0.0001) on patches 0..3
    p = [0.7, 0.2, 0.0999, 0.0001]
    logits = torch.zeros(1, 1, 5, 5)
    logits[0, 0, :, 0] = -1e4  # no attention on the class token
    logits[0, 0, :, 1:] = torch.tensor(p).log()
    distance, entropy, cls_mass = block_statistics(logits, patch_distances((2, 2), 10))
    assert float(entropy) == pytest.approx(-sum(v * math.log(v) for v in p), abs=1e-6)
    by_query = [sum(v * 10 * math.hypot(q // 2 - k // 2, q % 2 - k % 2) for k, v in enumerate(p)) for q in range(4)]
    assert float(distance) == pytest.approx(sum(by_query) / 4, abs=1e-5)
    assert float(cls_mass) == pytest.approx(0.0, abs=1e-12)


# --- the real path ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """An ImageNet-layout folder, a flat folder of odd-sized images, and checkpoints of one tiny ViT
    in our export layout and in MAE-Lite's trainer layout."""
    root = tmp_path_factory.mktemp("analysis")
    make_imagenet_folder(root / "imagenet", classes=3, per_class=3, size=72, seed=0, splits=("val",))
    flat = root / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(50, 90), (120, 70), (64, 64), (33, 100), (81, 81), (200, 150)]):
        img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)
        cv2.imwrite(str(flat / f"img{i}.{'png' if i % 2 else 'jpg'}"), img)
    torch.manual_seed(0)
    vit = build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0)
    save_backbone(vit, root / "tiny.pth", arch="vit_tiny", arch_kwargs={"depth": 2, "img_size": 64})
    torch.save({"model": {f"module.model.{k}": v for k, v in vit.state_dict().items()}, "start_epoch": 1},
               root / "tiny_maelite.pth.tar")
    (root / "bad.pth").write_bytes(b"these bytes are no checkpoint" * 10)
    (root / "empty").mkdir()
    return {"root": root, "imagenet": root / "imagenet", "flat": flat, "ckpt": root / "tiny.pth",
            "maelite": root / "tiny_maelite.pth.tar", "bad": root / "bad.pth", "empty": root / "empty"}


def _run(argv: list) -> dict:
    return analyze.main([str(a) for a in argv] + ["--workers", "0", "--quiet"])


def _preprocessed(folder: Path, size: int) -> torch.Tensor:
    transform = eval_transform(size)
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])


def _attention_by_hand(vit, images: torch.Tensor, block: int) -> torch.Tensor:
    """Softmax attention [B, heads, N, N] of one block, from q and k computed with plain tensor algebra."""
    with torch.no_grad():
        tokens, _ = vit.embed(images)
        for blk in vit.blocks[:block]:
            tokens = blk(tokens)
        blk = vit.blocks[block]
        y = torch.nn.functional.layer_norm(tokens, (192,), blk.norm1.weight, blk.norm1.bias, eps=1e-6)
        qkv = y @ blk.attn.qkv.weight.T + blk.attn.qkv.bias
        q, k, _ = qkv.reshape(images.shape[0], tokens.shape[1], 3, 12, 16).permute(2, 0, 3, 1, 4)
        return (q.double() @ k.double().transpose(-1, -2) / 4.0).softmax(dim=-1)  # head dim 16 -> scale 1/4


def _png_size(path: str | Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size  # (width, height)


def test_mean_pooled_cka_end_to_end_matches_a_direct_computation(workspace, tmp_path):
    out = tmp_path / "cka"
    ckpt, maelite = workspace["ckpt"], workspace["maelite"]
    result = _run(["cka", "--models", ckpt, f"vit_tiny(depth=2,img_size=64)={maelite}",
                   "vit_tiny(depth=3,img_size=64)=random", "--names", "ours", "maelite", "random",
                   "--images", workspace["flat"], "--out", out, "--batch-size", "16", "--pool", "mean"])
    data = json.loads((out / "cka.json").read_text())
    assert data["images"] == 6 and data["batches"] == 1 and data["pool"] == "mean"
    assert [(p["a"], p["b"]) for p in data["pairs"]] == [("ours", "maelite"), ("ours", "random"),
                                                         ("maelite", "random")]
    same, other = np.array(data["pairs"][0]["matrix"]), np.array(data["pairs"][1]["matrix"])
    assert same.shape == (2, 2) and other.shape == (2, 3)
    np.testing.assert_allclose(np.diag(same), 1.0, atol=1e-9)  # the same weights read from two layouts
    for pair in data["pairs"]:
        assert _png_size(pair["png"]) == (560, 480)
    assert result["pairs"][0]["matrix"] == data["pairs"][0]["matrix"]

    # independent path: block outputs from forward_intermediates, mean of patch tokens, numpy CKA
    torch.manual_seed(0)
    vit = build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0).eval()
    with torch.no_grad():
        feats = vit.forward_intermediates(_preprocessed(workspace["flat"], 64), output_fmt="NLC",
                                          intermediates_only=True)
    feats = [f.mean(dim=1).double().numpy() for f in feats]
    by_hand = np.array([[np_unbiased_cka(a, b) for b in feats] for a in feats])
    np.testing.assert_allclose(same, by_hand, atol=1e-6)


def test_cka_with_hiera_stages_and_class_token_pooling(workspace, tmp_path):
    out = tmp_path / "cka"
    _run(["cka", "--models", "hiera_tiny(img_size=64)=random", workspace["ckpt"], "--images",
          workspace["imagenet"], "--out", out, "--batch-size", "5", "--hiera-layers", "stages"])
    data = json.loads((out / "cka.json").read_text())
    assert data["batches"] == 2 and data["images"] == 9  # 9 images -> batches of 5 + 4
    pair = data["pairs"][0]
    assert data["pool"] == "tokens"  # the default
    assert pair["layers_a"] == ["stage0", "stage1", "stage2", "stage3"] and np.array(pair["matrix"]).shape == (4, 3)
    assert pair["layers_b"] == ["embed", "block0", "block1"]

    # Hiera's token maps: each stage end's map flattened, here against numpy on forward_intermediates
    _run(["cka", "--models", "hiera_tiny(img_size=64)=random", "--images", workspace["imagenet"],
          "--out", tmp_path / "hiera", "--batch-size", "9", "--hiera-layers", "stages"])
    hiera = json.loads((tmp_path / "hiera" / "cka.json").read_text())["pairs"][0]
    torch.manual_seed(0)
    model = build_backbone("hiera_tiny", img_size=64, num_classes=0).eval()
    with torch.no_grad():
        maps = model.forward_intermediates(_preprocessed(workspace["imagenet"], 64), coarse=True,
                                           output_fmt="NCHW", intermediates_only=True)
    flat = [m.reshape(m.shape[0], -1).double().numpy() for m in maps]
    by_hand = np.array([[np_unbiased_cka(a, b) for b in flat] for a in flat])
    np.testing.assert_allclose(np.array(hiera["matrix"]), by_hand, atol=1e-6)
    with pytest.raises(SystemExit, match="no class token"):
        _run(["cka", "--models", "hiera_tiny(img_size=64)=random", workspace["ckpt"], "--images",
              workspace["imagenet"], "--out", tmp_path / "cls", "--pool", "cls"])
    _run(["cka", "--models", workspace["ckpt"], "--images", workspace["imagenet"], "--out", tmp_path / "self",
          "--pool", "cls", "--batch-size", "9"])
    self_cka = json.loads((tmp_path / "self" / "cka.json").read_text())["pairs"][0]
    assert self_cka["a"] == self_cka["b"] == "tiny"
    np.testing.assert_allclose(np.diag(np.array(self_cka["matrix"])), 1.0, atol=1e-9)


def _with_distinct_norms(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """LayerNorm weights away from (1, 0), so that a missing, extra or wrong norm changes the features."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval()


def _paper_layers_by_hand(vit, images: torch.Tensor) -> list[np.ndarray]:
    """The paper's layer representations of a ViT without its embedding, block or layer-reading code: patch
    embedding as a strided convolution, block outputs from forward_intermediates, LayerNorms written out;
    each image's token map flattened -> [n, tokens * C] per layer."""
    def norm(x, layer):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], layer.weight, layer.bias, eps=1e-6)

    with torch.no_grad():
        proj = vit.patch_embed.proj
        patches = torch.nn.functional.conv2d(images, proj.weight, proj.bias, stride=16).flatten(2).transpose(1, 2)
        embed = patches + vit.pos_embed[:, 1:]
        outputs = vit.forward_intermediates(images, output_fmt="NLC", intermediates_only=True)
        final = vit.fc_norm if vit.global_pool == "avg" else vit.norm
        layers = [norm(embed, vit.blocks[0].norm1)]
        layers += [norm(out, vit.blocks[i + 1].norm1) for i, out in enumerate(outputs[:-1])]
        layers.append(norm(outputs[-1], final))
    return [f.reshape(f.shape[0], -1).double().numpy() for f in layers]


def test_token_map_cka_of_two_block_models_equals_a_computation_by_hand():
    """Two minibatches through layer_features(pool='tokens') and MinibatchCKA, against numpy HSIC_1 on
    features taken apart by hand; one model pools the class token (final ``norm``), the other globally
    (final ``fc_norm``)."""
    torch.manual_seed(0)
    a = _with_distinct_norms(build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0), 1)
    b = build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0, global_pool="avg")
    b.load_state_dict(a.state_dict(), strict=False)  # related to a (CKA well above 0), norms changed below
    b = _with_distinct_norms(b, 2)
    assert layer_names(a, pool="tokens") == ["embed", "block0", "block1"]
    batches = [torch.randn(7, 3, 64, 64), torch.randn(6, 3, 64, 64)]
    cka = MinibatchCKA([("a", "b"), ("a", "a")])
    for x in batches:
        with torch.no_grad():
            features = {"a": layer_features(a, x, "tokens"), "b": layer_features(b, x, "tokens")}
        assert [f.shape for f in features["a"]] == [(x.shape[0], 16 * 192)] * 3  # depth + 1 layers
        cka.update(features)
    result = cka.result()
    by_hand = {name: [_paper_layers_by_hand(m, x) for x in batches] for name, m in (("a", a), ("b", b))}
    for pair in (("a", "b"), ("a", "a")):
        first, second = (by_hand[m] for m in pair)
        expected = np.array([[np_minibatch_cka([batch[i] for batch in first], [batch[j] for batch in second])
                              for j in range(3)] for i in range(3)])
        np.testing.assert_allclose(result[pair].numpy(), expected, rtol=0, atol=1e-6)
    assert 0.05 < float(result[("a", "b")].min()) and float(result[("a", "b")].max()) < 0.999


def test_token_map_cka_of_a_model_with_itself_is_one_on_every_layer(workspace, tmp_path):
    """The default of tools/analyze.py cka: depth + 1 layers each, the same weights read from two
    checkpoint layouts give 1 on every layer, a model of another depth a rectangular matrix."""
    result = _run(["cka", "--models", workspace["ckpt"], f"vit_tiny(depth=2,img_size=64)={workspace['maelite']}",
                   "vit_tiny(depth=3,img_size=64)=random", "--names", "ours", "maelite", "random",
                   "--images", workspace["imagenet"], "--out", tmp_path / "cka", "--batch-size", "5"])
    assert result["pool"] == "tokens" and result["batches"] == 2 and "norm1" in result["representation"]
    same, other, _ = (np.array(p["matrix"], dtype=float) for p in result["pairs"])
    assert same.shape == (3, 3) and other.shape == (3, 4)
    assert result["pairs"][1]["layers_b"] == ["embed", "block0", "block1", "block2"]
    np.testing.assert_allclose(np.diag(same), 1.0, atol=1e-9)
    assert np.all(same < 1.0 + 1e-9) and np.all(np.abs(same - same.T) < 1e-9)


def _maelite_eval_tools():
    """MAE-Lite's RepCmpAnalyzer and RepCatcher, loaded from the peers' folder under private names."""
    if unavailable_reason() is not None:
        pytest.skip(unavailable_reason())
    pytest.importorskip("matplotlib")
    root = peers_dir() / "maelite" / "projects" / "eval_tools"
    if "maelite_visualize" not in sys.modules:
        spec = importlib.util.spec_from_file_location("maelite_visualize", root / "visualize" / "__init__.py",
                                                      submodule_search_locations=[str(root / "visualize")])
        package = importlib.util.module_from_spec(spec)
        sys.modules["maelite_visualize"] = package
        spec.loader.exec_module(package)
        spec = importlib.util.spec_from_file_location("maelite_forward_hook", root / "util" / "forward_hook.py")
        hooks = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(hooks)
        sys.modules["maelite_forward_hook"] = hooks
    return sys.modules["maelite_visualize"].RepCmpAnalyzer, sys.modules["maelite_forward_hook"].RepCatcher


@contextlib.contextmanager
def _float64_by_default():
    """MAE-Lite's analyzer computes HSIC in the default dtype (its ``torch.ones`` / ``torch.zeros``); in
    float32 its sums of large Gram entries lose ~1e-4 of CKA at small batches, so the parity tests run it
    in float64 to compare the definitions, not the rounding."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def test_minibatch_cka_equals_maelite_analyzer_on_random_token_maps():
    """The same random token maps (3 + 4 layers, three minibatches of unequal size) through MAE-Lite's
    RepCmpAnalyzer and through ours: both average HSIC_1 over the batches, then form CKA."""
    RepCmpAnalyzer, _ = _maelite_eval_tools()
    g = torch.Generator().manual_seed(0)
    with _float64_by_default():
        analyzer = RepCmpAnalyzer(3, 4)
    ours = MinibatchCKA([("a", "b")])
    noise_a, noise_b = (0.3, 1.0, 3.0), (0.1, 0.5, 1.0, 4.0)
    proj_a = [torch.randn(8, 12, generator=g) for _ in noise_a]
    proj_b = [torch.randn(8, 6, generator=g) for _ in noise_b]
    for n in (12, 9, 16):
        shared = torch.randn(n, 10, 8, generator=g)  # [images, tokens, latent]
        layers_a = [shared @ w + s * torch.randn(n, 10, 12, generator=g) for w, s in zip(proj_a, noise_a)]
        layers_b = [torch.tanh(shared @ w) + s * torch.randn(n, 10, 6, generator=g) for w, s in zip(proj_b, noise_b)]
        with _float64_by_default():
            analyzer.append([f.double() for f in layers_a], [f.double() for f in layers_b])
        ours.update({"a": [f.flatten(1) for f in layers_a], "b": [f.flatten(1) for f in layers_b]})
    mine = ours.result()[("a", "b")]
    torch.testing.assert_close(mine, analyzer.get(), atol=1e-10, rtol=0)
    assert 0.3 < float(mine.max()) < 0.99 and float(mine.max() - mine.min()) > 0.2


def test_token_map_cka_equals_maelite_on_the_same_model_and_images():
    """MAE-Lite's whole path (forward hooks on blocks[i].norm1 and the last block, final fc_norm under
    global pooling, RepCmpAnalyzer) against ours (layer_features + MinibatchCKA), on one 2-block and one
    3-block ViT and two minibatches."""
    RepCmpAnalyzer, RepCatcher = _maelite_eval_tools()
    torch.manual_seed(0)
    # global pooling: MAE-Lite's catcher applies fc_norm whenever the model has a true global_pool
    a = _with_distinct_norms(build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0, global_pool="avg"), 3)
    b = _with_distinct_norms(build_backbone("vit_tiny", depth=3, img_size=64, num_classes=0, global_pool="avg"), 4)
    catchers = [RepCatcher(m, list(range(m.depth + 1))) for m in (a, b)]
    with _float64_by_default():
        analyzer = RepCmpAnalyzer(a.depth + 1, b.depth + 1)
    ours = MinibatchCKA([("a", "b")])
    for n in (8, 10):
        x = torch.randn(n, 3, 64, 64)
        with torch.no_grad():
            a.forward_features(x)
            b.forward_features(x)
            with _float64_by_default():
                analyzer.append(*([f.double() for f in c.get_features()] for c in catchers))
            ours.update({"a": layer_features(a, x, "tokens"), "b": layer_features(b, x, "tokens")})
    torch.testing.assert_close(ours.result()[("a", "b")], analyzer.get(), atol=1e-10, rtol=0)


def test_attention_read_through_forward_blocks_equals_softmax_of_q_k_by_hand(workspace):
    torch.manual_seed(0)
    vit = build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0).eval()
    images = _preprocessed(workspace["flat"], 64)[:3]
    with torch.no_grad():
        logits, grid = attention_logits(vit, images, [1])
    assert grid == (4, 4) and list(logits) == [1]
    torch.testing.assert_close(logits[1].double().softmax(dim=-1), _attention_by_hand(vit, images, 1),
                               atol=1e-5, rtol=1e-5)


def test_attention_end_to_end(workspace, tmp_path):
    out = tmp_path / "attention"
    result = _run(["attention", "--models", workspace["ckpt"], "vit_tiny(depth=3,img_size=64)=random",
                   "--images", workspace["imagenet"], "--out", out, "--batch-size", "4"])
    data = json.loads((out / "attention.json").read_text())
    assert data == json.loads(json.dumps(result))
    tiny = data["models"]["tiny"]
    assert tiny["blocks"] == [0, 1] and tiny["grid"] == [4, 4] and tiny["images"] == 9
    assert np.array(tiny["distance_px"]).shape == (2, 12) and np.array(tiny["entropy"]).shape == (2, 12)
    assert np.array(data["models"]["vit_tiny (random)"]["distance_px"]).shape == (3, 12)
    max_distance = 16 * math.hypot(3, 3)
    assert 0 < np.min(tiny["distance_px"]) and np.max(tiny["distance_px"]) < max_distance
    assert 0 < np.min(tiny["entropy"]) and np.max(tiny["entropy"]) <= math.log(16) + 1e-9
    for name in ("distance", "entropy"):
        assert _png_size(data["figures"][name]) == (720, 480)

    # block 1's numbers from attention computed by hand from q and k, distances by hand
    torch.manual_seed(0)
    vit = build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0).eval()
    full = _attention_by_hand(vit, _preprocessed(workspace["imagenet"], 64), 1).numpy()
    cells = [(r, c) for r in range(4) for c in range(4)]
    dist = np.array([[16 * math.hypot(a[0] - b[0], a[1] - b[1]) for b in cells] for a in cells])
    p = full[:, :, 1:, 1:] / full[:, :, 1:, 1:].sum(-1, keepdims=True)  # patch queries, patch keys renormalised
    np.testing.assert_allclose(tiny["distance_px"][1], (p * dist).sum(-1).mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(tiny["entropy"][1], (-p * np.log(p)).sum(-1).mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(tiny["class_token_attention"][1], full[:, :, 1:, 0].mean(axis=(0, 2)), rtol=1e-5)


def test_maps_end_to_end(workspace, tmp_path):
    out = tmp_path / "maps"
    _run(["maps", "--models", workspace["ckpt"], "--images", workspace["imagenet"], "--out", out,
          "--layers", "0", "-1", "--heads", "0", "1", "2", "--query", "2,1", "--pick", "0", "val/n00000002/"
          "n00000002_val_00001.JPEG", "n00000001_val_00000.JPEG"])
    data = json.loads((out / "maps.json").read_text())
    assert data["query"] == [2, 1]
    record = data["models"]["tiny"]
    assert record["blocks"] == [0, 1] and record["heads"] == [0, 1, 2]
    assert [r["image"] for r in record["images"]] == ["val/n00000000/n00000000_val_00000.JPEG",  # in --pick order
                                                      "val/n00000002/n00000002_val_00001.JPEG",
                                                      "val/n00000001/n00000001_val_00000.JPEG"]
    tile = 64 + GAP_PX
    for r in record["images"]:
        attention = np.array(r["attention"])
        assert attention.shape == (2, 3, 4, 4)
        # the map and the class-token share are the full softmax row of the query
        np.testing.assert_allclose(attention.sum(axis=(2, 3)) + np.array(r["class_token_attention"]), 1.0,
                                   atol=1e-5)
        assert _png_size(r["png"]) == (LABEL_PX + 5 * tile, HEADER_PX + 2 * tile)  # image | 3 heads | mean

    # the first image's maps are the query's row of the attention computed by hand
    torch.manual_seed(0)
    vit = build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0).eval()
    image = _preprocessed(workspace["imagenet"], 64)[:1]
    query = 1 + 2 * 4 + 1  # class token first, then row 2, column 1 of the 4x4 grid
    for i, block in enumerate((0, 1)):
        row = _attention_by_hand(vit, image, block)[0, :3, query].numpy()  # heads 0..2
        first = record["images"][0]
        np.testing.assert_allclose(np.array(first["attention"][i]).reshape(3, 16), row[:, 1:], atol=1e-5)
        np.testing.assert_allclose(first["class_token_attention"][i], row[:, 0], atol=1e-5)


def test_report_section_on_three_models(workspace, tmp_path):
    torch.manual_seed(0)
    models = {name: build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0) for name in ("a", "b")}
    models["hiera"] = build_backbone("hiera_tiny", img_size=64, num_classes=0)
    models["a"].train()
    models["b"].eval()
    text, data = report_section(models, workspace["imagenet"], tmp_path / "analysis", max_images=8)
    assert models["a"].training and not models["b"].training
    assert data["cka"]["images"] == 8 and len(data["cka"]["pairs"]) == 3
    assert set(data["attention"]["models"]) == {"a", "b"}
    for link in [line.split("(")[-1].rstrip(")") for line in text.splitlines() if line.startswith("![")]:
        assert (tmp_path / link).is_file(), link
    assert "| a | b |" in text and "left out: hiera" in text
    assert data["cka"]["pool"] == "tokens"  # the paper's quantity
    assert data["cka"]["pairs"][0]["layers_a"] == ["embed", "block0", "block1"]


def test_report_section_compares_the_chosen_pairs_and_draws_the_paper_dot_plots(workspace, tmp_path):
    """``pairs`` picks the CKA pairs (the study's: the paper's three); the attention dot plots get one
    panel per model and the distance unit's factor (x 14 / patch size) is stated."""
    torch.manual_seed(0)
    models = {name: build_backbone("vit_tiny", depth=2, img_size=64, num_classes=0) for name in ("a", "b", "c")}
    text, data = report_section(models, workspace["imagenet"], tmp_path / "analysis", max_images=8,
                                pairs=[("a", "c")])
    assert [(p["a"], p["b"]) for p in data["cka"]["pairs"]] == [("a", "c")]
    assert "| a | c |" in text and "| a | b |" not in text
    for key in ("distance_panels", "entropy_panels"):
        path = Path(data["attention"]["figures"][key])
        assert path.stat().st_size > 1000 and Image.open(path).size[0] >= 600  # three 200-px panels
    assert "patch-grid distance x 14" in text and "times 14/16" in text


def test_fine_tuned_checkpoint_with_global_pooling_builds_a_globally_pooled_model(tmp_path, capsys):
    """Its trained fc_norm is the paper's last CKA layer; a class-token model would leave norm untrained."""
    torch.manual_seed(0)
    tuned = _with_distinct_norms(build_backbone("vit_tiny", depth=2, img_size=64, num_classes=10, global_pool="avg"), 5)
    torch.save({"model": tuned.state_dict()}, tmp_path / "finetuned.pth")
    model = build_model(parse_model_spec(f"vit_tiny(depth=2,img_size=64)={tmp_path / 'finetuned.pth'}"))
    assert model.global_pool == "avg" and torch.equal(model.fc_norm.weight, tuned.fc_norm.weight)
    assert "missing" not in capsys.readouterr().out  # only the classifier is left unused
    forced = build_model(parse_model_spec(f"vit_tiny(depth=2,img_size=64,global_pool=token)={tmp_path / 'finetuned.pth'}"),
                         quiet=True)
    assert forced.global_pool == "token"


def test_model_specs():
    spec = parse_model_spec("vit_tiny(img_size=(64, 96), global_pool=avg, depth=2)=ckpt/a=b.pth")
    assert (spec.arch, spec.checkpoint) == ("vit_tiny", Path("ckpt/a=b.pth"))
    assert spec.options == {"img_size": (64, 96), "global_pool": "avg", "depth": 2}
    assert parse_model_spec("vit_tiny=random").checkpoint is None
    assert parse_model_spec("/ckpt/x=1/backbone.pth") == ModelSpec("/ckpt/x=1/backbone.pth", None,
                                                                   Path("/ckpt/x=1/backbone.pth"))
    with pytest.raises(ValueError, match="key=value"):
        parse_model_spec("vit_tiny(12)=random")


# --- clear errors before any work ---------------------------------------------------------------------------

@pytest.mark.parametrize("case, match", [
    ("bad_checkpoint", "bad.pth"),
    ("empty_folder", "empty: no images"),
    ("layer_out_of_range", "--layers 5: out of range for model 'tiny', which has 2 blocks"),
    ("head_out_of_range", "--heads 12: out of range"),
    ("unknown_arch", "unknown arch 'vit_huge'"),
    ("wrong_arch", "tiny.pth does not fit vit_small: shape mismatch"),
    ("missing_blocks", "tiny.pth does not hold vit_tiny's blocks"),
    ("query_outside_grid", "--query 4,0: outside the 4x4 patch grid"),
    ("hiera_attention", "Hiera's mask-unit attention is not supported"),
])
def test_bad_input_is_a_clear_error_before_any_output(workspace, tmp_path, case, match):
    out = tmp_path / "out"
    images, ckpt = workspace["imagenet"], workspace["ckpt"]
    argv = {
        "bad_checkpoint": ["cka", "--models", f"vit_tiny={workspace['bad']}", ckpt, "--images", images],
        "empty_folder": ["attention", "--models", ckpt, "--images", workspace["empty"]],
        "layer_out_of_range": ["attention", "--models", ckpt, "--images", images, "--layers", "0", "5"],
        "head_out_of_range": ["maps", "--models", ckpt, "--images", images, "--heads", "12"],
        "unknown_arch": ["cka", "--models", "vit_huge=random", ckpt, "--images", images],
        "wrong_arch": ["cka", "--models", f"vit_small={ckpt}", ckpt, "--images", images],
        "missing_blocks": ["cka", "--models", f"vit_tiny(depth=4)={ckpt}", ckpt, "--images", images],
        "query_outside_grid": ["maps", "--models", ckpt, "--images", images, "--query", "4,0"],
        "hiera_attention": ["attention", "--models", "hiera_tiny=random", "--images", images],
    }[case]
    with pytest.raises(SystemExit, match=re.escape(match)):
        _run(argv + ["--out", out])
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(workspace, tmp_path):
    with pytest.raises(SystemExit, match="--device 'cuda' asks for a GPU, but torch sees none"):
        _run(["cka", "--models", workspace["ckpt"], "--images", workspace["imagenet"], "--out", tmp_path / "o",
              "--device", "cuda"])
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_attention_on_cuda_matches_cpu(workspace, tmp_path):
    argv = ["attention", "--models", workspace["ckpt"], "--images", workspace["imagenet"]]
    cpu = _run(argv + ["--out", tmp_path / "cpu"])
    gpu = _run(argv + ["--out", tmp_path / "gpu", "--device", "cuda"])
    np.testing.assert_allclose(gpu["models"]["tiny"]["distance_px"], cpu["models"]["tiny"]["distance_px"], rtol=1e-3)
