# Hiera-Tiny distillation: student block 12 logits [B, 8, N, N] vs teacher Hiera-Base MAE block 24,
# 1x1 conv adapter 8 -> 8, MSE, weight 1.
_base_ = ["./mae_hiera_tiny_400e_in1k.py"]
distill = dict(
    teacher_arch="hiera_base",
    teacher_ckpt="checkpoints/mae_hiera_base_224.pth",  # official Hiera MAE file {"model_state": ...}
    teacher_block=23,
    student_block=11,
    weight=1.0,
)
