"""Stages ``dino/<domain>`` and ``dino/<dinov2 backbone>``: train a backbone, store it with its provenance.

``dino/<domain>`` trains one domain's backbone with DINO (``dino.*``). OpenCell trains on the 90 % non-test images
of its split only (the paper's protocol: the probes' test images are never seen, not even without labels); the
HPA-like and natural domains train on all their images. The probes of the other split (by image vs grouped by
protein, ``split.group_by_protein``) get their own OpenCell backbone, trained on that split's non-test images (stage
``dino/opencell_grouped`` or ``dino/opencell_by_image``, :func:`opencell_stage`): a backbone trained on the split by
image has seen most test images of the grouped split. ``dino/<name>`` trains a DINOv2 backbone
(``dinov2.recipe``, :class:`~dinoxfer_lib.dino.config.DINOv2BackbonesConfig`):

- ``cell_dino`` (paper 002): from scratch on the HPA-like images;
- ``cell_dino_plus`` (002's "+"): the same, started from the natural-image backbone (``dinov2.plus_init``);
- ``dino_boc`` (paper 003): a single-channel encoder on a bag of single channels drawn balanced from every source
  domain (:func:`~dinoxfer_lib.dino.bag.bag_of_channels`; OpenCell's non-test images only), for as many epochs
  over the bag as a joint-channel model gets over the images, i.e. the sources' mean channel count times more
  steps.

All go through one stage function. The stage folder holds ``teacher_backbone.safetensors`` (what
:func:`~dinoxfer_lib.pipeline.backbones.resolve_backbone` loads), ``checkpoint.pth`` (official DINO layout, plus
the iBOT centre for DINOv2), ``history.csv`` (one row per step), ``summary.json`` and ``training_data.json`` (what
the backbone trained on).

Interrupted runs resume: training writes its checkpoints to ``<runs>/<profile>/.dino_resume/<name>-<hash>/``
(keyed on the stage's config, so a changed recipe never resumes a stale run) and the stage only publishes a
finished run. Under ``torchrun`` every process trains; rank 0 alone decides reuse and publishes.

Command line (the same stage the DINO chapter makes or reuses)::

    python -m dinoxfer_lib.pipeline.dino --profile demo --domain opencell --runs runs
    torchrun --nproc_per_node 8 -m dinoxfer_lib.pipeline.dino --profile paper --domain opencell --runs runs
    torchrun --nproc_per_node 8 -m dinoxfer_lib.pipeline.dino --profile paper --domain cell_dino --runs runs

Re-running the same command resumes from the last checkpoint of an interrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from dinoxfer_lib.config import config_hash
from dinoxfer_lib.data.dataset import load_imageset
from dinoxfer_lib.dino import distributed
from dinoxfer_lib.dino.checkpoint import BACKBONE_FILE, CHECKPOINT_FILE
from dinoxfer_lib.dino.config import DINOV2_BACKBONES, DinoConfig
from dinoxfer_lib.dino.train import HISTORY_FILE, SUMMARY_FILE, train_dino
from dinoxfer_lib.dino.bag import BAG_CHANNEL, bag_of_channels
from dinoxfer_lib.errors import ConfigError, TrainingError
from dinoxfer_lib.files import file_sha256
from dinoxfer_lib.pipeline.data import load_split, make_dataset, make_split, sample_indices
from dinoxfer_lib.pipeline.run import DOMAINS, Run, open_run
from dinoxfer_lib.store import Artifact

TRAINING_DATA_FILE = "training_data.json"
STAGE_FILES = (BACKBONE_FILE, CHECKPOINT_FILE, HISTORY_FILE, SUMMARY_FILE)
RESUME_DIR = ".dino_resume"


@dataclass(frozen=True)
class TrainingData:
    """What one backbone trains on, as its stage needs it.

    ``config`` holds what the stage depends on besides the recipe and the architecture; ``describe`` is written to
    ``training_data.json`` for the chapter; ``epochs`` replaces the recipe's (DINO BoC's schedule).
    """

    images: np.ndarray
    channel_names: tuple[str, ...]
    inputs: list[Artifact]
    config: dict
    describe: dict = field(default_factory=dict)
    natural: bool = False
    init_from: str | os.PathLike | None = None
    epochs: int | None = None


def opencell_stage(run: Run, grouped: bool | None = None) -> str:
    """The stage of the OpenCell backbone trained on the non-test images of the split by image (``grouped`` False)
    or grouped by protein (True); default: the split of ``split.group_by_protein``, stage ``dino/opencell``."""
    if grouped is None or grouped == run.config.split.group_by_protein:
        return "dino/opencell"
    return f"dino/opencell_{'grouped' if grouped else 'by_image'}"


def train_backbone(run: Run, domain: str, *, grouped: bool | None = None, progress: bool = True) -> Artifact:
    """Train (or reuse) the DINO backbone of ``domain`` as ``run.config.dino`` and ``run.config.embed`` say.

    Parameters
    ----------
    run
        From :func:`~dinoxfer_lib.pipeline.open_run`; ``run.force`` retrains even when the stage is up to date.
    domain
        ``opencell`` (trained on the non-test split), ``hpa`` or ``natural`` (all images).
    grouped
        ``opencell`` only: train on the non-test images of the split by image (False) or grouped by protein (True);
        default ``split.group_by_protein``. The other split's backbone is its own stage (:func:`opencell_stage`).
    progress
        Show the training progress bar.

    Returns
    -------
    Artifact
        Stage ``dino/<domain>`` (or :func:`opencell_stage`) with the files named in the module docstring.
    """
    if domain not in DOMAINS:
        raise ConfigError(f"unknown domain {domain!r}: expected one of {', '.join(DOMAINS)}")

    def prepare() -> TrainingData:
        dataset_artifact = make_dataset(run, domain)
        dataset = load_imageset(dataset_artifact.path)
        inputs, index = [dataset_artifact], np.arange(len(dataset))
        if domain == "opencell":
            index = np.sort(load_split(run, domain, grouped=grouped).dev)
            inputs.append(make_split(run, domain, grouped=grouped))
        return TrainingData(np.asarray(dataset.images[index]), dataset.channel_names, inputs,
                            config={"domain": domain}, describe={"sources": {domain: int(len(index))}},
                            natural=domain == "natural")

    stage = opencell_stage(run, grouped) if domain == "opencell" else f"dino/{domain}"
    return _train_stage(run, stage, prepare, recipe=run.config.dino, progress=progress, config_key="dino")


def train_dinov2_backbone(run: Run, name: str, *, progress: bool = True) -> Artifact:
    """Train (or reuse) the DINOv2 backbone ``name`` as ``run.config.dinov2`` and ``run.config.embed`` say.

    Parameters
    ----------
    run
        From :func:`~dinoxfer_lib.pipeline.open_run`; ``run.force`` retrains even when the stage is up to date.
    name
        ``cell_dino``, ``cell_dino_plus`` (first trains or reuses ``dino/natural`` when ``dinov2.plus_init`` is
        ``natural`` and the profile trains that backbone) or ``dino_boc`` (module docstring).
    progress
        Show the training progress bar.

    Returns
    -------
    Artifact
        Stage ``dino/<name>`` with the files named in the module docstring.
    """
    if name not in DINOV2_BACKBONES:
        raise ConfigError(f"unknown DINOv2 backbone {name!r}: expected one of {', '.join(DINOV2_BACKBONES)}")
    settings = run.config.dinov2
    recipe = settings.recipe
    if name == "cell_dino_plus":
        recipe = dataclasses.replace(recipe, layerscale_init=settings.plus_layerscale_init)
        if settings.plus_init == "natural" and run.config.embed.natural_weights == "store":
            train_backbone(run, "natural", progress=progress)  # every process: it may train under torchrun
    if name == "dino_boc":
        recipe = dataclasses.replace(recipe, channel_drop_p=0.0)  # the only channel is never dropped
        prepare = partial(_channel_bag, run)
    else:
        prepare = partial(_hpa_images, run, plus=name == "cell_dino_plus")
    return _train_stage(run, f"dino/{name}", prepare, recipe=recipe, progress=progress, config_key="dinov2.recipe")


def _hpa_images(run: Run, *, plus: bool) -> TrainingData:
    """Cell-DINO's data: the HPA-like images (at most ``dinov2.max_images``), and for "+" its initial weights."""
    settings = run.config.dinov2
    dataset_artifact = make_dataset(run, "hpa")
    dataset = load_imageset(dataset_artifact.path)
    index = np.arange(len(dataset))
    if settings.max_images is not None:
        index = sample_indices(len(dataset), max_images=settings.max_images, seed=run.config.seed)
    inputs, config, init = [dataset_artifact], {"domain": "hpa", "max_images": settings.max_images}, None
    if plus:
        init, label, init_inputs = _plus_weights(run)
        inputs += init_inputs
        config["init_from"] = {"weights": label, "sha256": file_sha256(Path(init)) if not init_inputs else None}
    describe = {"sources": {"hpa": int(len(index))}, "init_from": config.get("init_from", {}).get("weights")}
    return TrainingData(np.asarray(dataset.images[index]), dataset.channel_names, inputs, config=config,
                        describe=describe, init_from=init)


