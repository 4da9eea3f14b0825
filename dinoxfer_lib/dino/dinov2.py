"""The DINOv2 objective (Oquab et al. 2024) as Cell-DINO and DINO BoC train: three terms on one step's outputs.

    loss = dino + ibot_loss_weight * ibot + koleo_loss_weight * koleo

- ``dino``: DINO's cross-entropy between the teacher's global-crop CLS targets and every other student view
  (:class:`~dinoxfer_lib.dino.loss.DINOLoss`, the same pairs and weights as DINO);
- ``ibot``: the masked-patch loss (:class:`~dinoxfer_lib.dino.ibot.IBOTPatchLoss`);
- ``koleo``: the KoLeo regulariser on the student's global-crop CLS features, each global view's batch on its own,
  summed over the two (:func:`~dinoxfer_lib.dino.koleo.koleo_loss`).

Teacher targets are centred and sharpened with running centres (``centering``) or equipartitioned with
Sinkhorn-Knopp (``sinkhorn_knopp``), for the CLS and the patch tokens alike.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.ibot import IBOTPatchLoss
from dinoxfer_lib.dino.koleo import gather_with_local_grad, koleo_loss
from dinoxfer_lib.dino.loss import DINOLoss, teacher_temperature_schedule
from dinoxfer_lib.dino.sinkhorn import sinkhorn_knopp

# History columns DINOv2 adds after DINO's (health.STEP_COLUMNS): the three terms, unweighted.
TERM_COLUMNS = ("dino_loss", "ibot_loss", "koleo_loss")


class DINOv2Loss(nn.Module):
    """DINO + iBOT + KoLeo with centred or Sinkhorn-Knopp teacher targets (see the module docstring).

    Parameters
    ----------
    config
        The recipe (``objective: dinov2``).
    n_crops
        Views per image the student sees (2 + local crops).
    """

    def __init__(self, config: DinoConfig, *, n_crops: int) -> None:
        super().__init__()
        def temperatures(final: float) -> list[float]:  # per epoch, after the shared warm-up
            return [float(t) for t in teacher_temperature_schedule(
                config.warmup_teacher_temp, final, config.warmup_teacher_temp_epochs, config.epochs)]

        self.dino = DINOLoss(config.out_dim, n_crops=n_crops, teacher_temps=temperatures(config.teacher_temp),
                             student_temp=config.student_temp, center_momentum=config.center_momentum)
        self.ibot = IBOTPatchLoss(config.ibot_out_dim if config.ibot_separate_head else config.out_dim,
                                  student_temp=config.student_temp, center_momentum=config.center_momentum)
        self.patch_teacher_temps = temperatures(
            config.teacher_temp if config.ibot_teacher_temp is None else config.ibot_teacher_temp)
        self.ibot_weight, self.koleo_weight = config.ibot_loss_weight, config.koleo_loss_weight
        self.centering, self.sinkhorn_iterations = config.centering, config.sinkhorn_iterations

    @torch.no_grad()
    def teacher_targets(self, cls_logits: torch.Tensor, patch_logits: torch.Tensor, epoch: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets of the teacher's global-crop CLS logits (2B, K) and masked-patch logits (M, K'); with
        ``centering`` the centres then move towards this batch (after the targets were made, as in DINO)."""
        temp = self.dino.teacher_temps[min(epoch, len(self.dino.teacher_temps) - 1)]
        patch_temp = self.patch_teacher_temps[min(epoch, len(self.patch_teacher_temps) - 1)]
        if self.centering == "sinkhorn_knopp":
            return (sinkhorn_knopp(cls_logits, temp, iterations=self.sinkhorn_iterations),
                    sinkhorn_knopp(patch_logits, patch_temp, iterations=self.sinkhorn_iterations))
        cls_targets = self.dino.teacher_probabilities(cls_logits, epoch)
        patch_targets = self.ibot.teacher_probabilities(patch_logits, patch_temp)
        self.dino.update_center(cls_logits)
        self.ibot.update_center(patch_logits)
        return cls_targets, patch_targets

    def forward(self, cls_logits: torch.Tensor, patch_logits: torch.Tensor, global_cls: torch.Tensor,
                cls_targets: torch.Tensor, patch_targets: torch.Tensor, masks: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to back-propagate, and (total, dino, ibot, koleo) of the global batch, detached, for the log.

        Parameters
        ----------
        cls_logits, patch_logits, global_cls
            The student's outputs (:class:`~dinoxfer_lib.dino.head.MaskedMultiCropWrapper`).
        cls_targets, patch_targets
            From :meth:`teacher_targets`.
        masks
            (2B, N) masks of this process's global crops, or None without the patch loss.
        """
        dino = self.dino.cross_entropy(cls_logits, cls_targets)
        zero = dino.new_zeros(())
        ibot = self.ibot(patch_logits, patch_targets, masks) if self.ibot_weight > 0 and masks is not None else zero
        koleo, world = zero, 1
        if self.koleo_weight > 0:
            for view in global_cls.chunk(2):  # never compare two crops of one image
                features, world = gather_with_local_grad(view)
                koleo = koleo + koleo_loss(features)
        total = dino + self.ibot_weight * ibot + self.koleo_weight * koleo
        # KoLeo spans the global batch on every process; DDP's gradient average divides it by the world size
        backward = total + (world - 1) * self.koleo_weight * koleo
        terms = torch.stack((total, dino, ibot, koleo)).detach().float()
        if dist.is_available() and dist.is_initialized():  # the log shows the global batch's terms
            dist.all_reduce(terms)
            terms /= dist.get_world_size()
        return backward, terms

