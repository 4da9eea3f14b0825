"""The book's stages: the only code that reads and writes the run store.

Each stage reads the config section it depends on, runs through the :class:`~dinoxfer_lib.store.ArtifactStore`
(reused when unchanged, recomputed with ``force``) and returns plain objects; ``make_*`` returns a stage's
:class:`~dinoxfer_lib.store.Artifact`, ``load_*`` what a chapter uses. Notebooks start with :func:`open_run` and
never hard-code a hyperparameter. One module per stage:

- :mod:`.run`: :class:`Run` and :func:`open_run`.
- :mod:`.data`: the datasets and the hold-out + K-fold splits.
- :mod:`.backbones`: the backbone pretrained on each domain (this run's DINO, published weights, a path, or random).
- :mod:`.dino`: DINO pretraining of a domain's backbone, and the DINOv2 backbones (Cell-DINO, Cell-DINO+, DINO
  BoC); also the ``torchrun`` entry point.
- :mod:`.embeddings`: images through a backbone and a channel strategy (Table III sets, domain embeddings).
- :mod:`.probes`: Table III and its companions (ceiling, floor, grade >= 2, trained vs random, low-label curves),
  cell-line classification.
- :mod:`.shift`: the cross-domain transfer matrix.
- :mod:`.adapt`: adapted localisation models (LoRA, full fine-tuning), the EM pair and the segmentation study.

The names below are importable from this package directly; each loads its module (and torch) only when used.
"""

from __future__ import annotations

from dinoxfer_lib.lazy import lazy_exports

_EXPORTS = {
    "DOMAINS": "run", "Run": "run", "open_run": "run",
    "make_dataset": "data", "load_datasets": "data", "make_split": "data", "load_split": "data",
    "ResolvedBackbone": "backbones", "resolve_backbone": "backbones", "random_backbone": "backbones",
    "load_backbones": "backbones", "backbone_labels": "backbones", "data_phrase": "data",
    "train_backbone": "dino", "load_dino_runs": "dino", "train_dinov2_backbone": "dino", "load_dinov2_runs": "dino",
    "make_embeddings": "embeddings", "load_embeddings": "embeddings", "load_domain_embeddings": "embeddings",
    "load_probe_results": "probes", "load_trained_vs_random": "probes", "load_low_label_curves": "probes",
    "load_cell_line_results": "probes", "has_cell_lines": "probes",
    "load_ceiling": "probes", "load_floor": "probes", "load_reference_rows": "probes", "grade_labels": "probes",
    "split_embeddings": "probes", "load_table_iii": "probes", "load_target_rows": "probes",
    "load_transfer_matrix": "shift", "shift_stages": "shift", "transfer_backbones": "backbones",
    "adapted_sets": "adapt", "load_adaptation": "adapt", "load_em_data": "adapt", "load_seg_studies": "adapt",
    "adaptation_stages": "adapt",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
