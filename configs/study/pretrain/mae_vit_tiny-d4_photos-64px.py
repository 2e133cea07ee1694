# The study's MAE: MAE-Tiny (mask 0.75, norm-pix MSE, decoder 96 / 1 block / 3 heads) scaled down
# to a 4-block ViT-Tiny on 64 px crops of the photo set (benchmarks/demo_data/photos.py, 14 classes
# x 128 images = 28 batches of 64 an epoch), 5 epochs (140 updates), fp32 (bf16 is emulated
# on CPUs without AVX512-BF16 / AMX). The learning rate is raised for the short schedule.
#   python tools/pretrain.py THIS_CONFIG --data DIR --work-dir DIR
_base_ = ["../../pretrain/mae_vit_tiny_400e_in1k.py"]
model = dict(img_size=64, depth=4)
data = dict(root="data/photos", batch_size=64, num_workers=0, aug=dict(scale=(0.2, 1.0)))
optim = dict(base_lr=4e-3, total_batch=None)
schedule = dict(epochs=5, warmup_epochs=1)
runtime = dict(precision="fp32", log_interval=7, checkpoint_interval=28, progress_bar=False)
