"""Backbones and how images reach them (PAPER_SPEC.md §3).

``backbones`` names ViT architectures (DINO's and DINOv2's) and pretrained weights; ``checkpoints`` loads every
published DINO and DINOv2 layout safely and strictly (and saves ours); ``channels`` wraps a backbone in a channel
strategy (mapping, replication, bag of channels, native) with explicit intensity normalisation; ``slot_order`` says
which input slot of published multi-channel weights holds which stain, and checks it on labelled data.
"""
