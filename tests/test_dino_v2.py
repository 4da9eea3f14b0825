"""DINOv2's pieces against their formulas, written out independently here, on small tensors."""

import dataclasses
import math
import random

import numpy as np
import pytest
import torch

from dinoxfer_lib.config import load_config
from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.dinov2 import DINOv2Loss
from dinoxfer_lib.dino.ibot import IBOTPatchLoss
from dinoxfer_lib.dino.koleo import koleo_loss
from dinoxfer_lib.dino.masked_vit import add_mask_token, vit_tokens
from dinoxfer_lib.dino.masking import block_masks, mask_weights
from dinoxfer_lib.dino.sinkhorn import sinkhorn_knopp
from dinoxfer_lib.dino.train import build_networks
from dinoxfer_lib.errors import ConfigError
from dinoxfer_lib.models.backbones import ARCHITECTURES, create_backbone


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------------
# block masks


def test_masks_cover_the_ratio_range_on_the_configured_share_of_crops():
    grid, n_crops = (14, 14), 40
    masks = block_masks(n_crops, grid, ratio_range=(0.1, 0.5), sample_probability=0.5, rng=random.Random(0))
    assert masks.shape == (40, 196) and masks.dtype == torch.bool
    counts = masks.sum(dim=1)
    assert (counts > 0).sum() == 20  # int(40 * 0.5) crops masked, the others whole
    shares = counts[counts > 0].float() / 196
    assert shares.max() <= 0.5 and shares.min() >= 0.08  # a mask may fall a few patches short, never over
    assert shares.min() < 0.2 and shares.max() > 0.4  # spread over the range, not one ratio for all
    again = block_masks(n_crops, grid, ratio_range=(0.1, 0.5), sample_probability=0.5, rng=random.Random(0))
    other = block_masks(n_crops, grid, ratio_range=(0.1, 0.5), sample_probability=0.5, rng=random.Random(1))
    assert torch.equal(masks, again) and not torch.equal(masks, other)


def test_masks_are_blocks_not_scattered_patches():
    masks = block_masks(20, (14, 14), ratio_range=(0.3, 0.3), sample_probability=1.0, rng=random.Random(2))
    grids = masks.view(20, 14, 14)
    neighbour = torch.zeros_like(grids)  # a masked patch with a masked 4-neighbour
    neighbour[:, 1:] |= grids[:, :-1]
    neighbour[:, :-1] |= grids[:, 1:]
    neighbour[:, :, 1:] |= grids[:, :, :-1]
    neighbour[:, :, :-1] |= grids[:, :, 1:]
    # rectangles: almost every masked patch touches another (a last one-patch block may fill up the count); about
    # 70 % would for the same number of patches drawn at random
    assert (grids & neighbour).sum() >= 0.98 * grids.sum()


@pytest.mark.parametrize("probability,masked", [(0.0, 0), (1.0, 8)])
def test_mask_sample_probability_bounds(probability, masked):
    masks = block_masks(8, (6, 6), ratio_range=(0.2, 0.4), sample_probability=probability, rng=random.Random(0))
    assert ((masks.sum(dim=1) > 0).sum()) == masked


def test_mask_weights_give_each_masked_crop_one_unit():
    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    weights = mask_weights(masks)
    assert torch.allclose(weights, torch.tensor([0.5, 0.5, 0.25, 0.25, 0.25, 0.25]))


# ---------------------------------------------------------------------------------------------------------------------
# loss terms against their formulas


