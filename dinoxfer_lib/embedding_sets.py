"""The Table III embedding sets, as data: which pretraining domain's backbone, which channel strategy.

Each set pairs the backbone pretrained on one domain with one channel strategy (PAPER_SPEC.md §3, Table III rows
1-5) plus the DINO BoC extension. Which weights stand behind each pretraining domain is the profile's choice
(``embed.<domain>_weights``), resolved by :mod:`dinoxfer_lib.pipeline.backbones`; the paper's numbers for the
rows are in :mod:`dinoxfer_lib.paper`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddingSet:
    """One row of Table III: which backbone, which channel strategy, and the labels the book prints."""

    name: str
    pretraining: str  # domain whose backbone is used: natural | hpa | opencell
    strategy: str  # mapping | replication | native | bag_of_channels
    weights_label: str  # as in the paper's Table III
    approach_label: str
    slot_table: str | None = None


EMBEDDING_SETS: tuple[EmbeddingSet, ...] = (
    EmbeddingSet("imagenet_mapping", "natural", "mapping", "ImageNet-1k", "channel mapping", "imagenet"),
    EmbeddingSet("imagenet_replication", "natural", "replication", "ImageNet-1k", "channel replication"),
    EmbeddingSet("hpa_mapping", "hpa", "mapping", "HPA FOV", "channel mapping", "hpa"),
    EmbeddingSet("hpa_replication", "hpa", "replication", "HPA FOV", "channel replication"),
    EmbeddingSet("opencell_native", "opencell", "native", "OpenCell", "-"),
    EmbeddingSet("hpa_bag_of_channels", "hpa", "bag_of_channels", "HPA FOV", "bag of channels (extension)"),
)
