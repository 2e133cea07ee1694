"""One-stream OSTrack-style tracking: model, training, inference and LaSOT evaluation."""