def _plus_weights(run: Run) -> tuple[str | os.PathLike, str, list[Artifact]]:
    """Cell-DINO+'s initial weights: (file or registered name, label, the stage holding them if this run's)."""
    from dinoxfer_lib.models.checkpoints import weights_path

    plus = run.config.dinov2.plus_init
    if plus == "natural":
        plus = run.config.embed.natural_weights
        if plus == "store":
            artifact = run.store.load("dino/natural")
            return artifact.path / BACKBONE_FILE, "dino/natural (this run)", [artifact]
    return weights_path(plus), plus, []


class _SampledRows:
    """Rows of a (memory-mapped) image array, read lazily: the bag reads a chunk of (image, channel) pairs at a
    time, so a sample of a large source is never loaded whole."""

    def __init__(self, images: np.ndarray, rows: np.ndarray) -> None:
        self.images, self.rows = images, rows
        self.shape = (len(rows), *images.shape[1:])

    def __getitem__(self, key: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        rows, channels = key
        return self.images[self.rows[rows], channels]


def _channel_bag(run: Run) -> TrainingData:
    """DINO BoC's data: single channels drawn balanced from ``dinov2.boc_sources`` (OpenCell: non-test images)."""
    settings = run.config.dinov2
    sources, inputs = {}, []
    for domain in settings.boc_sources:
        dataset_artifact = make_dataset(run, domain)
        dataset = load_imageset(dataset_artifact.path)
        inputs.append(dataset_artifact)
        rows = np.arange(len(dataset))
        if domain == "opencell":
            rows = np.sort(load_split(run, domain).dev)
            inputs.append(make_split(run, domain))
        if settings.boc_images_per_source is not None and len(rows) > settings.boc_images_per_source:
            rows = rows[sample_indices(len(rows), max_images=settings.boc_images_per_source, seed=run.config.seed)]
        sources[domain] = _SampledRows(dataset.images, rows)
    bag = bag_of_channels(sources, size=run.config.embed.img_size, seed=run.config.seed)
    describe = {
        "sources": {domain: int(rows.shape[0]) for domain, rows in sources.items()},
        "channel_images": {domain: int((bag.source == domain).sum()) for domain in sources},
        "mean_channels": round(bag.mean_channels, 4),
        "n_source_images": bag.n_source_images,
    }
    config = {"sources": list(settings.boc_sources), "images_per_source": settings.boc_images_per_source}
    return TrainingData(bag.images, BAG_CHANNEL, inputs, config=config, describe=describe,
                        epochs=bag.epochs_matching(settings.recipe.epochs))


def _train_stage(run: Run, stage: str, prepare: Callable[[], TrainingData], *, recipe: DinoConfig,
                 progress: bool, config_key: str) -> Artifact:
    """The one training stage: ``prepare`` the data (rank 0 first, so the others reuse the stages it makes), train
    ``recipe`` on it, publish the finished run as ``stage``."""
    if not distributed.is_main_process():
        distributed.barrier()  # rank 0 makes (or reuses) the dataset and split stages first
    data = prepare()
    if distributed.is_main_process():
        distributed.barrier()
    if data.epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=data.epochs)
    config = {
        **data.config,
        "dino": dataclasses.asdict(recipe),
        "arch": run.config.embed.arch,
        "img_size": run.config.embed.img_size,
        "channels": list(data.channel_names),
        "n_train_images": int(len(data.images)),
        "seed": run.config.seed,
    }
    work = run.store.root / RESUME_DIR / f"{stage.split('/', 1)[1]}-{config_hash(config)[:12]}"

    def train(out_dir: Path) -> None:
        train_dino(
            data.images, config=recipe, arch=run.config.embed.arch, img_size=run.config.embed.img_size,
            channel_names=data.channel_names, natural=data.natural, out_dir=out_dir, seed=run.config.seed,
            init_from=data.init_from, progress=progress, config_key=config_key,
        )

    def compute(folder: Path) -> None:
        distributed.broadcast_int(1, distributed.process_device())  # tell the other ranks to train too
        try:
            train(work)
        except TrainingError:
            shutil.rmtree(work, ignore_errors=True)  # a resume would diverge again: keep none of its checkpoints
            raise
        for name in STAGE_FILES:
            shutil.copy2(work / name, folder / name)
        (folder / TRAINING_DATA_FILE).write_text(json.dumps(data.describe, indent=2))

    if distributed.is_main_process():
        artifact = run.store.run_stage(stage, compute, config=config, inputs=data.inputs, seed=run.config.seed,
                                       force=run.force)
        if artifact.reused:
            distributed.broadcast_int(0, distributed.process_device())
        shutil.rmtree(work, ignore_errors=True)
    elif distributed.broadcast_int(-1, distributed.process_device()) == 1:
        train(work)
    distributed.barrier()
    return artifact if distributed.is_main_process() else run.store.load(stage)


