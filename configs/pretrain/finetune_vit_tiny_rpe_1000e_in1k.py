# "impr." fine-tuning of the +RPE variant (per-block relative position bias, q/v biases) for 1000 epochs.
_base_ = ["./finetune_vit_tiny_300e_in1k.py"]
model = dict(arch="vit_tiny_rpe")
schedule = dict(epochs=1000)
