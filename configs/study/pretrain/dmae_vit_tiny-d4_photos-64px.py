# The study's D-MAE: the study MAE + distillation of the last block's attention logits
# [B, 12, 5, 5] from the study teacher's last block [B, 6, 5, 5] (same visible patches),
# 1x1 conv adapter 12 -> 6, MSE, weight 1 (as dmae_vit_tiny_400e_in1k.py).
#   python tools/pretrain.py THIS_CONFIG --data DIR --cfg-options distill.teacher_ckpt=TEACHER/backbone.pth
_base_ = ["./mae_vit_tiny-d4_photos-64px.py"]
distill = dict(
    teacher_arch="vit_small",
    teacher_ckpt="work_dirs/study/teacher/backbone.pth",
    teacher_overrides=dict(depth=4),
    teacher_block=3,
    student_block=3,
    weight=1.0,
    compile_teacher=False,  # 140 updates: compiling would cost more than it saves
)
