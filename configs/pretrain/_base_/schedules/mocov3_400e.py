# MAE-Lite's MoCo-v3 schedule (projects/mocov3/mocov3_exp.py): 400 epochs, batch 1024, torch's AdamW
# (0.9, 0.999) with weight decay 0.1 on every parameter, lr = 1.5e-4 x 1024 / 256, 40 warm-up epochs from
# 1e-6, cosine to 0, no gradient clipping.
optim = dict(opt="adamw", base_lr=1.5e-4, weight_decay=0.1, betas=(0.9, 0.999), filter_bias_and_bn=False,
             total_batch=1024)
schedule = dict(epochs=400, warmup_epochs=40, warmup_lr=1e-6, min_lr=0.0)
