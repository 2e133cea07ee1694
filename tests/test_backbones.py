"""Backbone definitions: parameter counts, parity with timm, attention paths, feature maps."""
from __future__ import annotations

import shutil

import pytest
import torch
from timm.models.beit import Beit
from timm.models.hiera import Hiera as TimmHiera
from timm.models.vision_transformer import VisionTransformer as TimmViT

from backbones import build_backbone, list_backbones, sincos_pos_embed_2d


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registry_names_and_unknown():
    assert {"vit_tiny", "vit_tiny_rpe", "vit_small", "vit_base", "hiera_tiny", "hiera_base"} <= set(list_backbones())
    with pytest.raises(KeyError, match="unknown backbone 'vit_huge'"):
        build_backbone("vit_huge")


def test_parameter_counts():
    assert n_params(build_backbone("vit_tiny")) == 5_717_416
    assert n_params(build_backbone("hiera_tiny")) == 6_694_966
    assert 6.2e6 < n_params(build_backbone("hiera_tiny", num_classes=0)) < 6.4e6
    assert n_params(build_backbone("vit_base")) == n_params(TimmViT(embed_dim=768, depth=12, num_heads=12))


@pytest.mark.parametrize("explicit", [False, True])
def test_vit_tiny_matches_timm(explicit: bool):
    ref = TimmViT(embed_dim=192, depth=12, num_heads=12).eval()
    ours = build_backbone("vit_tiny").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = ref(x)
        if explicit:  # every block through the logits path
            tokens, grid = ours.embed(x)
            tokens, logits = ours.forward_blocks(tokens, grid, logits_from=range(12))
            got = ours.forward_head(ours.norm(tokens))
            assert len(logits) == 12 and logits[11].shape == (2, 12, 197, 197)
        else:
            got = ours(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_vit_tiny_rpe_matches_timm_beit():
    ref = Beit(embed_dim=192, depth=12, num_heads=12, use_abs_pos_emb=False, use_rel_pos_bias=True,
               global_pool="avg").eval()
    for n, p in ref.named_parameters():  # timm initialises biases and tables to zero: make them count
        if "bias" in n:
            p.data.normal_(std=0.2)
    ours = build_backbone("vit_tiny_rpe").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_logits_are_scaled_q_dot_k():
    torch.manual_seed(1)
    m = build_backbone("vit_tiny", num_classes=0).eval()
    blk = m.blocks[5]
    x = torch.randn(2, 197, 192)
    with torch.no_grad():
        out_fused = blk(x)
        out_explicit, logits = blk(x, return_logits=True)
        q, k, _ = blk.attn.qkv(blk.norm1(x)).reshape(2, 197, 3, 12, 16).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(logits, q @ k.transpose(-2, -1) / 4.0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_fused, out_explicit, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["vit_tiny", "vit_tiny_rpe"])
def test_query_logits_are_rows_of_the_full_logits(name: str):
    """Chosen query rows against all keys equal those rows of ``logits``: qkv biases, BEiT's q bias
    (v bias unused, no k bias) and the relative position bias rows of a resized grid included."""
    torch.manual_seed(2)
    attn = build_backbone(name, num_classes=0).blocks[4].attn.eval()
    with torch.no_grad():
        for p_name, p in attn.named_parameters():
            if "bias" in p_name:
                p.normal_(std=0.5)                                   # zero-initialised: make them count
    grid = (6, 5) if name == "vit_tiny_rpe" else None
    x = torch.randn(2, 31, 192)                                      # class token + 6 x 5 grid
    rows = [0, 7, 30, 7]
    with torch.no_grad():
        full = attn.logits(x, grid)
        got = attn.query_logits(x, rows, grid)
        half = attn.query_logits(x.double(), torch.tensor(rows), grid)  # weights follow x's dtype
    assert got.shape == (2, 12, 4, 31)
    torch.testing.assert_close(got, full[:, :, rows], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(half.float(), full[:, :, rows], atol=1e-4, rtol=1e-4)


def test_rpe_block_paths_agree_and_bias_resizes():
    m = build_backbone("vit_tiny_rpe", num_classes=0).eval()
    for blk in m.blocks:
        blk.attn.relative_position_bias_table.data.normal_(std=0.5)
    x = torch.randn(1, 3, 320, 256)  # 20 x 16 grid, not the 14 x 14 of the table
    with torch.no_grad():
        tokens, grid = m.embed(x)
        a, _ = m.forward_blocks(tokens, grid)
        b, logits = m.forward_blocks(tokens, grid, logits_from=[0, -1])
    assert grid == (20, 16) and sorted(logits) == [0, 11]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="grid"):
        m.blocks[0](tokens)


@pytest.mark.parametrize("explicit", [False, True])
def test_hiera_tiny_matches_timm(explicit: bool):
    kwargs = dict(embed_dim=46, num_heads=1, stages=(1, 2, 7, 2))
    ref = TimmHiera(**kwargs).eval()
    ours = build_backbone("hiera_tiny").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = ref(x)
        if explicit:
            feats, _, logits = ours.forward_features_with_logits(x, logits_from=[1, 11])
            got = ours.forward_head(feats)
            assert logits[11].shape == (2, 8, 49, 49)
            assert logits[1].ndim == 5  # mask-unit attention keeps its window axis
            assert all(blk.attn.logits is None and not blk.attn.keep_logits for blk in ours.blocks)
        else:
            got = ours(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_hiera_masked_forward_with_logits():
    m = build_backbone("hiera_tiny", q_pool=2, num_classes=0).eval()
    x = torch.randn(2, 3, 224, 224)
    mask = m.get_random_mask(x, mask_ratio=0.4)
    with torch.no_grad():
        plain = m.forward_features(x, mask=mask)
        feats, inter, logits = m.forward_features_with_logits(x, mask=mask, logits_from=[11])
    torch.testing.assert_close(feats, plain, atol=1e-5, rtol=0)
    kept = int(mask[0].sum())
    assert logits[11].shape[:2] == (2, 8) and logits[11].shape[-1] == feats.shape[1] == kept * 4
    assert len(inter) == 4


def test_feature_maps_strides_and_channels():
    x = torch.randn(1, 3, 256, 320)
    vit = build_backbone("vit_tiny", num_classes=0).eval()
    with torch.no_grad():
        maps = vit.forward_intermediates(x, [3, 5, 7, 11], intermediates_only=True)
    assert [tuple(f.shape) for f in maps] == [(1, 192, 16, 20)] * 4
    hiera = build_backbone("hiera_tiny", num_classes=0).eval()
    assert hiera.stage_channels == [46, 92, 184, 368]
    with torch.no_grad():
        maps = hiera.forward_intermediates(torch.randn(1, 3, 224, 224), intermediates_only=True)
    assert [tuple(f.shape) for f in maps] == [(1, 46, 56, 56), (1, 92, 28, 28), (1, 184, 14, 14), (1, 368, 7, 7)]


def test_vit_other_grid_uses_resampled_position_embedding():
    m = build_backbone("vit_tiny", num_classes=0).eval()
    tokens, grid = m.patch_tokens(torch.zeros(1, 3, 64, 96))
    assert grid == (4, 6) and tokens.shape == (1, 24, 192)
    pos = m.position_embedding((4, 6))
    assert pos.shape == (1, 25, 192)
    torch.testing.assert_close(pos[:, :1], m.pos_embed[:, :1])  # class position untouched


def test_sincos_layout():
    emb = sincos_pos_embed_2d(8, (2, 3))
    assert emb.shape == (1, 7, 8) and torch.all(emb[0, 0] == 0)
    # first half encodes the column (x), second half the row (y): token (row 1, col 2)
    row, col = 1, 2
    token = emb[0, 1 + row * 3 + col]
    omega = 1.0 / 10000 ** (torch.arange(2, dtype=torch.float64) / 2.0)
    expected = torch.cat([torch.sin(col * omega), torch.cos(col * omega), torch.sin(row * omega),
                          torch.cos(row * omega)]).float()
    torch.testing.assert_close(token, expected)


def test_vit_avg_pool_uses_fc_norm():
    m = build_backbone("vit_tiny", global_pool="avg", num_classes=10)
    keys = m.state_dict().keys()
    assert "fc_norm.weight" in keys and "norm.weight" not in keys
    with pytest.raises(ValueError, match="global_pool"):
        build_backbone("vit_tiny", global_pool="max")


def test_hubconf_offline(tmp_path):
    import hubconf
    from backbones import save_backbone

    src = build_backbone("vit_tiny", num_classes=0)
    path = save_backbone(src, tmp_path / "w.pth", arch="vit_tiny")
    model = torch.hub.load(str(hubconf.__file__).rsplit("/", 1)[0], "vit_tiny", source="local",
                           weights=str(path), num_classes=0)
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler")
def test_compile_frozen_prepacks_weights():
    """``compile_frozen`` really freezes: the graph calls the prepacked MKL / oneDNN linear kernels
    (not ``aten::addmm``, which is what ``torch.compile(options={"freezing": True})`` leaves in torch
    2.14) and computes what the eager module computes."""
    from torch.profiler import profile

    from backbones import compile_frozen

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32)).eval()
    x = torch.randn(10, 32)
    run = compile_frozen(mlp)
    with torch.no_grad():
        expected = mlp(x)
        torch.testing.assert_close(run(x), expected, rtol=1e-5, atol=1e-5)
        with profile() as prof:
            run(x)
    ops = {event.key for event in prof.key_averages()}
    assert ops & {"mkl::_mkl_linear", "mkldnn::_linear_pointwise"}, sorted(ops)
    assert "aten::addmm" not in ops


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler")
def test_compile_frozen_instances_of_one_class_keep_their_own_weights():
    """Guards on module attributes are skipped, yet a second instance of the same class gets its own
    graph (not the first one's weights baked in as constants)."""
    from backbones import compile_frozen

    class Scaled(torch.nn.Module):  # a user module, as the tracker step and the distillation teacher are
        def __init__(self, weight: float) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)
            with torch.no_grad():
                self.linear.weight.fill_(weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * self.linear(x)

    first, second = Scaled(1.0).eval(), Scaled(2.0).eval()
    with torch.no_grad():
        x = torch.ones(2, 4)
        runs = compile_frozen(first), compile_frozen(second)
        for module, run in zip((first, second), runs):
            torch.testing.assert_close(run(x), module(x))
        again = compile_frozen(first)  # compiled again (another shape): still its own weights
        torch.testing.assert_close(again(torch.ones(3, 4)), first(torch.ones(3, 4)))
