# MAE-Lite pre-training schedule: 400 epochs, batch 4096, AdamW (0.9, 0.95), wd 0.05 (none on 1-D params),
# lr = 1.5e-4 x 4096 / 256, 40 warm-up epochs, cosine to 0.
optim = dict(opt="adamw", base_lr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95), total_batch=4096)
schedule = dict(epochs=400, warmup_epochs=40, min_lr=0.0)
