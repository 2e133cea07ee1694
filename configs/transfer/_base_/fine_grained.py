# Flowers102, Pets, Aircraft, Cars: TRANSFER.md and scripts/transfer.sh state no values for these sets, so
# these are finetuning_transfer_exp.py's own defaults: lr 0.03 at batch 512 (basic_lr_per_img 0.03 / 512),
# 20 warm-up epochs, 300 epochs (the Exp's max_epoch when ssl_train gets no -e), layer decay 0.75.
_base_ = ["./finetune_transfer.py"]
optim = dict(base_lr=0.03)
schedule = dict(epochs=300, warmup_epochs=20)
