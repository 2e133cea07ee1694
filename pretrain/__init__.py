"""MAE-Lite pre-training of small backbones: MAE, D-MAE / D²-MAE attention distillation, Hiera MAE,
intermediate fine-tuning, linear probing and export for segmentation / tracking.

Modules: :mod:`.mae` / :mod:`.mae_hiera` (masked autoencoders on the backbones), :mod:`.distill`
(frozen teacher + loss terms), :mod:`.data` (ImageNet-layout folders), :mod:`.engine` (one
training loop: DDP, AMP, exact resumption), :mod:`.finetune` (fine-tuning / probing / top-k),
:mod:`.tasks` (config -> task module), :mod:`.export` (encoder -> backbones format).
Command line: ``tools/pretrain.py``.
"""
