"""litevit: lightweight ViTs (ViT-Tiny, Hiera-Tiny) pre-trained with MAE + distillation,
then used for semantic segmentation (mmsegmentation) and one-stream tracking (LaSOT)."""
from setuptools import find_packages, setup

setup(
    name="litevit",
    version="0.1.0",
    description="MAE + distillation pre-training of small ViTs for segmentation and tracking",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fileio*", "backbones*", "engine*", "evaluation*", "pretrain*", "seg*", "track*",
                                    "analysis*", "benchmarks*"]),
    # The core (backbones, engine, evaluation, pretrain, track, analysis) needs no OpenMMLab package
    # beyond mmengine (configs); segmentation (seg/) runs on mmsegmentation and the full mmcv: [seg].
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "timm>=1.0.9,<2",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "pillow>=10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "mmengine>=0.10.4,<0.11",
    ],
    extras_require={
        # mmseg 1.2.2 asserts 2.0.0rc4 <= mmcv < 2.2.0 (full mmcv, compiled ops). PyPI has only mmcv's
        # source package: tools/bootstrap.sh builds its wheel once (C++20 on current PyTorch) and
        # installs it without dependencies, so mmcv's and mmseg's runtime needs are listed here.
        "seg": ["mmcv>=2.0.0rc4,<2.2.0", "mmsegmentation==1.2.2",
                "addict", "yapf", "pyyaml", "packaging", "prettytable", "scipy", "ftfy", "regex"],
        # onnx / onnxruntime / openvino: the tracker's optional CPU runtimes (tested); nncf: OpenVINO's
        # post-training quantization, the tracker's int8 (track/quantize.py);
        # scikit-image: the sample photographs of the main job's embedded data;
        # easydict, loguru, tabulate: what the peers' own code (benchmarks, parity tests) imports.
        "dev": ["pytest>=7", "onnx>=1.15", "onnxruntime>=1.17", "openvino>=2024.0", "nncf>=2.14",
                "scikit-image>=0.22",
                "easydict", "loguru", "tabulate"],
    },
)
