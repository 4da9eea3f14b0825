"""Stages ``embeddings/<set>`` (Table III: the OpenCell images through each backbone and channel strategy),
``hpa_embeddings/<set>`` (the HPA-like images through the cell-line task's sets) and
``domain_embeddings/<backbone>/<domain>`` (every domain's images through every backbone, for the domain-shift
chapter). All are one stage kind, :func:`make_embeddings`: images of one domain, a backbone, a channel strategy.

Why the domain embeddings use the bag of channels, averaged, is in *Deviations and choices* (Embeddings).

Under ``torchrun`` every process embeds a contiguous share of each stage's images (rank 0 alone decides reuse,
assembles and publishes), so a large set is embedded on all GPUs at once; the notebooks then reuse the stages::

    python -m dinoxfer_lib.pipeline.embeddings --profile paper --runs runs
    torchrun --nproc_per_node 8 -m dinoxfer_lib.pipeline.embeddings --profile paper --runs runs --domains
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path


from dinoxfer_lib.config import config_hash
from dinoxfer_lib.data.dataset import load_imageset
from dinoxfer_lib.dino import distributed
from dinoxfer_lib.embedding_sets import CELL_LINE_SETS, EMBEDDING_SETS, EmbeddingSet, embedding_sets
from dinoxfer_lib.pipeline.backbones import ResolvedBackbone, load_backbones, transfer_backbones
from dinoxfer_lib.pipeline.data import make_dataset, sample_indices
from dinoxfer_lib.pipeline.run import DOMAINS, Run, open_run
from dinoxfer_lib.store import Artifact

EMBEDDING_FILE = "embeddings.h5ad"
# Where the processes of a torchrun job leave their shares of a stage until rank 0 has assembled them.
SHARD_DIR = ".embedding_shards"


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

    embed = run.config.embed
    reduce = reduce or embed.bag_reduce
    if not distributed.is_main_process():
        distributed.barrier()  # rank 0 makes (or reuses) the dataset stage first
    dataset_artifact = make_dataset(run, domain)
    if distributed.is_main_process():
        distributed.barrier()
    inputs = [dataset_artifact] + ([run.store.load(backbone.stage)] if backbone.stage else [])
    config = {"domain": domain, "strategy": strategy, "slot_table": slot_table, "reduce": reduce,
              "max_images": max_images, "embed": dataclasses.asdict(embed), "backbone": backbone.describe(),
              "seed": run.config.seed}
    shards = run.store.root / SHARD_DIR / f"{stage.replace('/', '__')}-{config_hash(config)[:12]}"

    def compute(folder: Path | None) -> None:
        dataset = load_imageset(dataset_artifact.path)
        if max_images is not None:
            dataset = dataset.subset(sample_indices(len(dataset), max_images=max_images, seed=run.config.seed))
        encoder = channel_encoder(backbone, strategy, target_channels=dataset.channel_names, slot_table=slot_table,
                                  feature=embed.feature, reduce=reduce)
        extract_embeddings(
            dataset, encoder, batch_size=embed.batch_size, img_size=embed.img_size, compile=embed.compile,
            out_path=None if folder is None else folder / EMBEDDING_FILE, shards=shards,
            description={**(description or {}), "arch": embed.arch, "backbone": backbone.describe()},
        )

    return _run_on_every_rank(run, stage, compute, shards, config=config, inputs=inputs)


def _run_on_every_rank(run: Run, stage: str, compute: Callable[[Path | None], None], shards: Path, *,
                       config: Mapping, inputs: list[Artifact]) -> Artifact:
    """``run.store.run_stage`` for a stage that every ``torchrun`` process computes a share of.

    Rank 0 decides reuse and publishes; when it computes, it tells the other ranks, which call ``compute(None)``
    alongside its ``compute(folder)``; ``shards`` is emptied before and removed after. Without a process group
    this is ``run_stage`` itself.
    """
    if not distributed.is_distributed():
        return run.store.run_stage(stage, compute, config=config, inputs=inputs, seed=run.config.seed,
                                   force=run.force)
    device = distributed.process_device()
    if distributed.is_main_process():
        def compute_with_all_ranks(folder: Path) -> None:
            shutil.rmtree(shards, ignore_errors=True)  # shares of an interrupted run are never assembled
            distributed.broadcast_int(1, device)
            compute(folder)

        try:
            artifact = run.store.run_stage(stage, compute_with_all_ranks, config=config, inputs=inputs,
                                           seed=run.config.seed, force=run.force)
        finally:
            shutil.rmtree(shards, ignore_errors=True)
        if artifact.reused:
            distributed.broadcast_int(0, device)
        distributed.barrier()
        return artifact
    computed = distributed.broadcast_int(-1, device) == 1
    if computed:
        compute(None)
    distributed.barrier()  # rank 0 has published the stage
    return dataclasses.replace(run.store.load(stage), reused=not computed)


def channel_encoder(backbone: ResolvedBackbone, strategy: str, *, target_channels: tuple[str, ...],
                    slot_table: str | None, feature: str, reduce: str):
    """``backbone`` with channel ``strategy`` as every embedding stage uses it (and the adaptation stages start from
    it): ``bag_of_channels`` runs each channel through a single-channel encoder (DINO BoC's own, else the backbone's
    single-channel copy: patch filters summed over its input slots), without slot standardisation."""
    from dinoxfer_lib.models.channels import make_encoder, single_channel_copy

    model, slots, mean, std = backbone.model, backbone.slots, backbone.mean, backbone.std
    if strategy == "bag_of_channels" and model.patch_embed.proj.in_channels > 1:
        model, slots, mean, std = single_channel_copy(model), ("any",), None, None
    return make_encoder(strategy, model, target_channels=target_channels, slots=slots, slot_table=slot_table,
                        mean=mean, std=std, per_image_zscore=backbone.per_image_zscore, feature=feature,
                        reduce=reduce)


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
    HPA-like images (a seeded sample of ``dinov2.cell_line_images``) embedded the way the set embeds OpenCell's."""
    sets = embedding_sets(run.config.dinov2.backbones, CELL_LINE_SETS)
    return _set_embeddings(run, sets, domain="hpa", stage=lambda name: f"hpa_embeddings/{name}",
                           max_images=run.config.dinov2.cell_line_images)


