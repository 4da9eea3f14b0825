"""Stage ``dino/<domain>``: train one domain's backbone with DINO, store it with its provenance.

OpenCell trains on the 90 % non-test images of its split only (the paper's protocol: the probes' test images are
never seen, not even without labels); the HPA-like and natural domains train on all their images. The probes of the
other split (by image vs grouped by protein, ``split.group_by_protein``) get their own OpenCell backbone, trained on
that split's non-test images (stage ``dino/opencell_grouped`` or ``dino/opencell_by_image``, see
:func:`opencell_stage`): a backbone trained on the split by image has seen most test images of the grouped split.
The stage folder holds ``teacher_backbone.safetensors`` (what
:func:`~dinoxfer_lib.pipeline.backbones.resolve_backbone` loads), ``checkpoint.pth`` (official DINO layout),
``history.csv`` (one row per step) and ``summary.json``.

Interrupted runs resume: training writes its checkpoints to ``<runs>/<profile>/.dino_resume/<domain>-<hash>/``
(keyed on the stage's config, so a changed recipe never resumes a stale run) and the stage only publishes a
finished run. Under ``torchrun`` every process trains; rank 0 alone decides reuse and publishes.

Command line (the same stage the DINO chapter makes or reuses)::

    python -m dinoxfer_lib.pipeline.dino --profile demo --domain opencell --runs-root runs
    torchrun --nproc_per_node 8 -m dinoxfer_lib.pipeline.dino --profile paper --domain opencell --runs-root runs

Re-running the same command resumes from the last checkpoint of an interrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dinoxfer_lib.config import config_hash
from dinoxfer_lib.data.dataset import load_imageset
from dinoxfer_lib.dino import distributed
from dinoxfer_lib.dino.checkpoint import BACKBONE_FILE, CHECKPOINT_FILE
from dinoxfer_lib.dino.train import HISTORY_FILE, SUMMARY_FILE, train_dino
from dinoxfer_lib.errors import ConfigError, TrainingError
from dinoxfer_lib.pipeline.data import make_dataset, make_split, load_split
from dinoxfer_lib.pipeline.run import DOMAINS, Run, open_run
from dinoxfer_lib.store import Artifact

STAGE_FILES = (BACKBONE_FILE, CHECKPOINT_FILE, HISTORY_FILE, SUMMARY_FILE)
RESUME_DIR = ".dino_resume"


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
    if not distributed.is_main_process():
        distributed.barrier()  # rank 0 makes (or reuses) the dataset and split stages first
    dataset_artifact = make_dataset(run, domain)
    dataset = load_imageset(dataset_artifact.path)
    inputs, index, stage = [dataset_artifact], np.arange(len(dataset)), f"dino/{domain}"
    if domain == "opencell":
        index = np.sort(load_split(run, domain, grouped=grouped).dev)
        inputs.append(make_split(run, domain, grouped=grouped))
        stage = opencell_stage(run, grouped)
    if distributed.is_main_process():
        distributed.barrier()
    config = {
        "domain": domain,
        "dino": dataclasses.asdict(run.config.dino),
        "arch": run.config.embed.arch,
        "img_size": run.config.embed.img_size,
        "channels": list(dataset.channel_names),
        "n_train_images": int(len(index)),
        "seed": run.config.seed,
    }
    work = run.store.root / RESUME_DIR / f"{stage.split('/', 1)[1]}-{config_hash(config)[:12]}"

    def train(out_dir: Path) -> None:
        train_dino(
            np.asarray(dataset.images[index]), config=run.config.dino, arch=run.config.embed.arch,
            img_size=run.config.embed.img_size, channel_names=dataset.channel_names, natural=domain == "natural",
            out_dir=out_dir, seed=run.config.seed, progress=progress,
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

    if distributed.is_main_process():
        artifact = run.store.run_stage(
            stage, compute, config=config, inputs=inputs, seed=run.config.seed, force=run.force,
        )
        if artifact.reused:
            distributed.broadcast_int(0, distributed.process_device())
        shutil.rmtree(work, ignore_errors=True)
    elif distributed.broadcast_int(-1, distributed.process_device()) == 1:
        train(work)
    distributed.barrier()
    return artifact if distributed.is_main_process() else run.store.load(stage)


@dataclass(frozen=True)
class DinoRun:
    """A finished ``dino/<domain>`` stage as the DINO chapter shows it: its summary and per-step history."""

    artifact: Artifact
    summary: dict
    history: pd.DataFrame


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
    out = {}
    for name, domain, grouped in jobs:
        artifact = train_backbone(run, domain, grouped=grouped, progress=progress)
        out[name] = DinoRun(artifact, json.loads((artifact.path / SUMMARY_FILE).read_text()),
                            pd.read_csv(artifact.path / HISTORY_FILE))
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m dinoxfer_lib.pipeline.dino`` / ``torchrun ... -m dinoxfer_lib.pipeline.dino`` (see the module
    docstring)."""
    from dinoxfer_lib.runner import parse_overrides

    parser = argparse.ArgumentParser(description="Train the book's DINO backbone of one domain (stage dino/<domain>).")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--domain", default="opencell", choices=DOMAINS)
    parser.add_argument("--runs-root", default="runs")
    parser.add_argument("--grouped", action=argparse.BooleanOptionalAction, default=None,
                        help="opencell: train on the split grouped by protein (--grouped) or by image (--no-grouped); "
                        "default split.group_by_protein")
    parser.add_argument("--force", action="store_true", help="retrain even if the stage is up to date")
    parser.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=(),
                        help="override a config value, e.g. dino.batch_size=128 (give `dinoxfer run` the same)")
    args = parser.parse_args(argv)
    distributed.init_from_env()
    run = open_run(args.profile, parse_overrides(args.set), runs_root=args.runs_root, force=args.force)
    artifact = train_backbone(run, args.domain, grouped=args.grouped)
    if distributed.is_main_process():
        print(f"{artifact.name}: {'reused' if artifact.reused else 'trained'} -> {artifact.path}")


if __name__ == "__main__":
    main()
