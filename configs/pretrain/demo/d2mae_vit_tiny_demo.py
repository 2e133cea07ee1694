# Seconds-long D²-MAE run: 3-block student + logits block, decoder fed by block 2, randomly initialised
# 2-block ViT-B teacher (smoke run only: recorded as random_teacher in the log and the export).
_base_ = ["../d2mae_vit_tiny_400e_in1k.py"]
model = dict(img_size=64, depth=3, decode_idx=2)
distill = dict(teacher_ckpt="random", teacher_overrides=dict(depth=2), teacher_block=1, student_block=-1,
               compile_teacher=False)  # a seconds-long run: compiling would take longer than training
data = dict(root="data/imagenet_demo", batch_size=8, num_workers=0)
optim = dict(base_lr=1.5e-3, total_batch=None)
schedule = dict(epochs=2, warmup_epochs=0)
runtime = dict(precision="fp32", log_interval=1, checkpoint_interval=None)
