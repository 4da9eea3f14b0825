"""Chapter 03 (Embeddings): the backbones behind each Table III set, the sets themselves, the neighbour check."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from dinoxfer_lib.embedding_sets import EMBEDDING_SETS


def embedding_table(embeddings: Mapping) -> pd.DataFrame:
    """One row per embedding set: strategy, the backbone it ran through (where its weights came from), feature,
    dimension and measured throughput."""
    labels = {s.name: s for s in EMBEDDING_SETS}
    rows = []
    for name, adata in embeddings.items():
        meta = adata.uns["embedding"]
        spec = labels.get(name)
        rows.append(
            {
                "set": name,
                "approach": spec.approach_label if spec else meta.get("strategy"),
                "backbone": meta.get("backbone", {}).get("source"),
                "feature": meta.get("feature"),
                "images": adata.n_obs,
                "dim": adata.n_vars,
                "images/s": meta.get("images_per_second"),
                "device": meta.get("device"),
            }
        )
    return pd.DataFrame(rows).set_index("set")


def backbone_table(backbones: Mapping, *, arch: str) -> pd.DataFrame:
    """One row per pretraining domain: architecture, input slots and the source of the weights."""
    rows = []
    for domain, backbone in backbones.items():
        rows.append(
            {
                "pretrained on": {"natural": "natural images", "hpa": "HPA", "opencell": "OpenCell"}.get(domain, domain),
                "architecture": getattr(backbone.model, "dinoxfer_arch", arch),
                "input slots": ", ".join(backbone.slots),
                "weights": backbone.source,
                "sha256": (backbone.sha256 or "")[:12],
            }
        )
    return pd.DataFrame(rows).set_index("pretrained on")


def backbone_note(backbones: Mapping) -> str:
    """A warning when any backbone is a random initialisation (no DINO run and no published weights yet)."""
    random = [d for d, b in backbones.items() if b.random]
    if not random:
        sources = "; ".join(f"{d}: {b.source}" for d, b in backbones.items())
        return f":::{{note}}\nAll backbones carry trained weights ({sources}).\n:::"
    return (
        ":::{warning}\n**Untrained backbones.** No DINO run exists yet for "
        f"{', '.join(random)} in this profile's store, so those backbones are seeded random initialisations. "
        "Their embeddings measure what a random ViT preserves (a surprisingly strong baseline, but not the paper's "
        "pretrained features). Run the DINO pretraining chapter, or name published weights in the profile "
        "(`embed.<domain>_weights`), and this chapter picks them up without edits.\n:::"
    )


def agreement_note(agreement: pd.DataFrame) -> str:
    """What the neighbour check shows, in numbers computed from the table."""
    best = agreement["agreement"].astype(float).idxmax()
    lines = [
        f"Across the sets, {agreement['agreement'].astype(float).min():.2f}–{agreement['agreement'].max():.2f} of "
        f"nearest-neighbour pairs share a label, against {agreement['chance'].astype(float).mean():.2f} for random "
        f"pairs; the highest is **{best}**."
    ]
    if "agreement_other_proteins" in agreement:
        lines.append(
            f"Without same-protein neighbours the share is {agreement['agreement_other_proteins'].astype(float).min():.2f}–"
            f"{agreement['agreement_other_proteins'].astype(float).max():.2f} (chance "
            f"{agreement['chance_other_proteins'].astype(float).mean():.2f}): the gap between the two is what "
            "recognising a protein, rather than its localisation, is worth."
        )
    return " ".join(lines)


def strategy_example(dataset) -> int:
    """The image the channel-strategy figure shows: the first whose strongest label is the most frequent class."""
    import numpy as np

    frequent = int(np.argmax(dataset.labels.sum(axis=0)))
    return int(np.argmax(dataset.grades[:, frequent]))


def what_this_means(embeddings: Mapping, agreement: pd.DataFrame) -> str:
    """The chapter's conclusion, from this run: the sets' widths, and whether their nearest neighbours share labels
    more often than chance before any probe is trained (``agreement`` from
    :func:`~dinoxfer_lib.tl.neighbours.agreement_table`)."""
    widths = sorted({adata.n_vars for adata in embeddings.values()})
    share = agreement["agreement"].astype(float)
    chance = float(agreement["chance"].astype(float).mean())
    best = share.idxmax()
    lines = [f"- **{len(embeddings)} embedding sets** of {next(iter(embeddings.values())).n_obs:,} images each, "
             f"{', '.join(map(str, widths))} features wide: the inputs of every probe in the next chapter."]
    if share.max() > 1.5 * chance:
        lines.append(f"- **Localisation is there before any label.** Up to {share.max():.2f} of an image's nearest "
                     f"neighbours share a label with it (**{best}**), against {chance:.2f} for random pairs: the "
                     "probe has structure to find.")
    else:
        lines.append(f"- **Little label structure without a probe.** At most {share.max():.2f} of an image's nearest "
                     f"neighbours share a label (**{best}**), close to the {chance:.2f} of random pairs: expect low "
                     "probe scores in the next chapter.")
    if "agreement_other_proteins" in agreement:
        other = agreement["agreement_other_proteins"].astype(float)
        drop = float((share - other).mean())
        lines.append(f"- **Protein identity.** Leaving out same-protein neighbours lowers the share by {drop:.2f} on "
                     "average: that much of the neighbourhood is the protein itself, which a split by image lets a "
                     "probe exploit and the grouped split does not.")
    return "\n".join(lines)
