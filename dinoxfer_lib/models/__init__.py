"""Backbones (timm ViTs), checkpoint loading for every published DINO layout, and channel strategies."""
