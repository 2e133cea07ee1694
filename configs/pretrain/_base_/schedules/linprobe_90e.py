# MAE linear probing: 90 epochs, batch 16384, LARS (trust coefficient 0.001) lr 0.1 x 16384 / 256, no weight decay,
# 10 warm-up epochs.  always_adapt: the trust ratio applies without weight decay too, as MAE's LARS (which exempts
# 1-D parameters; timm's adapts every parameter, the BatchNorm here has none and the head bias starts at 0).
optim = dict(opt="lars", base_lr=0.1, weight_decay=0.0, momentum=0.9, total_batch=16384,
             kwargs=dict(always_adapt=True))
schedule = dict(epochs=90, warmup_epochs=10, min_lr=0.0)
