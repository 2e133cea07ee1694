"""Semantic segmentation with our backbones on mmsegmentation 1.x.

``import seg`` (what a config's ``custom_imports=dict(imports=["seg"],
allow_failed_imports=False)`` does) registers into mmseg's registries:

* models: ``ViTBackbone``, ``HieraBackbone``, ``ReducedFeature2Pyramid`` (:mod:`seg.models`);
* optimizer wrapper constructor: ``LayerDecayOptimWrapperConstructor`` (:mod:`seg.optim`);
* hook: ``SegOverlayHook`` (:mod:`seg.hooks`);

and lets ``torch.load(weights_only=True)`` read mmengine's training checkpoints
(:mod:`seg.safe_load`), so mmseg's unchanged ``tools/test.py`` and ``tools/train.py --resume``
work on current PyTorch.  Also here: overlays (:mod:`seg.visualize`). mIoU scoring lives in
:mod:`evaluation.miou`, the speed and size tables in :mod:`benchmarks.seg_speed`.
"""
from .safe_load import allow_mmengine_checkpoints

allow_mmengine_checkpoints()

from .hooks import SegOverlayHook  # noqa: E402
from .models import HieraBackbone, ReducedFeature2Pyramid, ViTBackbone  # noqa: E402
from .optim import LayerDecayOptimWrapperConstructor  # noqa: E402

__all__ = ["HieraBackbone", "LayerDecayOptimWrapperConstructor", "ReducedFeature2Pyramid", "SegOverlayHook",
           "ViTBackbone", "allow_mmengine_checkpoints"]