def test_ibot_loss_and_centre_match_the_formula():
    torch.manual_seed(0)
    k, temp_s, temp_t, momentum = 12, 0.1, 0.07, 0.9
    masks = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    m = int(masks.sum())
    student, teacher, center = torch.randn(m, k), torch.randn(m, k), torch.randn(1, k) * 0.1
    loss_fn = IBOTPatchLoss(k, student_temp=temp_s, center_momentum=momentum)
    loss_fn.center.copy_(center)
    targets = loss_fn.teacher_probabilities(teacher, temp_t)
    loss = loss_fn(student, targets, masks)
    loss_fn.update_center(teacher)

    total, row = 0.0, 0  # per crop: mean over its masked patches of the cross-entropy; crops without a mask add 0
    for crop in masks:
        n = int(crop.sum())
        crop_loss = 0.0
        for _ in range(n):
            q = torch.softmax((teacher[row] - center[0]) / temp_t, dim=0)
            crop_loss += -(q * torch.log_softmax(student[row] / temp_s, dim=0)).sum() / n
            row += 1
        total += crop_loss
    assert loss.item() == pytest.approx(total.item() / len(masks), rel=1e-5)
    assert torch.allclose(loss_fn.center, momentum * center + (1 - momentum) * teacher.mean(0, keepdim=True))
    before = loss_fn.center.clone()
    loss_fn.update_center(teacher[:0])  # a step without masked patches leaves the centre where it is
    assert torch.equal(loss_fn.center, before)


def naive_koleo(x, eps=1e-8):
    x = x / x.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(len(x)):
        distances = [float("inf") if j == i else float((x[i] - x[j]).detach().norm()) for j in range(len(x))]
        j = int(np.argmin(distances))
        total = total - torch.log((x[i] - x[j]).norm() + eps)
    return total / len(x)


def test_koleo_matches_the_nearest_neighbour_formula_in_value_and_gradient():
    torch.manual_seed(0)
    x = torch.randn(7, 5, dtype=torch.float64)
    a, b = x.clone().float().requires_grad_(), x.clone().requires_grad_()
    loss, expected = koleo_loss(a), naive_koleo(b)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    expected.backward()
    assert torch.allclose(a.grad.double(), b.grad, atol=1e-5)  # the gradient reaches both ends of each pair
    spread, crowded = torch.eye(4), torch.eye(4) * 0.01 + 1
    assert koleo_loss(spread) < koleo_loss(crowded)  # lower when the batch is spread out


def naive_sinkhorn(logits, temp, iterations):
    """DINOv2's sinkhorn_knopp_teacher on one process: Q = exp(logits / temp)^T, K x B."""
    q = torch.exp(logits.double() / temp).t()
    k, b = q.shape
    q = q / q.sum()
    for _ in range(iterations):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).t()


def test_sinkhorn_gives_an_equipartition_and_matches_dinov2s_iteration():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    targets = sinkhorn_knopp(logits, 0.5, iterations=3)
    assert torch.allclose(targets.double(), naive_sinkhorn(logits, 0.5, 3), atol=1e-6)
    assert torch.allclose(targets.sum(dim=1), torch.ones(6))  # every sample: one unit of probability
    converged = sinkhorn_knopp(logits, 0.5, iterations=200)
    assert torch.allclose(converged.sum(dim=0), torch.full((4,), 6 / 4), atol=1e-4)  # every prototype B / K


def test_sinkhorn_known_answers():
    uniform = sinkhorn_knopp(torch.log(torch.outer(torch.tensor([1.0, 2, 3]), torch.tensor([1.0, 5]))), 1.0,
                             iterations=1)
    assert torch.allclose(uniform, torch.full((3, 2), 0.5))  # rank one: every prototype equally likely
    a, b, c, d = 1.0, 2.0, 3.0, 4.0  # 2 x 2: the limit keeps the cross ratio, x^2 / (1 - x)^2 = ad / bc
    limit = sinkhorn_knopp(torch.log(torch.tensor([[a, b], [c, d]])), 1.0, iterations=100)
    r = math.sqrt(a * d / (b * c))
    x = r / (1 + r)
    assert torch.allclose(limit, torch.tensor([[x, 1 - x], [1 - x, x]]), atol=1e-5)


