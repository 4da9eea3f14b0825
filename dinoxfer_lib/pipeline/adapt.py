"""Stages of chapter 08 (Adaptation and EM): adapted localisation models, the EM pair, the segmentation study.

- ``adapt/<set>``: every regime of ``adapt.regimes`` (the paper's MLP on frozen features, LoRA, full fine-tuning)
  starting from the backbone and channel strategy of one Table III embedding set, trained on Table III's first
  ``adapt.folds`` folds (split by image) and scored on the same validation and test images as its probes
  (:func:`load_adaptation`). Which sets: ``adapt.sets`` (:func:`adapted_sets`).
- ``datasets/em``: Lucchi++ and VNC (or their stand-ins) as ``data.em`` says, cut into patches
  (:func:`load_em_data`).
- ``seg/<backbone>``: paper 004's study with one backbone of ``seg.backbones``: frozen and LoRA x each training
  set, foreground IoU on each domain's test patches, example predictions, and the frozen backbone's CLS embedding
  of every patch for the representation diagnostics (:func:`load_seg_studies`).

An ``adapt`` stage is recomputed when the dataset, the split, the set's embeddings (hence its backbone's weights),
``adapt.*`` (but ``sets``), the head and scoring settings of ``probe.*`` or ``embed.*`` change; a ``seg`` stage when
the EM patches, the backbone's weights, ``seg.*`` (but ``backbones``) or ``data.em`` change.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dinoxfer_lib.adapt.config import BEST_VALIDATION
from dinoxfer_lib.data.em_config import EM_DOMAINS
from dinoxfer_lib.embedding_sets import EMBEDDING_SETS
from dinoxfer_lib.pipeline.backbones import ResolvedBackbone, load_backbones
from dinoxfer_lib.pipeline.data import load_split, make_dataset, make_split
from dinoxfer_lib.pipeline.embeddings import EMBEDDING_FILE, channel_encoder, table_iii_embeddings
from dinoxfer_lib.pipeline.run import DOMAINS, Run
from dinoxfer_lib.seg.config import STORE_PREFIX
from dinoxfer_lib.store import Artifact

if TYPE_CHECKING:  # the trainers are imported by the stages that run them
    from dinoxfer_lib.seg.train import SegResult

# probe.* settings an adapted model depends on: the paper's head, the decision threshold and how images are drawn.
HEAD_KEYS = ("hidden", "dropout", "threshold", "resample", "tune_thresholds")
# Test patches per (model, domain) whose predicted masks are kept for the overlays.
N_EXAMPLES = 4
EMBEDDINGS_FILE = "embeddings.npz"
BACKBONE_RECORD = "backbone.json"


def adapted_sets(run: Run) -> tuple[str, ...]:
    """The Table III sets ``adapt.sets`` names, ``best_val`` resolved to the set whose MLP has the highest mean
    validation macro F1 in Table III (chapter 04's result; the test images play no part in the choice)."""
    names: list[str] = []
    for entry in run.config.adapt.sets:
        if entry == BEST_VALIDATION:
            from dinoxfer_lib.pipeline.probes import load_probe_results

            table = load_probe_results(run).table()
            mlp = table[table["probe"] == "mlp"]
            entry = str(mlp.loc[mlp["val_f1_mean"].idxmax(), "set"])
        if entry not in names:
            names.append(entry)
    return tuple(names)


def make_adaptation(run: Run, set_name: str, *, device=None) -> Artifact:
    """Stage ``adapt/<set_name>``: every regime on the set's backbone and channel strategy (see the module)."""
    from dinoxfer_lib.adapt.train import run_adaptation
    from dinoxfer_lib.data.dataset import load_imageset

    spec = {s.name: s for s in EMBEDDING_SETS}[set_name]
    backbones = load_backbones(run, (spec.pretraining,))
    backbone = backbones[spec.pretraining]
    embedding = table_iii_embeddings(run, (set_name,), backbones=backbones)[set_name]
    dataset_artifact = make_dataset(run, "opencell")
    split_artifact = make_split(run, "opencell", grouped=False)
    config, embed = run.config.adapt, run.config.embed

    def compute(folder: Path) -> None:
        import anndata

        dataset = load_imageset(dataset_artifact.path)
        encoder = channel_encoder(backbone, spec.strategy, target_channels=dataset.channel_names,
                                  slot_table=spec.slot_table, feature=embed.feature, reduce=embed.bag_reduce)
        run_adaptation(
            encoder, dataset.images, dataset.labels, split=load_split(run, "opencell", grouped=False), config=config,
            probe=run.config.probe, class_names=dataset.class_names, set_name=set_name, device=device,
            seed=run.config.seed, save_dir=folder / "models" if config.save_models else None,
            features=np.asarray(anndata.read_h5ad(embedding.path / EMBEDDING_FILE).X), img_size=embed.img_size,
        ).save(folder)

    adapt = dataclasses.asdict(config)
    adapt.pop("sets")  # which sets are adapted does not change any one set's models
    return run.store.run_stage(
        f"adapt/{set_name}",
        compute,
        config={"set": set_name, "adapt": adapt, "probe": {k: getattr(run.config.probe, k) for k in HEAD_KEYS},
                "embed": dataclasses.asdict(embed), "backbone": backbone.describe(), "seed": run.config.seed},
        inputs=[dataset_artifact, split_artifact, embedding],
        seed=run.config.seed,
        force=run.force,
    )


def load_adaptation(run: Run, *, device=None):
    """Every adapted set's regimes, folds and costs as one :class:`~dinoxfer_lib.adapt.train.AdaptResult`
    (computed once per set, then reused)."""
    from dinoxfer_lib.adapt.train import AdaptResult

    return AdaptResult.concat([AdaptResult.load(make_adaptation(run, name, device=device).path)
                               for name in adapted_sets(run)])


def make_em_data(run: Run) -> Artifact:
    """Stage ``datasets/em``: both EM domains as patches of ``data.em.patch_size`` (stand-ins or the real pair)."""
    from dinoxfer_lib.data.em import load_em_pair, save_em_set

    em = run.config.data.em

    def compute(folder: Path) -> None:
        for domain, patches in load_em_pair(em, seed=run.config.seed).items():
            save_em_set(patches, folder / domain)

    return run.store.run_stage("datasets/em", compute, config={**dataclasses.asdict(em), "seed": run.config.seed},
                               seed=run.config.seed, force=run.force)


def load_em_data(run: Run) -> dict:
    """Domain → :class:`~dinoxfer_lib.data.em.EMSet` of its patches (train and test rows), made once."""
    from dinoxfer_lib.data.em import load_em_set

    artifact = make_em_data(run)
    return {domain: load_em_set(artifact.path / domain) for domain in EM_DOMAINS}


def seg_backbone(run: Run, name: str) -> ResolvedBackbone:
    """The backbone a ``seg.backbones`` entry names (see :class:`~dinoxfer_lib.seg.config.SegConfig`).

    A pretraining domain resolves as every chapter resolves it (``embed.<domain>_weights``); registered weights
    carry their slots and input standardisation; ``store:<stage>`` and checkpoint paths are taken to expect
    [0, 1] intensities without standardisation, as the backbones this book trains do.
    """
    from dinoxfer_lib.dino.checkpoint import BACKBONE_FILE
    from dinoxfer_lib.models.backbones import PRETRAINED
    from dinoxfer_lib.models.checkpoints import build_backbone

    if name in DOMAINS:
        return load_backbones(run, (name,))[name]
    size = run.config.data.em.patch_size
    if name.startswith(STORE_PREFIX):
        stage = name.removeprefix(STORE_PREFIX)
        model, report = build_backbone(run.store.load(stage).path / BACKBONE_FILE, img_size=size)
        slots = tuple(f"slot{i}" for i in range(model.patch_embed.proj.in_channels))
        return ResolvedBackbone(name, model, slots, None, None, f"{stage} (this run)", report.sha256, stage=stage)
    model, report = build_backbone(name, img_size=size)  # a mistyped name is a ConfigError listing the known ones
    if name in PRETRAINED:
        meta = PRETRAINED[name]
        return ResolvedBackbone(name, model, meta.slots, meta.mean, meta.std, name, report.sha256,
                                per_image_zscore=meta.per_image_zscore)
    slots = tuple(f"slot{i}" for i in range(model.patch_embed.proj.in_channels))
    return ResolvedBackbone(name, model, slots, None, None, report.source, report.sha256)


def em_encoder(backbone: ResolvedBackbone):
    """``backbone`` reading greyscale EM: the 8-bit range to [0, 1], the channel copied into every input slot
    (channel replication, as an RGB model is given a grey image), then the backbone's own standardisation."""
    from dinoxfer_lib.models.channels import Scaling, make_encoder

    return make_encoder("replication", backbone.model, target_channels=("em",), slots=backbone.slots,
                        scaling=Scaling(bounds=((0.0,), (255.0,))), mean=backbone.mean, std=backbone.std,
                        per_image_zscore=backbone.per_image_zscore, feature="cls")


def stage_slug(name: str) -> str:
    """A ``seg.backbones`` entry as a stage folder name (``store:dino/hpa`` → ``store_dino_hpa``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "backbone"


def make_seg_study(run: Run, name: str, *, device=None) -> Artifact:
    """Stage ``seg/<name>``: 004's study with one backbone (see the module)."""
    from dinoxfer_lib.adapt.train import embed_images
    from dinoxfer_lib.data.em import load_em_set
    from dinoxfer_lib.devices import resolve_device
    from dinoxfer_lib.seg.train import run_seg_study

    em_artifact = make_em_data(run)
    backbone = seg_backbone(run, name)
    config = run.config.seg

    def compute(folder: Path) -> None:
        data = {domain: load_em_set(em_artifact.path / domain) for domain in EM_DOMAINS}
        encoder = em_encoder(backbone)
        run_seg_study(encoder, data, config=config, device=device, seed=run.config.seed,
                      n_examples=N_EXAMPLES).save(folder)
        where = resolve_device(device)
        np.savez_compressed(folder / EMBEDDINGS_FILE, **{  # (patches, D) per domain, train and test rows
            domain: embed_images(encoder, patches.images, batch_size=2 * config.batch_size, device=where)
            for domain, patches in data.items()})
        record = {**backbone.describe(), "entry": name, "arch": getattr(backbone.model, "dinoxfer_arch", "")}
        (folder / BACKBONE_RECORD).write_text(json.dumps(record, indent=1))

    seg = dataclasses.asdict(config)
    seg.pop("backbones")  # which other backbones are compared does not change this one's models
    inputs = [em_artifact] + ([run.store.load(backbone.stage)] if backbone.stage else [])
    return run.store.run_stage(
        f"seg/{stage_slug(name)}",
        compute,
        config={"seg": seg, "em": dataclasses.asdict(run.config.data.em), "backbone": backbone.describe(),
                "embed_img_size": run.config.embed.img_size, "seed": run.config.seed},
        inputs=inputs,
        seed=run.config.seed,
        force=run.force,
    )


@dataclass
class SegStudy:
    """One backbone's segmentation study as stored.

    Attributes
    ----------
    result
        :class:`~dinoxfer_lib.seg.train.SegResult`: IoU per training set x regime x test domain, costs, examples.
    embeddings
        Domain → ``(patches, D)`` the frozen backbone's CLS embedding of every patch (train and test rows).
    backbone
        Where its weights came from (``source``, ``sha256``, ``arch``, the ``entry`` of ``seg.backbones``).
    """

    result: SegResult
    embeddings: dict[str, np.ndarray]
    backbone: dict


def load_seg_studies(run: Run, *, device=None) -> dict[str, SegStudy]:
    """``seg.backbones`` entry → its :class:`SegStudy`, each computed once and then reused."""
    from dinoxfer_lib.seg.train import SegResult

    studies = {}
    for name in run.config.seg.backbones:
        folder = make_seg_study(run, name, device=device).path
        with np.load(folder / EMBEDDINGS_FILE) as stored:
            embeddings = {domain: stored[domain] for domain in EM_DOMAINS}
        studies[name] = SegStudy(SegResult.load(folder), embeddings,
                                 json.loads((folder / BACKBONE_RECORD).read_text()))
    return studies


def adaptation_stages(run: Run) -> list[str]:
    """The stages chapter 08 computes, for its provenance table (after they ran)."""
    return [*(f"adapt/{name}" for name in adapted_sets(run)), "datasets/em",
            *(f"seg/{stage_slug(name)}" for name in run.config.seg.backbones)]
