"""Store stages of the domain-shift chapter: every domain's images through every backbone, and the transfer matrix.

**How a backbone sees a domain with other channels.** To compare domains through one backbone, every domain's
images must become that backbone's input *in the same way*, or a distance would measure the channel adapter rather
than the images. All domains therefore go through the same encoder: **bag of channels, averaged** (DINO BoC): each
channel alone through the backbone's single-channel copy (patch filters summed over its input channels, so a single
channel gives exactly the tokens of that channel replicated into every slot: the paper's replication input), and
the per-channel features averaged. The result has the backbone's width for 2-channel OpenCell-like, 4-channel
HPA-like and RGB natural images alike. Channel mapping cannot serve here: natural RGB has no slot meaning in a
fluorescence backbone. The price: what differs between domains includes their channel make-up (two, three or four
channels averaged), which is part of the domain shift a user meets when moving a backbone.

Each domain is a seeded random sample of at most ``analysis.max_images_per_domain`` images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from dinoxfer_lib.data.dataset import load_imageset
from dinoxfer_lib.errors import ConfigError
from dinoxfer_lib.pipeline import DOMAINS, Run, _dataset_artifact, load_backbones
from dinoxfer_lib.store import Artifact

# Domains with localisation labels: the targets of the transfer matrix's probes.
LABELLED_DOMAINS = ("opencell", "hpa")
EMBEDDING_FILE = "embeddings.h5ad"


def sample_indices(n: int, *, max_images: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded random sample of ``min(n, max_images)`` of ``n`` images."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, max_images), replace=False))


def _domain_embedding_artifacts(run: Run, backbone_domain: str, domains: tuple[str, ...]) -> dict[str, Artifact]:
    from dinoxfer_lib.embed import extract_embeddings
    from dinoxfer_lib.models.channels import make_encoder, single_channel_copy

    if backbone_domain not in DOMAINS:
        raise ConfigError(f"unknown backbone {backbone_domain!r}: expected one of {', '.join(DOMAINS)}")
    backbone = load_backbones(run, (backbone_domain,))[backbone_domain]
    embed, max_images = run.config.embed, run.config.analysis.max_images_per_domain
    out = {}
    for domain in domains:
        dataset_artifact = _dataset_artifact(run, domain)
        inputs = [dataset_artifact]
        if backbone.source.startswith("store: "):
            inputs.append(run.store.load(backbone.source.removeprefix("store: ")))

        def compute(folder: Path, dataset_artifact=dataset_artifact) -> None:
            dataset = load_imageset(dataset_artifact.path)
            sample = dataset.subset(sample_indices(len(dataset), max_images=max_images, seed=run.config.seed))
            encoder = make_encoder(
                "bag_of_channels", single_channel_copy(backbone.model), target_channels=sample.channel_names,
                slots=("any",), per_image_zscore=backbone.per_image_zscore, feature=embed.feature, reduce="mean",
            )
            extract_embeddings(
                sample, encoder, batch_size=embed.batch_size, img_size=embed.img_size, compile=embed.compile,
                out_path=folder / EMBEDDING_FILE,
                description={"backbone_domain": backbone_domain, "arch": embed.arch, "backbone": backbone.describe()},
            )

        out[domain] = run.store.run_stage(
            f"domain_embeddings/{backbone_domain}/{domain}",
            compute,
            config={"backbone": backbone.describe(), "domain": domain, "strategy": "bag_of_channels",
                    "reduce": "mean", "embed": dataclasses.asdict(embed), "max_images": max_images,
                    "seed": run.config.seed},
            inputs=inputs,
            seed=run.config.seed,
            force=run.force,
        )
    return out


def load_domain_embeddings(run: Run, backbone_domain: str, domains: tuple[str, ...] = DOMAINS) -> dict:
    """Each domain's images (a seeded sample) embedded by the backbone pretrained on ``backbone_domain``.

    Parameters
    ----------
    run
        The open run (``embed.*`` picks the backbone and feature; ``analysis.max_images_per_domain`` the sample).
    backbone_domain
        ``natural``, ``hpa`` or ``opencell``: whose backbone.
    domains
        Whose images.

    Returns
    -------
    dict
        Domain → AnnData (``X`` = bag-of-channels embeddings averaged over channels, ``obs``, ``obsm["labels"]``,
        ``uns["embedding"]``), computed once per (backbone, domain) and then reused from
        ``runs/<profile>/domain_embeddings/<backbone>/<domain>/``.
    """
    import anndata

    artifacts = _domain_embedding_artifacts(run, backbone_domain, domains)
    return {domain: anndata.read_h5ad(a.path / EMBEDDING_FILE) for domain, a in artifacts.items()}


def load_transfer_matrix(run: Run, *, device=None) -> pd.DataFrame:
    """The transfer matrix (every backbone x every labelled domain), computed once and then reused.

    See :func:`~dinoxfer_lib.tl.transfer.transfer_matrix`; the probe recipe is the profile's ``probe`` section and
    the split follows ``split.*``. Stored as ``runs/<profile>/transfer/matrix/transfer.csv``.
    """
    from dinoxfer_lib.tl.transfer import transfer_matrix

    artifacts = {b: _domain_embedding_artifacts(run, b, LABELLED_DOMAINS) for b in DOMAINS}

    def compute(folder: Path) -> None:
        import anndata

        embeddings = {b: {d: anndata.read_h5ad(a.path / EMBEDDING_FILE) for d, a in per.items()}
                      for b, per in artifacts.items()}
        table = transfer_matrix(embeddings, split_config=run.config.split, probe_config=run.config.probe,
                                seed=run.config.seed, device=device)
        table.to_csv(folder / "transfer.csv", index=False)

    artifact = run.store.run_stage(
        "transfer/matrix",
        compute,
        config={"probe": dataclasses.asdict(run.config.probe), "split": dataclasses.asdict(run.config.split),
                "seed": run.config.seed},
        inputs=[a for per in artifacts.values() for a in per.values()],
        seed=run.config.seed,
        force=run.force,
    )
    return pd.read_csv(artifact.path / "transfer.csv")