def test_dinov2_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    config = DinoConfig(objective="dinov2", out_dim=16, n_local_crops=2, ibot_loss_weight=0.7, koleo_loss_weight=0.3,
                        centering="sinkhorn_knopp", epochs=1, warmup_epochs=0)
    loss_fn = DINOv2Loss(config, n_crops=4)
    b, masks = 3, torch.tensor([[1, 1, 0, 0]] * 3 + [[0, 0, 0, 0]] * 3, dtype=torch.bool)
    teacher_cls, teacher_patches = torch.randn(2 * b, 16), torch.randn(6, 16)
    cls_targets, patch_targets = loss_fn.teacher_targets(teacher_cls, teacher_patches, epoch=0)
    assert torch.allclose(cls_targets, sinkhorn_knopp(teacher_cls, config.teacher_temp, iterations=3))
    cls_logits, patch_logits, global_cls = torch.randn(4 * b, 16), torch.randn(6, 16), torch.randn(2 * b, 8)
    loss, (total, dino, ibot, koleo) = loss_fn(cls_logits, patch_logits, global_cls, cls_targets, patch_targets, masks)
    assert dino == loss_fn.dino.cross_entropy(cls_logits, cls_targets)
    assert ibot == loss_fn.ibot(patch_logits, patch_targets, masks)
    assert koleo.item() == pytest.approx((koleo_loss(global_cls[:b]) + koleo_loss(global_cls[b:])).item())
    assert loss.item() == pytest.approx(total.item()) == pytest.approx((dino + 0.7 * ibot + 0.3 * koleo).item())


def test_patch_targets_use_their_own_temperature_and_centre():
    config = DinoConfig(objective="dinov2", out_dim=16, teacher_temp=0.07, warmup_teacher_temp=0.04,
                        warmup_teacher_temp_epochs=2, ibot_teacher_temp=0.2, epochs=4, warmup_epochs=0)
    loss_fn = DINOv2Loss(config, n_crops=4)
    assert loss_fn.patch_teacher_temps == pytest.approx([0.04, 0.2, 0.2, 0.2])  # warm-up shared with the CLS
    torch.manual_seed(0)
    cls, patches = torch.randn(6, 16), torch.randn(5, 16)
    loss_fn.ibot.center.copy_(torch.randn(1, 16))
    centre = loss_fn.ibot.center.clone()
    _, patch_targets = loss_fn.teacher_targets(cls, patches, epoch=3)
    assert torch.allclose(patch_targets, torch.softmax((patches - centre) / 0.2, dim=-1))


# ---------------------------------------------------------------------------------------------------------------------
# masked forward and networks


def by_hand_masked_tokens(backbone, images, masks):
    """DINOv2's prepare_tokens_with_masks + blocks + norm, written out for timm's parameters."""
    x = backbone.patch_embed.proj(images).flatten(2).transpose(1, 2)  # (B, N, D)
    x = torch.where(masks[..., None], backbone.mask_token, x)
    cls = backbone.cls_token.expand(len(x), -1, -1)
    if backbone.reg_token is None:
        x = torch.cat((cls, x), dim=1) + backbone.pos_embed
    else:  # timm's DINOv2 registers: positions for the patches only (the CLS position is folded into cls_token)
        x = torch.cat((cls, backbone.reg_token.expand(len(x), -1, -1), x + backbone.pos_embed), dim=1)
    x = backbone.norm(backbone.blocks(x))
    return x[:, 0], x[:, backbone.num_prefix_tokens:]