@dataclass(frozen=True)
class DinoRun:
    """A finished training stage as the DINO chapter shows it: its summary, per-step history and training data."""

    artifact: Artifact
    summary: dict
    history: pd.DataFrame
    training_data: dict

    @classmethod
    def load(cls, artifact: Artifact) -> DinoRun:
        data = artifact.path / TRAINING_DATA_FILE  # stages published before it was written have none
        return cls(artifact, json.loads((artifact.path / SUMMARY_FILE).read_text()),
                   pd.read_csv(artifact.path / HISTORY_FILE), json.loads(data.read_text()) if data.is_file() else {})


def load_dino_runs(run: Run, *, progress: bool = True) -> dict[str, DinoRun]:
    """Train (or reuse) the backbone of every domain whose weights this profile trains (``embed.<domain>_weights:
    store``); published weights need no training. A trained OpenCell backbone comes with its twin of the other
    split (key ``opencell_grouped`` or ``opencell_by_image``, :func:`opencell_stage`), which that split's Table III
    uses."""
    trained_here = [d for d in DOMAINS if getattr(run.config.embed, f"{d}_weights") == "store"]
    jobs = [(domain, domain, None) for domain in trained_here]
    if "opencell" in trained_here:
        other = not run.config.split.group_by_protein
        jobs.append((opencell_stage(run, other).split("/", 1)[1], "opencell", other))
    return {name: DinoRun.load(train_backbone(run, domain, grouped=grouped, progress=progress))
            for name, domain, grouped in jobs}


