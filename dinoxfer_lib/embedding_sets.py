"""The embedding sets, as data: which backbone, which channel strategy, and the labels the book prints.

Table III pairs the backbone pretrained on one domain with one channel strategy (PAPER_SPEC.md §3, rows 1-5). The
book adds a row per DINOv2 backbone the profile trains (``dinov2.backbones``): Cell-DINO and Cell-DINO+ (paper 002)
read OpenCell's channels by channel mapping, DINO BoC (paper 003) encodes each channel alone. Which weights stand
behind each pretraining domain is the profile's choice (``embed.<domain>_weights``), resolved by
:mod:`dinoxfer_lib.pipeline.backbones`; the paper's numbers for its rows are in :mod:`dinoxfer_lib.paper`.

Cell-line classification on the HPA-like images (002's CL task) uses the sets of :data:`CELL_LINE_SETS`, each
embedding the HPA-like images the way its Table III row embeds OpenCell's.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from dinoxfer_lib.dino.config import DINOV2_BACKBONES


@dataclass(frozen=True)
class EmbeddingSet:
    """One embedding set: which backbone, which channel strategy, and the labels the book prints."""

    name: str
    # The backbone: the domain it was pretrained on (natural | hpa | opencell: the paper's) or a DINOv2 backbone
    # trained here (cell_dino | cell_dino_plus | dino_boc).
    pretraining: str
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
    EmbeddingSet("cell_dino_mapping", "cell_dino", "mapping", "Cell-DINO (HPA FOV)", "channel mapping", "hpa"),
    EmbeddingSet("cell_dino_plus_mapping", "cell_dino_plus", "mapping", "Cell-DINO+ (ImageNet-1k → HPA FOV)",
                 "channel mapping", "hpa"),
    EmbeddingSet("dino_boc", "dino_boc", "bag_of_channels", "DINO BoC (every domain)",
                 "bag of channels (extension)"),
)
# Sets of the cell-line task: one per backbone (natural photographs, DINO on HPA, the DINOv2 backbones). The natural
# backbone maps the HPA-like protein and nucleus channels into red and green: replication would embed each of the four
# channels, and a 4 x wider set costs the probes as much as the rest together.
CELL_LINE_SETS: tuple[str, ...] = ("imagenet_mapping", "hpa_mapping", "cell_dino_mapping", "cell_dino_plus_mapping",
                                   "dino_boc")


def embedding_sets(dinov2_backbones: Collection[str], names: Collection[str] | None = None
                   ) -> tuple[EmbeddingSet, ...]:
    """The sets of a run: the paper's five and one per DINOv2 backbone it trains (``dinov2.backbones``), in Table
    III order; only ``names`` when given."""
    return tuple(s for s in EMBEDDING_SETS
                 if (s.pretraining not in DINOV2_BACKBONES or s.pretraining in dinov2_backbones)
                 and (names is None or s.name in names))
