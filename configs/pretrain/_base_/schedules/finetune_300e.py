# "impr." intermediate fine-tuning: 300 epochs, batch 1024, AdamW (0.9, 0.999), wd 0.05, lr = 1e-3 x 1024 / 256,
# layer-wise lr decay 0.85, 5 warm-up epochs, cosine to 1e-6.
optim = dict(opt="adamw", base_lr=1e-3, weight_decay=0.05, betas=(0.9, 0.999), layer_decay=0.85, total_batch=1024)
schedule = dict(epochs=300, warmup_epochs=5, min_lr=1e-6)
