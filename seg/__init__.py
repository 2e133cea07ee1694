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
try:
    import mmcv  # noqa: F401
    import mmseg  # noqa: F401
except ImportError as error:
    raise ImportError(
        f"seg runs on mmsegmentation 1.2.2 and mmcv 2.1.0 with its compiled ops ({error}): install the [seg] "
        "extra, pip install 'litevit[seg]' (or tools/bootstrap.sh, which does it). PyPI has only mmcv's source "
        "package: it is compiled on install (about 11 min on 2 cores) and needs gcc/g++ with C++20 on current "
        "PyTorch; tools/bootstrap.sh builds that wheel once and caches it") from error

from .safe_load import allow_mmengine_checkpoints  # noqa: E402

allow_mmengine_checkpoints()

from .hooks import SegOverlayHook  # noqa: E402
from .models import HieraBackbone, ReducedFeature2Pyramid, ViTBackbone  # noqa: E402
from .optim import LayerDecayOptimWrapperConstructor  # noqa: E402

__all__ = ["HieraBackbone", "LayerDecayOptimWrapperConstructor", "ReducedFeature2Pyramid", "SegOverlayHook",
           "ViTBackbone", "allow_mmengine_checkpoints"]
