# Seconds-long Hiera distillation run at 64 px with a randomly initialised Hiera-Tiny as teacher (smoke run).
_base_ = ["../dmae_hiera_tiny_400e_in1k.py"]
model = dict(img_size=64)
distill = dict(teacher_arch="hiera_tiny", teacher_ckpt="random", teacher_block=11, student_block=11)
data = dict(root="data/imagenet_demo", batch_size=8, num_workers=0)
optim = dict(base_lr=1.5e-3, total_batch=None)
schedule = dict(epochs=1, warmup_epochs=0)
runtime = dict(precision="fp32", log_interval=1, checkpoint_interval=None)
