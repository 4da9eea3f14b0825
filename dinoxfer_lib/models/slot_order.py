"""Which input slot of a multi-channel backbone holds which stain: the order in force, and a check on labelled data.

DINO4Cells' sources disagree about its HPA FOV model. Its HPA configs name the channels c=0 nucleus, 1 protein,
2 microtubules ("cyto"), 3 ER, i.e. the Kaggle colours stacked blue, green, red, yellow; the Kaggle files, and code
that stacks them as listed, give red, green, blue, yellow. The checkpoint itself does not say. A backbone's
features separate localisations best when each stain arrives in the slot whose filters were trained on it, so the
question is answerable on labelled data: :func:`check_slot_orders` embeds a labelled HPA sample under each
candidate order (channel mapping: every stain into the slot the order names, per-image z-score as DINO4Cells) and
scores each with a leave-one-out k-NN probe (macro F1 over the classes present), with a bootstrap over the images
saying how often the best order beats the runner-up.

The winner is recorded as ``slot_order`` in the weights' manifest (``data_manifests/<name>.yaml``), with the check's
evidence; :func:`slot_order` returns the order in force (recorded, else the registry's default) and whether it was
checked, which the pipeline's backbone loader uses and the book reports.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from dinoxfer_lib.errors import DataError, FetchError

# Candidate orders of the four HPA stains in DINO4Cells' input slots, by where each claim comes from.
CANDIDATE_ORDERS: dict[str, tuple[str, ...]] = {
    "dino4cells_config": ("nucleus", "protein", "microtubules", "er"),  # blue, green, red, yellow
    "kaggle_files": ("microtubules", "protein", "nucleus", "er"),  # red, green, blue, yellow
}
# Bootstrap resamples of the images behind the "wins" fraction.
RESAMPLES = 200


@dataclass(frozen=True)
class SlotOrderRanking:
    """The result of :func:`check_slot_orders`, best order first.

    Attributes
    ----------
    weights
        The registered weights checked (a key of :data:`~dinoxfer_lib.models.backbones.PRETRAINED`).
    orders
        ``[(name, slots, macro F1), ...]``, sorted by macro F1, best first.
    wins
        Fraction of bootstrap resamples of the images in which the best order's macro F1 exceeds the runner-up's.
    n_images, k
        Labelled images scored and the k of the k-NN probe.
    data
        Where the images came from.
    """

    weights: str
    orders: list[tuple[str, tuple[str, ...], float]]
    wins: float
    n_images: int
    k: int
    data: str
    checked_on: str = field(default_factory=lambda: datetime.date.today().isoformat())

    @property
    def best(self) -> tuple[str, ...]:
        return self.orders[0][1]

    @property
    def decisive(self) -> bool:
        """The best order wins in at least 95 % of the resamples."""
        return self.wins >= 0.95

    def table(self) -> str:
        """The ranking as aligned text lines."""
        width = max(len(name) for name, _, _ in self.orders)
        lines = [f"k-NN macro F1 (k={self.k}, leave-one-out) on {self.n_images} labelled images of {self.data}, "
                 f"input slots 0-{len(self.best) - 1}:"]
        for rank, (name, slots, f1) in enumerate(self.orders):
            note = f"  best: ahead in {self.wins:.0%} of {RESAMPLES} resamples of the images" if rank == 0 else ""
            lines.append(f"  {name:<{width}}  {', '.join(slots):<40} {f1:.3f}{note}")
        return "\n".join(lines)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SlotOrderRanking:
        """A ranking saved by :meth:`save`; anything else is a one-line DataError."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            data["orders"] = [(str(name), tuple(slots), float(f1)) for name, slots, f1 in data["orders"]]
            ranking = cls(**data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a ranking written by `dinoxfer channels check` ({exc})") from None
        if not ranking.orders:
            raise DataError(f"{path}: the ranking lists no slot order")
        return ranking


@dataclass(frozen=True)
class SlotOrder:
    """The slot order a build uses for registered weights, and whether it was checked on labelled data."""

    weights: str
    slots: tuple[str, ...]
    checked: bool
    evidence: Mapping | None = None  # what `dinoxfer channels check` recorded

    def sentence(self) -> str:
        """One sentence for the book: which order, and on what it rests."""
        order = ", ".join(self.slots)
        if not self.checked:
            return (f"{self.weights} reads its input slots as ({order}), the order the registry assumes; it has not "
                    f"been checked on labelled data (`dinoxfer channels check --weights {self.weights}`).")
        ev = self.evidence or {}
        scores = ", ".join(f"{name} {f1:.3f}" for name, f1 in ev.get("macro_f1", {}).items())
        return (f"{self.weights} reads its input slots as ({order}), checked on {ev.get('checked_on', '?')} with a "
                f"k-NN probe on {ev.get('n_images', '?')} labelled images (macro F1 {scores}; the best order ahead in "
                f"{ev.get('wins', float('nan')):.0%} of bootstrap resamples).")


def check_slot_orders(
    dataset,
    backbone,
    *,
    weights: str,
    orders: Mapping[str, Sequence[str]] = CANDIDATE_ORDERS,
    per_image_zscore: bool = True,
    k: int = 10,
    batch_size: int = 64,
    img_size: int | None = None,
    device=None,
    seed: int = 0,
    data: str = "",
) -> SlotOrderRanking:
    """Embed ``dataset`` under each slot order and rank the orders by leave-one-out k-NN macro F1.

    Parameters
    ----------
    dataset
        A labelled :class:`~dinoxfer_lib.data.dataset.ImageSet` whose channel names are the orders' slot names
        (an HPA sample from :func:`~dinoxfer_lib.data.readers.read_hpa_kaggle`).
    backbone
        The backbone whose slot order is in question.
    weights
        Its registered name (recorded in the ranking).
    orders
        Candidate orders by name, each a permutation of the dataset's channel names.
    per_image_zscore
        Standardise each image and slot as DINO4Cells' ``self_normalize`` (its weights were trained so).
    k
        Neighbours of the k-NN probe; it must be smaller than the number of images.
    batch_size, img_size, device
        As :func:`~dinoxfer_lib.embed.extract_embeddings`.
    seed
        Seed of the bootstrap.
    data
        Where the images came from, for the record.
    """
    from dinoxfer_lib.embed import extract_embeddings
    from dinoxfer_lib.models.channels import make_encoder
    from dinoxfer_lib.probes.knn import knn_fractions
    from dinoxfer_lib.probes.protocol import standardize

    channels = tuple(dataset.channel_names)
    for name, slots in orders.items():
        if sorted(slots) != sorted(channels):
            raise DataError(f"slot order {name} ({', '.join(slots)}): expected a permutation of the images' channels "
                            f"({', '.join(channels)})")
    if not 1 <= k < len(dataset):
        raise DataError(f"k = {k}: expected 1 <= k < the {len(dataset)} images of the sample")
    truth = np.asarray(dataset.labels, dtype=bool)
    predictions = {}
    for name, slots in orders.items():
        encoder = make_encoder("mapping", backbone, target_channels=channels, slots=tuple(slots),
                               slot_table={c: c for c in channels}, per_image_zscore=per_image_zscore)
        X = extract_embeddings(dataset, encoder, batch_size=batch_size, img_size=img_size, device=device).X
        (z,) = standardize(np.asarray(X, dtype=np.float32))
        predictions[name] = knn_fractions(z, truth, z, ks=[k], leave_one_out=True, device=device)[k] >= 0.5
    draws = np.random.default_rng(seed).multinomial(len(truth), np.full(len(truth), 1 / len(truth)), size=RESAMPLES)
    full = {name: float(_macro_f1(np.ones((1, len(truth))), truth, pred)[0]) for name, pred in predictions.items()}
    ranked = sorted(orders, key=lambda name: -full[name])
    wins = 1.0
    if len(ranked) > 1:
        best, second = (_macro_f1(draws, truth, predictions[name]) for name in ranked[:2])
        wins = float(np.mean(best > second))
    return SlotOrderRanking(weights=weights, orders=[(n, tuple(orders[n]), full[n]) for n in ranked], wins=wins,
                            n_images=len(truth), k=k, data=data)


def _macro_f1(counts: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Macro F1 over the classes with a true or predicted positive, for each row of image ``counts`` (R, N)."""
    tp = counts @ (truth & pred)  # (R, K)
    fp = counts @ (~truth & pred)
    fn = counts @ (truth & ~pred)
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denominator > 0, 2 * tp / denominator, np.nan)
    return np.nanmean(f1, axis=1)


def slot_order(weights: str, *, manifest_dir: str | os.PathLike | None = None) -> SlotOrder:
    """The slot order ``weights`` are used with: the one recorded in their manifest by :func:`record_slot_order`,
    else the registry's (:data:`~dinoxfer_lib.models.backbones.PRETRAINED`), unchecked.

    Raises
    ------
    DataError
        The manifest records an order that is not a permutation of the registry's slot names.
    """
    from dinoxfer_lib.data.manifests import load_manifest
    from dinoxfer_lib.models.backbones import pretrained_weights

    meta = pretrained_weights(weights)
    default = SlotOrder(weights, meta.slots, checked=False)
    if meta.manifest is None:
        return default
    try:
        manifest = load_manifest(meta.manifest, manifest_dir=manifest_dir)
    except FetchError:  # an installation without data_manifests/: nothing recorded
        return default
    recorded = manifest.slot_order
    if recorded is None:
        return default
    slots = recorded.get("slots") if isinstance(recorded, Mapping) else None
    if not isinstance(slots, list) or sorted(map(str, slots)) != sorted(meta.slots):
        raise DataError(f"{manifest.source}: slot_order.slots = {slots!r}; expected a permutation of "
                        f"{', '.join(meta.slots)}")
    evidence = recorded.get("checked")
    return SlotOrder(weights, tuple(slots), checked=isinstance(evidence, Mapping), evidence=evidence)


def record_slot_order(ranking: SlotOrderRanking, *, manifest_dir: str | os.PathLike | None = None) -> Path:
    """Write the ranking's best order and its evidence as ``slot_order`` into the weights' manifest.

    Any earlier ``slot_order`` block is replaced; the rest of the file is kept as written.
    """
    from dinoxfer_lib.data.manifests import load_manifest
    from dinoxfer_lib.models.backbones import pretrained_weights

    meta = pretrained_weights(ranking.weights)
    if meta.manifest is None:
        raise DataError(f"{ranking.weights}: weights trained by this book have no manifest to record a slot order in")
    if sorted(ranking.best) != sorted(meta.slots):
        raise DataError(f"ranking's best order ({', '.join(ranking.best)}) is not a permutation of "
                        f"{ranking.weights}'s slots ({', '.join(meta.slots)})")
    path = load_manifest(meta.manifest, manifest_dir=manifest_dir).source
    evidence = {"checked_on": ranking.checked_on, "data": ranking.data, "n_images": ranking.n_images, "k": ranking.k,
                "macro_f1": {name: round(f1, 4) for name, _, f1 in ranking.orders},
                "wins": round(ranking.wins, 3)}
    block = yaml.safe_dump({"slot_order": {"slots": list(ranking.best), "checked": evidence}}, sort_keys=False,
                           default_flow_style=None)
    path.write_text(_without_block(path.read_text(), "slot_order").rstrip("\n") + "\n" + block)
    load_manifest(meta.manifest, manifest_dir=manifest_dir)  # the file still validates
    return path


def _without_block(text: str, key: str) -> str:
    """``text`` (YAML) without the top-level ``key:`` block: its line and the indented lines that follow."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        top_level = bool(line.strip()) and not line[0].isspace() and not line.startswith("#")
        if top_level:
            skipping = line.startswith(f"{key}:")
        if not skipping:
            kept.append(line)
    return "".join(kept)
