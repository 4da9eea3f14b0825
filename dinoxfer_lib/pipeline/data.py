"""Stages ``datasets/<domain>`` (the images, generated or read once) and ``splits/<domain>_<by_image|grouped>``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from dinoxfer_lib.config import DomainConfig
from dinoxfer_lib.data import splits
from dinoxfer_lib.data.classes import HPA_CHANNELS, HPA_CLASSES, NATURAL_CHANNELS, OPENCELL_CHANNELS, OPENCELL_CLASSES
from dinoxfer_lib.data.dataset import ImageSet, load_imageset, save_imageset
from dinoxfer_lib.pipeline.run import DOMAINS, Run
from dinoxfer_lib.store import Artifact

# What a table source of each domain must provide: its channels and, where fixed, its class vocabulary.
_TABLE_SCHEMA = {
    "opencell": (OPENCELL_CHANNELS, OPENCELL_CLASSES),
    "hpa": (HPA_CHANNELS, HPA_CLASSES),
    "natural": (NATURAL_CHANNELS, None),
}


def make_dataset(run: Run, domain: str) -> Artifact:
    """Stage ``datasets/<domain>``: the domain's images as ``data.<domain>`` says (synthetic or read from disk)."""
    domain_config = getattr(run.config.data, domain)

    def compute(folder: Path) -> None:
        save_imageset(_read_or_generate(domain, domain_config, seed=run.config.seed), folder)

    return run.store.run_stage(
        f"datasets/{domain}",
        compute,
        config={"domain": domain, **dataclasses.asdict(domain_config), "seed": run.config.seed},
        seed=run.config.seed,
        force=run.force,
    )


def _read_or_generate(domain: str, domain_config: DomainConfig, *, seed: int) -> ImageSet:
    source, path, size = domain_config.source, domain_config.path, domain_config.image_size
    if source == "synthetic":
        from dinoxfer_lib.data.synthetic import SYNTHETIC_DOMAINS

        return SYNTHETIC_DOMAINS[domain](domain_config, seed=seed)
    from dinoxfer_lib.data import readers

    if source == "opencell":
        # The paper uses the 6,120 labelled of OpenCell's 6,301 images.
        return readers.read_opencell(path, image_size=size, unlabelled="drop")
    if source == "hpa_kaggle":
        return readers.read_hpa_kaggle(path, image_size=size)
    channels, classes = _TABLE_SCHEMA[domain]
    return readers.read_table(path, channel_names=channels, class_names=classes, image_size=size, domain=domain)


def load_datasets(run: Run, domains: tuple[str, ...] = DOMAINS) -> dict[str, ImageSet]:
    """The profile's datasets (synthetic stand-ins or real data), generated or read once and then reused."""
    return {domain: load_imageset(make_dataset(run, domain).path) for domain in domains}


def make_split(run: Run, domain: str = "opencell", *, grouped: bool | None = None) -> Artifact:
    """Stage ``splits/<domain>_<by_image|grouped>``: the 90/10 hold-out and K folds as ``split.*`` says, by image
    (the paper) or grouped by protein (default: ``split.group_by_protein``)."""
    grouped = run.config.split.group_by_protein if grouped is None else grouped
    dataset_artifact = make_dataset(run, domain)
    split_config = run.config.split

    def compute(folder: Path) -> None:
        dataset = load_imageset(dataset_artifact.path)
        split = splits.make_split(
            dataset.labels,
            groups=dataset.obs["group"].to_numpy() if grouped else None,
            test_fraction=split_config.test_fraction,
            n_folds=split_config.n_folds,
            seed=run.config.seed,
        )
        split.to_frame(dataset.obs["image_id"]).to_csv(folder / "split.csv", index=False)

    return run.store.run_stage(
        f"splits/{domain}_{'grouped' if grouped else 'by_image'}",
        compute,
        config={**dataclasses.asdict(split_config), "grouped": grouped, "seed": run.config.seed},
        inputs=[dataset_artifact],
        seed=run.config.seed,
        force=run.force,
    )


def load_split(run: Run, domain: str = "opencell", *, grouped: bool | None = None) -> splits.Split:
    """The hold-out + K-fold split of ``domain``, by image or grouped by protein (default: the config's choice)."""
    grouped = run.config.split.group_by_protein if grouped is None else grouped
    dataset = load_imageset(make_dataset(run, domain).path)
    frame = pd.read_csv(make_split(run, domain, grouped=grouped).path / "split.csv", dtype={"image_id": str})
    return splits.Split.from_frame(frame, dataset.obs["image_id"], grouped=grouped, seed=run.config.seed)
