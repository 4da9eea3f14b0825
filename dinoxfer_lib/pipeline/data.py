"""Stages ``datasets/<domain>`` (the images, generated or read once) and ``splits/<domain>_<by_image|grouped>``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from dinoxfer_lib.config import DomainConfig
from dinoxfer_lib.data import splits
from dinoxfer_lib.data.classes import HPA_CHANNELS, HPA_CLASSES, NATURAL_CHANNELS, OPENCELL_CHANNELS, OPENCELL_CLASSES
from dinoxfer_lib.data.dataset import IMAGES_FILE, ImageSet, load_imageset, save_imageset
from dinoxfer_lib.data.sources import SourceDigest, read_listing, source_digest
from dinoxfer_lib.pipeline.run import DOMAINS, Run
from dinoxfer_lib.store import Artifact

# A table source's default channels per domain, and the study's class vocabulary it is laid out over when every
# label of the table belongs to it (otherwise the table's own labels are the classes: a lab's own study).
_TABLE_SCHEMA = {
    "opencell": (OPENCELL_CHANNELS, OPENCELL_CLASSES),
    "hpa": (HPA_CHANNELS, HPA_CLASSES),
    "natural": (NATURAL_CHANNELS, None),
}


# Beside a real dataset's images: the sha256 of every source file it was read from (see data/sources.py).
SOURCE_LISTING = "source_files.csv"


def make_dataset(run: Run, domain: str) -> Artifact:
    """Stage ``datasets/<domain>``: the domain's images as ``data.<domain>`` says (synthetic or read from disk).

    A real source counts by content: the stage is recomputed when its table or any image file changes (the reason
    says which), not when the folder moves.
    """
    domain_config = getattr(run.config.data, domain)
    config = {"domain": domain, **dataclasses.asdict(domain_config), "seed": run.config.seed}
    record, explain, digest = None, None, None
    if domain_config.source == "synthetic":
        from dinoxfer_lib.data.synthetic import WORLD_VERSION

        config["world"] = WORLD_VERSION
    else:
        digest = source_content(run, domain)
        del config["path"]  # the content below stands for it
        config.update(table_sha256=digest.table_sha256, files_sha256=digest.files_sha256)
        record = {"path": domain_config.path, "n_files": len(digest.files)}
        before = read_listing(run.store.path(f"datasets/{domain}") / SOURCE_LISTING)
        explain = {"table_sha256": f"{digest.table.name} changed", "files_sha256": digest.changes_from(before)}

    def compute(folder: Path) -> None:
        save_imageset(_read_or_generate(domain, domain_config, seed=run.config.seed, images_file=folder / IMAGES_FILE),
                      folder)
        if digest is not None:
            digest.write_listing(folder / SOURCE_LISTING)

    return run.store.run_stage(f"datasets/{domain}", compute, config=config, seed=run.config.seed, force=run.force,
                               record=record, explain=explain)


def source_content(run: Run, domain: str) -> SourceDigest:
    """The content digest of a real-data domain (computed once per run; file hashes cached in the store)."""
    domain_config = getattr(run.config.data, domain)
    key = (domain_config.source, domain_config.path)
    if key not in run.source_digests:
        run.source_digests[key] = source_digest(*key, cache=run.store.root / ".source_sha256.json")
    return run.source_digests[key]


def _read_or_generate(domain: str, domain_config: DomainConfig, *, seed: int, images_file: Path) -> ImageSet:
    """The domain's images: generated, or read from disk resized as they are read and streamed into
    ``images_file`` (so a paper-sized set never sits in memory at its source size)."""
    source, path, size = domain_config.source, domain_config.path, domain_config.image_size
    streamed = {"max_pixels": domain_config.max_pixels, "images_file": images_file}
    if source == "synthetic":
        from dinoxfer_lib.data.synthetic import SYNTHETIC_DOMAINS

        dataset = SYNTHETIC_DOMAINS[domain](domain_config, seed=seed)
        dataset.extra["source"] = {"kind": "synthetic", "seed": seed}
        return dataset
    from dinoxfer_lib.data import readers

    if source == "opencell":
        # The paper uses the 6,120 labelled of OpenCell's 6,301 images.
        dataset = readers.read_opencell(path, image_size=size, unlabelled="drop", **streamed)
    elif source == "hpa_kaggle":
        dataset = readers.read_hpa_kaggle(path, image_size=size, **streamed)
    else:
        channels, classes = _TABLE_SCHEMA[domain]
        dataset = readers.read_table(path, channel_names=domain_config.channels or channels, class_names=None,
                                     image_size=size, domain=domain, **streamed)
        if classes is not None and set(dataset.class_names) <= set(classes):
            dataset = _with_vocabulary(dataset, classes)  # the study's classes, absent ones included
    dataset.extra["source"] = {"kind": source, "path": path}
    return dataset


def _with_vocabulary(dataset: ImageSet, vocabulary: tuple[str, ...]) -> ImageSet:
    """``dataset`` with its labels laid out over ``vocabulary`` (a superset of its classes, in that order)."""
    columns = [list(dataset.class_names).index(c) if c in dataset.class_names else None for c in vocabulary]
    labels = np.zeros((len(dataset), len(vocabulary)), bool)
    grades = np.zeros((len(dataset), len(vocabulary)), dataset.grades.dtype)
    for k, column in enumerate(columns):
        if column is not None:
            labels[:, k], grades[:, k] = dataset.labels[:, column], dataset.grades[:, column]
    return dataclasses.replace(dataset, labels=labels, grades=grades, class_names=vocabulary)


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


# How the book names each domain in a sentence.
DOMAIN_NAMES = {"opencell": "OpenCell", "hpa": "HPA", "natural": "natural-image"}


def sample_indices(n: int, *, max_images: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded random sample of ``min(n, max_images)`` of ``n`` images."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, max_images), replace=False))


def data_phrase(run: Run, domain: str, *, where: bool = False) -> str:
    """Which data stand for ``domain`` in this run, in words: the synthetic stand-in or the real data's layout (and,
    with ``where``, its folder)."""
    spec = getattr(run.config.data, domain)
    if spec.source == "synthetic":
        return f"the synthetic {DOMAIN_NAMES[domain]} stand-in"
    layout = {"opencell": "OpenCell layout", "hpa_kaggle": "HPA Kaggle layout", "table": "a table"}[spec.source]
    return f"{DOMAIN_NAMES[domain]} data ({layout}{f' at {spec.path}' if where else ''})"
