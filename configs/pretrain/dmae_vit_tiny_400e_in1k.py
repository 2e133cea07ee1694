# D-MAE-Tiny: MAE-Tiny + distillation of the last block's attention logits [B, 12, 50, 50] from a frozen
# MAE ViT-B/16 that sees the same visible patches; 1x1 conv adapter 12 -> 12, MSE, weight 1.
_base_ = ["./mae_vit_tiny_400e_in1k.py"]
distill = dict(
    teacher_arch="vit_base",
    teacher_ckpt="checkpoints/mae_pretrain_vit_base.pth",  # official MAE file {"model": ...}; "random" = smoke run
    teacher_block=11,
    student_block=11,
    weight=1.0,
    compile_teacher=True,  # frozen torch.compile graph of the teacher (falls back to eager if compiling fails)
)
