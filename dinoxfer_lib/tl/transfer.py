"""Cross-domain transfer (DINO BoC's transfer matrix) and how it relates to domain distance.

Rows: the backbone pretrained on each domain, and DINO BoC (one single-channel encoder trained on channels of
every domain; the backbone of DINO BoC's own matrix); columns: each labelled domain. A cell is the test macro F1 of
the paper's probe trained on that domain's embeddings by that backbone (all cells use the same bag-of-channels
encoding, see *Deviations and choices*). The diagonal is "pretrained where it is evaluated"; the rest is
transfer.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from dinoxfer_lib.data.splits import make_split
from dinoxfer_lib.errors import DataError


def transfer_matrix(
    embeddings: Mapping[str, Mapping],
    *,
    split_config,
    probe_config,
    seed: int = 0,
    device=None,
) -> pd.DataFrame:
    """Test macro F1 of the probe for every backbone and labelled domain.

    Parameters
    ----------
    embeddings
        Backbone → labelled domain → AnnData (``X``, ``obsm["labels"]``, ``obs["group"]``,
        ``uns["class_names"]``); every backbone must hold the same images of a domain, in the same order.
    split_config
        The profile's :class:`~dinoxfer_lib.config.SplitConfig`: each domain's (sample of) images gets a fresh
        hold-out + K-fold split with these settings, grouped by protein when it says so.
    probe_config
        The :class:`~dinoxfer_lib.probes.ProbeConfig` of Table III.
    seed, device
        As in :func:`~dinoxfer_lib.probes.run_probe_suite`.

    Returns
    -------
    pandas.DataFrame
        One row per (backbone, domain): ``test_f1_mean``, ``test_f1_std`` (over fold models), ``n_images``.
    """
    from dinoxfer_lib.probes import run_probe_suite

    domains = list(dict.fromkeys(d for per in embeddings.values() for d in per))
    rows = []
    for domain in domains:
        sets = {backbone: per[domain] for backbone, per in embeddings.items() if domain in per}
        first = next(iter(sets.values()))
        for backbone, adata in sets.items():
            if list(adata.obs_names) != list(first.obs_names):
                raise DataError(f"backbone {backbone!r} embedded other {domain} images than the others")
        labels = first.obsm["labels"].astype(bool)
        groups = first.obs["group"].to_numpy() if split_config.group_by_protein else None
        split = make_split(labels, groups=groups, test_fraction=split_config.test_fraction,
                           n_folds=split_config.n_folds, seed=seed)
        result = run_probe_suite({b: a.X for b, a in sets.items()}, labels, split=split, config=probe_config,
                                 class_names=list(first.uns["class_names"]), device=device, seed=seed)
        table = result.table().rename(columns={"set": "backbone"})
        rows.append(table[["backbone", "test_f1_mean", "test_f1_std"]].assign(domain=domain, n_images=len(labels)))
    return pd.concat(rows, ignore_index=True)[["backbone", "domain", "test_f1_mean", "test_f1_std", "n_images"]]
