"""The demo run of tools/benchmark.py: the 20-iteration demo config trained for 400 iterations
(batch 4) on the generated ADE20K-layout set, long enough to learn its few painted classes."""
_base_ = ['./upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py']
train_dataloader = dict(batch_size=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=40),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=40, end=400, by_epoch=False),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_iters=400, val_interval=400)
default_hooks = dict(checkpoint=dict(interval=400, max_keep_ckpts=1))
