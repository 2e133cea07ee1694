# One-stream OSTrack-style tracker on ViT-Tiny with candidate elimination (PROTOCOLS section 4).
# Built by track.config.build_model(cfg); training configs `_base_` this file and set
# model.pretrained to a backbone checkpoint (our pre-training export, MAE-Lite, DeiT/timm).
model = dict(
    type="OneStreamTracker",
    backbone="vit_tiny",          # any absolute-position ViT registered in backbones/
    pretrained=None,              # backbone weights, loaded before pos_embed_z/x are resampled
    drop_path_rate=0.1,
    template_size=128,            # 8x8 tokens
    search_size=256,              # 16x16 tokens
    ce_locations=(3, 6, 9),       # CE after blocks 4, 7, 10
    ce_keep_ratio=0.7,            # ceil(0.7 n) search tokens kept per stage: 256 -> 180 -> 126 -> 89
    ce_template_range="ctr_point",  # template token (3, 3) scores the search tokens, as OSTrack
    head_width=256,
)

# Crops shared by training and inference, and the inference settings.
tracker = dict(
    template_factor=2.0,
    search_factor=4.0,
    lost_threshold=0.2,           # score-map peak below this: frame reported as lost
)
