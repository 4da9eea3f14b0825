"""DINO self-distillation (Caron et al. 2021) as the paper trains its OpenCell backbone (PAPER_SPEC.md §4), and
DINOv2 (Oquab et al. 2024) as Cell-DINO and DINO BoC train theirs.

One module per job: :mod:`.config` (the recipe), :mod:`.head` (projection head and the student/teacher wrappers),
:mod:`.loss` (cross-entropy with centring and sharpening), :mod:`.schedules` (per-iteration arrays),
:mod:`.augment` (batched multi-crop on the device), :mod:`.train` (the loop, optimiser, EMA, checkpoints),
:mod:`.checkpoint`, :mod:`.health` (per-step log and collapse detector), :mod:`.distributed` and :mod:`.inspect`
(attention maps, patch PCA). DINOv2's additions: :mod:`.masking` (block masks), :mod:`.masked_vit` (the mask token
in a timm ViT), :mod:`.ibot` (masked-patch loss), :mod:`.koleo`, :mod:`.sinkhorn` (Sinkhorn-Knopp targets) and
:mod:`.dinov2` (the objective's three terms); :mod:`.bag` builds DINO BoC's single-channel corpus.

Pure computation: the book's ``dino/<domain>`` stage and the ``torchrun`` entry point are
:mod:`dinoxfer_lib.pipeline.dino`. Nothing is imported here, so ``dinoxfer_lib.config`` can import :mod:`.config`
without loading torch.
"""