def load_dinov2_runs(run: Run, *, progress: bool = True) -> dict[str, DinoRun]:
    """Train (or reuse) every DINOv2 backbone the profile names (``dinov2.backbones``)."""
    return {name: DinoRun.load(train_dinov2_backbone(run, name, progress=progress))
            for name in run.config.dinov2.backbones}


def main(argv: list[str] | None = None) -> None:
    """``python -m dinoxfer_lib.pipeline.dino`` / ``torchrun ... -m dinoxfer_lib.pipeline.dino`` (see the module
    docstring)."""
    from dinoxfer_lib.runner import parse_overrides

    parser = argparse.ArgumentParser(description="Train one of the book's backbones (stage dino/<domain>).")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--domain", default="opencell", choices=(*DOMAINS, *DINOV2_BACKBONES),
                        help="a domain (its DINO backbone) or a DINOv2 backbone")
    parser.add_argument("--runs", default="runs", help="artifact store root (as `dinoxfer run --runs`)")
    parser.add_argument("--grouped", action=argparse.BooleanOptionalAction, default=None,
                        help="opencell: train on the split grouped by protein (--grouped) or by image (--no-grouped); "
                        "default split.group_by_protein")
    parser.add_argument("--force", action="store_true", help="retrain even if the stage is up to date")
    parser.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=(),
                        help="override a config value, e.g. dino.batch_size=128 (give `dinoxfer run` the same)")
    args = parser.parse_args(argv)
    distributed.init_from_env()
    run = open_run(args.profile, parse_overrides(args.set), runs_root=args.runs, force=args.force)
    if args.domain in DOMAINS:
        artifact = train_backbone(run, args.domain, grouped=args.grouped)
    else:
        artifact = train_dinov2_backbone(run, args.domain)
    if distributed.is_main_process():
        print(f"{artifact.name}: {'reused' if artifact.reused else 'trained'} -> {artifact.path}")


if __name__ == "__main__":
    main()
