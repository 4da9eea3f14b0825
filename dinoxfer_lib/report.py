"""Text and tables a chapter shows about its own run: data banners and provenance.

Chapters must say plainly when their numbers come from synthetic data, and which run produced them; these helpers
write that text from the objects themselves so no notebook hard-codes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping

import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.store import ArtifactStore


def data_banner(datasets: Mapping[str, ImageSet], *, profile: str) -> str:
    """A MyST admonition saying which domains are synthetic stand-ins and which are real data."""
    synthetic = [name for name, d in datasets.items() if d.synthetic]
    real = [name for name, d in datasets.items() if not d.synthetic]
    if synthetic:
        lines = [
            ":::{warning}",
            f"**Synthetic data.** Profile `{profile}`: the {', '.join(synthetic)} domain(s) on this page are the "
            "embedded procedural stand-ins, not the real datasets. Their numbers test the pipeline and are **not "
            "comparable with the paper's**. To run on real data, see *Running on real data and a GPU*.",
        ]
        if real:
            lines.append(f"Real data: {', '.join(real)}.")
        lines.append(":::")
        return "\n".join(lines)
    return f":::{{note}}\nProfile `{profile}`: real data for {', '.join(real)}.\n:::"


def provenance_table(store: ArtifactStore, stages: Iterable[str]) -> pd.DataFrame:
    """One row per stage: when and where it was computed, how long it took, from which commit and config."""
    rows = []
    for stage in stages:
        record = store.load(stage).provenance
        git = record.get("git") or {}
        commit = (git.get("commit") or "unknown")[:10] + (" (dirty)" if git.get("dirty") else "")
        rows.append(
            {
                "stage": stage,
                "computed": record.get("created"),
                "wall time (s)": record.get("wall_time_s"),
                "device": record.get("device"),
                "commit": commit,
                "config hash": record.get("config_hash", "")[:12],
            }
        )
    return pd.DataFrame(rows).set_index("stage")


def embedding_table(embeddings: Mapping) -> pd.DataFrame:
    """One row per embedding set: backbone source, strategy, feature, dimension and measured throughput."""
    from dinoxfer_lib.embedding_sets import EMBEDDING_SETS

    labels = {s.name: s for s in EMBEDDING_SETS}
    rows = []
    for name, adata in embeddings.items():
        meta = adata.uns["embedding"]
        spec = labels.get(name)
        rows.append(
            {
                "set": name,
                "weights": spec.weights_label if spec else "",
                "approach": spec.approach_label if spec else meta.get("strategy"),
                "backbone source": meta.get("backbone", {}).get("source"),
                "feature": meta.get("feature"),
                "images": adata.n_obs,
                "dimension": adata.n_vars,
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
                "pretrained on": {"natural": "natural images (ImageNet stand-in)", "hpa": "HPA", "opencell": "OpenCell"}.get(domain, domain),
                "architecture": getattr(backbone.model, "dinoxfer_arch", arch),
                "input slots": ", ".join(backbone.slots),
                "weights": backbone.source,
                "sha256": (backbone.sha256 or "")[:12],
            }
        )
    return pd.DataFrame(rows).set_index("pretrained on")


def backbone_note(backbones: Mapping) -> str:
    """A warning when any backbone is a random initialisation (no DINO run and no published weights yet)."""
    random = [d for d, b in backbones.items() if b.source.startswith("random init")]
    if not random:
        return ":::{note}\nAll backbones carry trained weights (sources above).\n:::"
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


def recipe_table(config, paper, *, compared: Collection[str] | None = None) -> pd.DataFrame:
    """A config section beside the paper's values (another instance of the same dataclass), differences marked.

    ``compared`` names the fields the paper fixes; other fields show "—" for the paper (book-only options).
    """
    rows = []
    for key, ours in dataclasses.asdict(config).items():
        in_paper = compared is None or key in compared
        theirs = getattr(paper, key)
        rows.append({"setting": key, "this run": _show(ours), "paper": _show(theirs) if in_paper else "—",
                     "differs": "yes" if in_paper and ours != theirs else ""})
    return pd.DataFrame(rows).set_index("setting")


def _show(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
