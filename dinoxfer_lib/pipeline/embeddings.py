"""Stages ``embeddings/<set>`` (Table III: the OpenCell images through each backbone and channel strategy),
``hpa_embeddings/<set>`` (the HPA-like images through the cell-line task's sets) and
``domain_embeddings/<backbone>/<domain>`` (every domain's images through every backbone, for the domain-shift
chapter). All are one stage kind, :func:`make_embeddings`: images of one domain, a backbone, a channel strategy.

Why the domain embeddings use the bag of channels, averaged, is in *Deviations and choices* (Embeddings).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dinoxfer_lib.data.dataset import load_imageset
from dinoxfer_lib.embedding_sets import CELL_LINE_SETS, EmbeddingSet, embedding_sets
from dinoxfer_lib.pipeline.backbones import ResolvedBackbone, load_backbones
from dinoxfer_lib.pipeline.data import make_dataset
from dinoxfer_lib.pipeline.run import DOMAINS, Run
from dinoxfer_lib.store import Artifact

EMBEDDING_FILE = "embeddings.h5ad"


def sample_indices(n: int, *, max_images: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded random sample of ``min(n, max_images)`` of ``n`` images."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, max_images), replace=False))


def make_embeddings(
    run: Run,
    stage: str,
    *,
    domain: str,
    backbone: ResolvedBackbone,
    strategy: str,
    slot_table: str | None = None,
    reduce: str | None = None,
    max_images: int | None = None,
    description: Mapping | None = None,
) -> Artifact:
    """Stage ``stage``: the images of ``domain`` (all, or a seeded sample of ``max_images``) through ``backbone``
    with channel ``strategy``, as an AnnData ``embeddings.h5ad`` (see :func:`~dinoxfer_lib.embed.extract_embeddings`).

    ``bag_of_channels`` runs each channel alone through the backbone (a single-channel encoder as DINO BoC trains one,
    else its single-channel copy: patch filters summed over its input slots) and combines the channels by ``reduce``
    (default ``embed.bag_reduce``); ``slot_table`` is for ``mapping``. Recomputed when the images, the backbone's
    weights, ``embed.*`` or these arguments change.
    """
    from dinoxfer_lib.embed import extract_embeddings
    from dinoxfer_lib.models.channels import make_encoder, single_channel_copy

    embed = run.config.embed
    reduce = reduce or embed.bag_reduce
    dataset_artifact = make_dataset(run, domain)
    inputs = [dataset_artifact] + ([run.store.load(backbone.stage)] if backbone.stage else [])

    def compute(folder: Path) -> None:
        dataset = load_imageset(dataset_artifact.path)
        if max_images is not None:
            dataset = dataset.subset(sample_indices(len(dataset), max_images=max_images, seed=run.config.seed))
        model, slots, mean, std = backbone.model, backbone.slots, backbone.mean, backbone.std
        if strategy == "bag_of_channels" and model.patch_embed.proj.in_channels > 1:
            model, slots, mean, std = single_channel_copy(model), ("any",), None, None
        encoder = make_encoder(
            strategy, model, target_channels=dataset.channel_names, slots=slots, slot_table=slot_table,
            mean=mean, std=std, per_image_zscore=backbone.per_image_zscore, feature=embed.feature, reduce=reduce,
        )
        extract_embeddings(
            dataset, encoder, batch_size=embed.batch_size, img_size=embed.img_size, compile=embed.compile,
            out_path=folder / EMBEDDING_FILE,
            description={**(description or {}), "arch": embed.arch, "backbone": backbone.describe()},
        )

    return run.store.run_stage(
        stage,
        compute,
        config={"domain": domain, "strategy": strategy, "slot_table": slot_table, "reduce": reduce,
                "max_images": max_images, "embed": dataclasses.asdict(embed), "backbone": backbone.describe(),
                "seed": run.config.seed},
        inputs=inputs,
        seed=run.config.seed,
        force=run.force,
    )


def table_iii_embeddings(run: Run, names: tuple[str, ...] | None = None, *,
                         backbones: Mapping[str, ResolvedBackbone] | None = None,
                         stage_suffix: str = "") -> dict[str, Artifact]:
    """Stage ``embeddings/<set><stage_suffix>`` of each Table III set of the run (all of them, or ``names``), with
    the profile's backbones unless ``backbones`` (backbone name -> backbone) replaces them."""
    sets = embedding_sets(run.config.dinov2.backbones, names)
    return _set_embeddings(run, sets, domain="opencell", stage=lambda name: f"embeddings/{name}{stage_suffix}",
                           backbones=backbones)


def cell_line_embeddings(run: Run) -> dict[str, Artifact]:
    """Stage ``hpa_embeddings/<set>`` of each set of the cell-line task the run has (:data:`CELL_LINE_SETS`): the
    HPA-like images embedded the way the set embeds OpenCell's."""
    sets = embedding_sets(run.config.dinov2.backbones, CELL_LINE_SETS)
    return _set_embeddings(run, sets, domain="hpa", stage=lambda name: f"hpa_embeddings/{name}")


def _set_embeddings(run: Run, sets: tuple[EmbeddingSet, ...], *, domain: str, stage,
                    backbones: Mapping[str, ResolvedBackbone] | None = None) -> dict[str, Artifact]:
    backbones = backbones or load_backbones(run, tuple(dict.fromkeys(s.pretraining for s in sets)))
    return {
        spec.name: make_embeddings(
            run, stage(spec.name), domain=domain, backbone=backbones[spec.pretraining], strategy=spec.strategy,
            slot_table=spec.slot_table, description={"set": spec.name},
        )
        for spec in sets
    }


def load_embeddings(run: Run, names: tuple[str, ...] | None = None) -> dict:
    """Embeddings of the OpenCell images for each Table III set (or ``names``), as AnnData (computed once)."""
    return read_embeddings(table_iii_embeddings(run, names))


def domain_embeddings(run: Run, backbone_domain: str, domains: tuple[str, ...] = DOMAINS) -> dict[str, Artifact]:
    """Stage ``domain_embeddings/<backbone_domain>/<domain>`` of each of ``domains``: a seeded sample of at most
    ``analysis.max_images_per_domain`` images through the backbone pretrained on ``backbone_domain`` (or the DINOv2
    backbone of that name), bag of channels averaged (the same input path for every domain, whatever its
    channels)."""
    backbone = load_backbones(run, (backbone_domain,))[backbone_domain]
    return {
        domain: make_embeddings(
            run, f"domain_embeddings/{backbone_domain}/{domain}", domain=domain, backbone=backbone,
            strategy="bag_of_channels", reduce="mean", max_images=run.config.analysis.max_images_per_domain,
            description={"backbone_domain": backbone_domain},
        )
        for domain in domains
    }


def load_domain_embeddings(run: Run, backbone_domain: str, domains: tuple[str, ...] = DOMAINS) -> dict:
    """Each domain's images (a seeded sample) embedded by the backbone pretrained on ``backbone_domain``.

    Returns
    -------
    dict
        Domain → AnnData (``X`` = bag-of-channels embeddings averaged over channels, ``obs``, ``obsm["labels"]``,
        ``uns["embedding"]``), computed once per (backbone, domain) and then reused.
    """
    return read_embeddings(domain_embeddings(run, backbone_domain, domains))


def read_embeddings(artifacts: Mapping[str, Artifact]) -> dict:
    """The AnnData of each embedding stage, by the same keys."""
    import anndata

    return {name: anndata.read_h5ad(artifact.path / EMBEDDING_FILE) for name, artifact in artifacts.items()}