def _set_embeddings(run: Run, sets: tuple[EmbeddingSet, ...], *, domain: str, stage,
                    backbones: Mapping[str, ResolvedBackbone] | None = None,
                    max_images: int | None = None) -> dict[str, Artifact]:
    backbones = backbones or load_backbones(run, tuple(dict.fromkeys(s.pretraining for s in sets)))
    return {
        spec.name: make_embeddings(
            run, stage(spec.name), domain=domain, backbone=backbones[spec.pretraining], strategy=spec.strategy,
            slot_table=spec.slot_table, description={"set": spec.name}, max_images=max_images,
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


def main(argv: list[str] | None = None) -> None:
    """``python -m dinoxfer_lib.pipeline.embeddings`` / ``torchrun ... -m dinoxfer_lib.pipeline.embeddings`` (see the
    module docstring)."""
    from dinoxfer_lib.runner import parse_overrides

    parser = argparse.ArgumentParser(description="Embed the Table III sets (and with --domains the domain-shift "
                                     "chapter's samples) into the run store, sharded over torchrun's processes.")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--runs", default="runs", help="artifact store root (as `dinoxfer run --runs`)")
    parser.add_argument("--sets", nargs="+", metavar="NAME", choices=[s.name for s in EMBEDDING_SETS],
                        help="Table III sets to embed (default: all)")
    parser.add_argument("--domains", action="store_true",
                        help="also every domain's sample through every backbone (domain_embeddings/*)")
    parser.add_argument("--force", action="store_true", help="recompute even if the stages are up to date")
    parser.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=(),
                        help="override a config value, e.g. embed.batch_size=512 (give `dinoxfer run` the same)")
    args = parser.parse_args(argv)
    distributed.init_from_env()
    run = open_run(args.profile, parse_overrides(args.set), runs_root=args.runs, force=args.force)
    artifacts = table_iii_embeddings(run, tuple(args.sets) if args.sets else None)
    if args.domains:
        for backbone_domain in transfer_backbones(run):
            artifacts.update({f"{backbone_domain}/{d}": a for d, a in domain_embeddings(run, backbone_domain).items()})
    if distributed.is_main_process():
        for artifact in artifacts.values():
            print(f"{artifact.name}: {'reused' if artifact.reused else 'computed'} -> {artifact.path}")


if __name__ == "__main__":
    main()