@pytest.mark.parametrize("arch", ["vit_micro", "vit_small_patch14_reg4_dinov2"])
def test_masked_forward_puts_the_mask_token_before_the_positions(arch, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, arch, dataclasses.replace(ARCHITECTURES[arch], depth=1))
    torch.manual_seed(0)
    patch = ARCHITECTURES[arch].patch_size
    backbone = create_backbone(arch, in_chans=2, img_size=4 * patch).eval()
    token = add_mask_token(backbone)
    with torch.no_grad():
        token.normal_()
    images = torch.randn(3, 2, 4 * patch, 4 * patch)
    masks = torch.rand(3, 16) < 0.4
    cls, patches = vit_tokens(backbone, images, masks)
    expected_cls, expected_patches = by_hand_masked_tokens(backbone, images, masks)
    assert patches.shape == (3, 16, backbone.embed_dim)  # registers are not patches
    assert torch.allclose(cls, expected_cls, atol=1e-5) and torch.allclose(patches, expected_patches, atol=1e-5)
    plain_cls, plain_patches = vit_tokens(backbone, images)
    none_cls, _ = vit_tokens(backbone, images, torch.zeros_like(masks))
    assert torch.equal(plain_cls, none_cls) and not torch.allclose(plain_cls, cls)
    patches.sum().backward()
    assert token.grad is not None and token.grad.abs().sum() > 0


@pytest.mark.parametrize("separate", [False, True])
def test_dinov2_networks_layerscale_mask_token_and_heads(separate):
    config = DinoConfig(objective="dinov2", out_dim=32, hidden_dim=16, bottleneck_dim=8, ibot_separate_head=separate,
                        ibot_out_dim=24, ibot_hidden_dim=16, ibot_bottleneck_dim=8)
    torch.manual_seed(0)
    student, teacher = build_networks(config, arch="vit_micro", img_size=16, in_chans=2)
    names = set(student.state_dict())
    assert {"backbone.mask_token", "backbone.blocks.0.ls1.gamma", "dino_head.last_layer.weight_v"} <= names
    assert any(n.startswith("ibot_head.") for n in names) == separate
    assert torch.all(student.backbone.blocks[0].ls1.gamma == 1e-5)
    views = [torch.rand(4, 2, 16, 16), torch.rand(6, 2, 8, 8)]
    masks = torch.tensor([[1, 0, 0, 1]] * 2 + [[0, 0, 0, 0]] * 2, dtype=torch.bool)
    cls_logits, patch_logits, global_cls = student(views, masks, mask_inputs=True)
    assert cls_logits.shape == (10, 32) and patch_logits.shape == (4, 24 if separate else 32)
    assert global_cls.shape == (4, 192)
    assert all(not p.requires_grad for p in teacher.parameters())
    without = build_networks(dataclasses.replace(config, ibot_loss_weight=0.0), arch="vit_micro", img_size=16,
                             in_chans=2)[0]
    assert "backbone.mask_token" not in without.state_dict()  # no patch loss, no mask token (DDP: no unused weight)


def test_dinov2_defaults_are_the_official_ones():
    c = DinoConfig()
    assert c.objective == "dino"
    assert (c.ibot_loss_weight, tuple(c.mask_ratio_range), c.mask_sample_probability) == (1.0, (0.1, 0.5), 0.5)
    assert (c.ibot_separate_head, c.ibot_out_dim, c.ibot_hidden_dim, c.ibot_bottleneck_dim) == (False, 65536, 2048, 256)
    assert (c.koleo_loss_weight, c.centering, c.sinkhorn_iterations, c.layerscale_init) == (
        0.1, "centering", 3, 1e-5)


@pytest.mark.parametrize("override,key", [
    ({"objective": "dinov3"}, "dino.objective"),
    ({"centering": "sinkhorn"}, "dino.centering"),
    ({"mask_ratio_range": [0.5, 0.2]}, "dino.mask_ratio_range"),
    ({"mask_sample_probability": 1.5}, "dino.mask_sample_probability"),
    ({"objective": "dinov2", "mask_sample_probability": 0.0}, "dino.mask_sample_probability"),
    ({"koleo_loss_weight": -0.1}, "dino.koleo_loss_weight"),
    ({"ibot_loss_weight": float("inf")}, "dino.ibot_loss_weight"),
    ({"sinkhorn_iterations": 0}, "dino.sinkhorn_iterations"),
    ({"ibot_teacher_temp": 0.0}, "dino.ibot_teacher_temp"),
])
def test_dinov2_settings_are_validated(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config("smoke", {"dino": override})
