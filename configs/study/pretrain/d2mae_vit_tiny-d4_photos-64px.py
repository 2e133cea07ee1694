# The study's D²-MAE: 5-block student whose 5th block is attention-only (its logits matched to
# the teacher's last block), pixel decoder fed from the normed output of block 3 (the full
# recipe's 8 of 12, scaled); downstream uses the first 4 blocks.
_base_ = ["./dmae_vit_tiny-d4_photos-64px.py"]
model = dict(name="d2mae_vit_tiny", decode_idx=3, logits_block=True)
distill = dict(student_block=4, teacher_block=3)
