# Seconds-long transfer fine-tuning on a generated CIFAR-10 layout
# (python tools/make_transfer_demo.py cifar10 data/transfer_demo): 2-block ViT-Tiny at 64 px from
# scratch (unless model.pretrained is set), half of each class (seeded), fp32, evaluation every epoch.
_base_ = ["../finetune_vit_tiny_cifar10.py"]
model = dict(img_size=64, depth=2, pretrained=None)
data = dict(root="data/transfer_demo", batch_size=8, num_workers=0, subset=dict(fraction=0.5, seed=0))
optim = dict(total_batch=None)
schedule = dict(epochs=2, warmup_epochs=1)
runtime = dict(precision="fp32", log_interval=1, checkpoint_interval=None, eval_every=1)
