"""Settings of the representation analyses: UMAP, Harmony, mixing scores and domain-shift diagnostics.

Registered under the ``analysis:`` key of a profile (PAPER_SPEC.md §7: Cell-DINO's Harmony + UMAP, the EM study's
PCA / Fréchet distance / domain probe). :meth:`AnalysisConfig.validate` names offending keys as ``analysis.<field>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dinoxfer_lib.bounds import check_bounds
from dinoxfer_lib.errors import require_config as _require


@dataclass(frozen=True)
class AnalysisConfig:
    """What the UMAP/Harmony chapter and the domain-shift chapter compute, and how hard they try."""

    # Principal components kept before Harmony, the mixing scores and UMAP (capped by the embedding width and
    # the image count). 50 is the single-cell habit; fewer (20-30) is faster and enough for 192-d embeddings.
    n_pcs: int = 50
    # UMAP neighbourhood size: small values show local structure, large ones the global layout (umap-learn: 15).
    umap_n_neighbors: int = 15
    # UMAP minimum distance between embedded points: smaller packs clusters tighter (umap-learn: 0.1).
    umap_min_dist: float = 0.3
    # UMAP optimisation epochs; 200 is umap-learn's choice for large data and plenty for a few thousand points.
    # Raise it if the layout still looks fuzzy; lower it for speed.
    umap_n_epochs: int = 200
    # Covariates Harmony removes, where the embeddings' obs has them (OpenCell-like: plate; HPA-like: plate and
    # cell line). Harmony never sees a localisation label.
    harmony_covariates: tuple[str, ...] = ("batch", "cell_line")
    # Harmony's diversity penalty per covariate (Harmony: 2). Larger = mixes batches harder, at the risk of
    # merging biology that happens to differ between batches.
    harmony_theta: float = 2.0
    # Harmony's outer iterations (Harmony: 10); it stops earlier when converged.
    harmony_max_iter: int = 10
    # Effective neighbourhood size of LISI (Korsunsky et al. 2019 use 30); 3 x this many neighbours are searched.
    lisi_perplexity: float = 30.0
    # Neighbours of the k-NN label accuracy (leave-one-out majority vote on the strongest label).
    knn_k: int = 15
    # Domain shift: images embedded per domain and backbone (a seeded random sample; the transfer matrix's
    # probes train on these too). Embedding time grows with it; the Fréchet distance's noise shrinks with it.
    max_images_per_domain: int = 1000
    # Domain shift: random half-sample repetitions behind each Fréchet distance interval and the within-domain
    # floor. 50 gives a stable 95 % interval; more only narrows the interval's own noise.
    resamples: int = 50
    # Domain probe: cross-validation folds of the logistic regression that predicts the domain.
    domain_probe_folds: int = 5

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value (bounds:
        :data:`~dinoxfer_lib.bounds.BOUNDS`)."""
        check_bounds(self, key)
        _require(len(self.harmony_covariates) >= 1 and all(isinstance(c, str) and c for c in self.harmony_covariates),
                 f"{key}.harmony_covariates", self.harmony_covariates, "a non-empty list of obs column names")
