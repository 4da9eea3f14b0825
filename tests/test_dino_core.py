"""DINO building blocks against naive implementations written from the paper's formulas."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dinoxfer_lib.config import load_config
from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.head import DINOHead
from dinoxfer_lib.dino.health import collapse_state, teacher_statistics
from dinoxfer_lib.dino.loss import DINOLoss, teacher_temperature_schedule
from dinoxfer_lib.dino.schedules import cosine_schedule
from dinoxfer_lib.dino.train import build_networks, clip_gradients, parameter_groups, update_teacher
from dinoxfer_lib.errors import ConfigError


def naive_dino_loss(student, teacher, center, *, n_crops, student_temp, teacher_temp):
    """Official DINOLoss.forward as a double loop over (teacher view, student view) pairs."""
    s = (student / student_temp).chunk(n_crops)
    t = F.softmax((teacher - center) / teacher_temp, dim=-1).chunk(2)
    total, pairs = 0.0, 0
    for iq, q in enumerate(t):
        for v in range(n_crops):
            if v == iq:
                continue
            total += torch.sum(-q * F.log_softmax(s[v], dim=-1), dim=-1).mean()
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("student_temp,teacher_temp,momentum", [(0.1, 0.04, 0.9), (0.2, 0.07, 0.5)])
def test_loss_and_centre_match_the_naive_formula(student_temp, teacher_temp, momentum):
    torch.manual_seed(0)
    n_crops, batch, k = 4, 5, 32
    student, teacher = torch.randn(n_crops * batch, k), torch.randn(2 * batch, k)
    loss_fn = DINOLoss(k, n_crops=n_crops, teacher_temps=np.array([teacher_temp]), student_temp=student_temp,
                       center_momentum=momentum)
    loss_fn.center.copy_(torch.randn(1, k) * 0.1)
    center = loss_fn.center.clone()
    expected = naive_dino_loss(student, teacher, center, n_crops=n_crops, student_temp=student_temp,
                               teacher_temp=teacher_temp)
    assert torch.allclose(loss_fn(student, teacher, epoch=0), expected, atol=1e-5)
    assert torch.allclose(loss_fn.center, center * momentum + teacher.mean(0, keepdim=True) * (1 - momentum), atol=1e-6)


def test_teacher_temperature_warms_up_linearly_then_stays():
    temps = teacher_temperature_schedule(0.04, 0.07, 3, 5)
    assert np.allclose(temps, [0.04, 0.055, 0.07, 0.07, 0.07])


def test_cosine_schedule_warmup_and_end():
    values = cosine_schedule(1.0, 0.1, epochs=4, steps_per_epoch=5, warmup_epochs=1)
    assert len(values) == 20
    assert np.allclose(values[:5], np.linspace(0, 1, 5))
    assert values[5] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1, abs=0.02)
    assert np.all(np.diff(values[5:]) <= 0)


def test_head_shapes_fixed_weight_g_and_official_names():
    head = DINOHead(16, 64, hidden_dim=32, bottleneck_dim=8, layers=3, norm_last_layer=True)
    out = head(torch.randn(7, 16))
    assert out.shape == (7, 64)
    assert out.abs().max() <= 1 + 1e-5  # unit bottleneck · unit prototypes (g = 1): cosine logits
    assert not head.last_layer.weight_g.requires_grad and torch.all(head.last_layer.weight_g == 1)
    names = set(head.state_dict())
    assert {"last_layer.weight_g", "last_layer.weight_v", "mlp.0.weight", "mlp.4.bias"} <= names
    assert DINOHead(16, 64, norm_last_layer=False).last_layer.weight_g.requires_grad


def test_multicrop_wrapper_groups_views_by_size():
    cfg = DinoConfig(out_dim=32, hidden_dim=16, bottleneck_dim=8)
    student, teacher = build_networks(cfg, arch="vit_micro", img_size=16, in_chans=2)
    out = student([torch.rand(4, 2, 16, 16), torch.rand(6, 2, 8, 8)])
    assert out.shape == (10, 32)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), teacher.state_dict().values()))


def test_parameter_groups_leave_biases_and_norms_undecayed():
    student, _ = build_networks(DinoConfig(out_dim=32, hidden_dim=16, bottleneck_dim=8), arch="vit_micro",
                                img_size=16, in_chans=2)
    decay, no_decay = parameter_groups(student)
    names = {id(p): n for n, p in student.named_parameters()}
    assert all(p.ndim > 1 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert "backbone.norm.weight" in undecayed and "backbone.blocks.0.attn.qkv.bias" in undecayed
    assert "head.last_layer.weight_g" not in undecayed  # frozen: in no group at all


def test_per_parameter_clipping_matches_the_official_loop():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(3)]
    for scale, p in zip((0.1, 10.0, 100.0), params):
        p.grad = torch.randn_like(p) * scale
    expected = []
    for p in params:  # official utils.clip_gradients
        norm = p.grad.norm(2)
        coef = 3.0 / (norm + 1e-6)
        expected.append(p.grad * coef if coef < 1 else p.grad.clone())
    clip_gradients(params, 3.0, "per_parameter")
    for p, e in zip(params, expected):
        assert torch.allclose(p.grad, e)
    assert params[0].grad.norm() < 3 and params[2].grad.norm() == pytest.approx(3.0, rel=1e-4)


def test_foreach_ema_matches_a_python_loop():
    torch.manual_seed(0)
    student, teacher = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    expected = [0.9 * t.detach() + 0.1 * s.detach() for s, t in zip(student.parameters(), teacher.parameters())]
    update_teacher(student, teacher, 0.9)
    assert all(torch.allclose(t, e) for t, e in zip(teacher.parameters(), expected))


def test_collapse_detector():
    k = 64
    uniform = torch.full((10, k), 1 / k)
    stats = teacher_statistics(uniform, torch.zeros(1, k))
    assert stats[0].item() == pytest.approx(math.log(k), rel=1e-4)
    assert collapse_state(stats[0].item(), stats[2].item(), k) == "uniform"
    one_hot = F.one_hot(torch.full((10,), 3), k).float()
    stats = teacher_statistics(one_hot, torch.zeros(1, k))
    assert stats[2].item() == 1.0 and collapse_state(stats[0].item(), stats[2].item(), k) == "one_hot"
    spread = F.one_hot(torch.arange(10), k).float() * 0.9 + 0.1 / k
    stats = teacher_statistics(spread, torch.zeros(1, k))
    assert collapse_state(stats[0].item(), stats[2].item(), k) == ""
    assert stats[1].item() > 0  # the two halves (global views) disagree


def test_config_defaults_are_official_and_profiles_load():
    cfg = DinoConfig()
    assert (cfg.out_dim, cfg.teacher_temp, cfg.student_temp, cfg.center_momentum) == (65536, 0.04, 0.1, 0.9)
    assert (cfg.momentum_teacher, cfg.lr, cfg.min_lr, cfg.warmup_epochs) == (0.996, 5e-4, 1e-6, 10)
    assert (cfg.global_crop_scale, cfg.local_crop_scale, cfg.local_crop_size) == ((0.4, 1.0), (0.05, 0.4), 96)
    for profile in ("smoke", "demo", "paper"):
        load_config(profile).dino.validate("dino")
    assert load_config("paper").dino.epochs == 300


@pytest.mark.parametrize("override,key", [({"teacher_temp": 0}, "dino.teacher_temp"),
                                          ({"global_crop_scale": [0.5, 0.2]}, "dino.global_crop_scale"),
                                          ({"warmup_epochs": 400}, "dino.warmup_epochs"),
                                          ({"flip_p": 1.5}, "dino.flip_p")])
def test_config_rejects_impossible_values(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config("smoke", {"dino": override})


def test_dino_loss_with_sinkhorn_targets_gives_every_prototype_its_share():
    torch.manual_seed(0)
    logits = torch.randn(8, 4) + torch.tensor([3.0, 0.0, 0.0, 0.0])  # one prototype favoured by every sample
    centred = DINOLoss(4, n_crops=2, teacher_temps=np.array([0.1]))
    assert centred.teacher_probabilities(logits, 0).sum(0)[0] > 6  # a fresh centre lets prototype 0 win
    official = DINOLoss(4, n_crops=2, teacher_temps=np.array([0.1]), sinkhorn_iterations=3)
    assert official.teacher_probabilities(logits, 0).sum(0)[0] < 2.5  # DINOv2's 3 iterations: about its share
    q = DINOLoss(4, n_crops=2, teacher_temps=np.array([0.1]), sinkhorn_iterations=10).teacher_probabilities(logits, 0)
    assert torch.allclose(q.sum(1), torch.ones(8), atol=1e-5)
    assert torch.allclose(q.sum(0), torch.full((4,), 2.0), atol=0.2)  # 8 samples, 4 prototypes: 2 each
