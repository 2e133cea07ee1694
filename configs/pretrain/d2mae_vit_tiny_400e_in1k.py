# D²-MAE-Tiny: 13-block student, block 13 attention-only (its logits matched to teacher block 12),
# pixel decoder fed from the normed output of block 8; downstream uses the first 12 blocks.
_base_ = ["./dmae_vit_tiny_400e_in1k.py"]
model = dict(name="d2mae_vit_tiny", decode_idx=8, logits_block=True)
distill = dict(student_block=12, teacher_block=11)
