"""Adaptation regimes: LoRA wrapping, layer-wise lr decay, saving and reloading, and the fold-by-fold study."""

import copy

import numpy as np
import pytest
import torch
from peft.tuners.lora import LoraLayer
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from dinoxfer_lib.adapt import (
    AdaptConfig, AdaptedClassifier, LoraSettings, add_lora, attention_projections, cosine_schedule,
    layer_decay_groups, load_adapted, run_adaptation, save_adapted,
)
from dinoxfer_lib.data.splits import make_split
from dinoxfer_lib.errors import ConfigError, StoreError
from dinoxfer_lib.models.channels import make_encoder
from dinoxfer_lib.probes import ProbeConfig, ProbeResult, run_probe_suite
from dinoxfer_lib.probes.result import SCORE_COLUMNS

CHANNELS = ("protein", "nucleus")


def tiny_vit(depth=2, seed=0, dim=32):
    """The timm class create_backbone builds, at a test size: 16 px, 4 px patches, 2 input channels."""
    torch.manual_seed(seed)
    return VisionTransformer(img_size=16, patch_size=4, in_chans=2, num_classes=0, embed_dim=dim, depth=depth,
                             num_heads=2, dynamic_img_size=True)


def tiny_encoder(**kwargs):
    return make_encoder("native", tiny_vit(**kwargs), target_channels=CHANNELS)


def raw_images(n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(100, 4000, (n, 2, 16, 16)).astype(np.float32))


# ---- LoRA


def test_lora_wraps_exactly_the_configured_attention_projections():
    vit = add_lora(tiny_vit(), LoraSettings(targets=("qkv",)), seed=0)
    wrapped = sorted(name for name, module in vit.named_modules() if isinstance(module, LoraLayer))
    assert wrapped == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]

    vit = add_lora(tiny_vit(), LoraSettings(targets=("qkv", "proj")), seed=0)
    wrapped = sorted(name for name, module in vit.named_modules() if isinstance(module, LoraLayer))
    assert wrapped == ["blocks.0.attn.proj", "blocks.0.attn.qkv", "blocks.1.attn.proj", "blocks.1.attn.qkv"]
    assert type(vit.patch_embed.proj) is nn.Conv2d  # a bare "proj" suffix would have matched it too
    trainable = {name for name, p in vit.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)

    with pytest.raises(ConfigError, match=r"'lora.targets' = \('mlp',\)"):
        add_lora(tiny_vit(), LoraSettings(targets=("mlp",)), seed=0)
    with pytest.raises(ConfigError, match="names no attention projection"):
        attention_projections(nn.Sequential(nn.Linear(2, 2)), ("qkv",))


def test_lora_starts_as_the_pretrained_model_and_training_leaves_its_weights_unchanged():
    raw = raw_images(8)
    vit = tiny_vit()
    pretrained = {k: v.clone() for k, v in vit.state_dict().items()}
    with torch.no_grad():
        before = vit.forward_features(raw / 4000)
    add_lora(vit, LoraSettings(rank=4, targets=("qkv", "proj")), seed=0)
    with torch.no_grad():
        torch.testing.assert_close(vit.forward_features(raw / 4000), before)  # B = 0: an exact no-op at start
    optimizer = torch.optim.AdamW([p for p in vit.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        vit.forward_features(raw / 4000)[:, 0].pow(2).mean().backward()
        optimizer.step()
    state = vit.state_dict()
    for name, value in pretrained.items():  # peft keeps the frozen Linear as base_layer
        torch.testing.assert_close(state[name.replace(".qkv.", ".qkv.base_layer.").replace(
            ".attn.proj.", ".attn.proj.base_layer.")], value, rtol=0, atol=0)
    assert vit.blocks[0].attn.qkv.lora_B["default"].weight.abs().sum() > 0


# ---- layer-wise lr decay


def test_layer_decay_gives_each_block_its_decayed_lr():
    vit = tiny_vit(depth=3)
    groups = layer_decay_groups(vit, lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    params = dict(vit.named_parameters())
    for i in range(3):  # block i of depth 3: lr * 0.5 ** (2 - i), the last block at lr
        assert lr_of[id(params[f"blocks.{i}.attn.qkv.weight"])] == pytest.approx(1e-3 * 0.5 ** (2 - i))
        assert lr_of[id(params[f"blocks.{i}.mlp.fc2.bias"])] == pytest.approx(1e-3 * 0.5 ** (2 - i))
    for stem in ("patch_embed.proj.weight", "cls_token", "pos_embed"):
        assert lr_of[id(params[stem])] == pytest.approx(1e-3 * 0.5**3)
    assert lr_of[id(params["norm.weight"])] == pytest.approx(1e-3)
    assert decay_of[id(params["blocks.0.attn.qkv.weight"])] == 0.05
    assert decay_of[id(params["blocks.0.attn.qkv.bias"])] == decay_of[id(params["pos_embed"])] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(params)


def test_cosine_schedule_runs_every_group_from_its_lr_to_zero():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    scheduler = cosine_schedule(optimizer, 10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.5, 0.05])
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.0, 0.0])


# ---- saving and reloading


@pytest.mark.parametrize("regime", ["frozen", "lora", "full"])
def test_adapted_model_saves_and_reloads_with_identical_outputs(regime, tmp_path):
    encoder = tiny_encoder()
    pristine = {k: v.clone() for k, v in encoder.state_dict().items()}
    work = encoder if regime == "frozen" else copy.deepcopy(encoder)
    if regime == "lora":
        add_lora(work.backbone, LoraSettings(rank=2), seed=3)
    torch.manual_seed(1)
    model = AdaptedClassifier.build(work, 3, mean=torch.randn(32), std=torch.rand(32) + 0.5, regime=regime,
                                    hidden=(8,), dropout=0.5)
    with torch.no_grad():  # move every trained weight away from its initial value
        for p in model.parameters():
            if p.requires_grad or regime == "full":
                p.add_(0.1 * torch.randn_like(p))
    raw = raw_images(5)
    expected = model.eval()(raw)
    save_adapted(model, tmp_path / "m")
    reloaded = load_adapted(tmp_path / "m", encoder)
    torch.testing.assert_close(reloaded(raw), expected, rtol=0, atol=0)
    if regime != "frozen":  # the pretrained encoder it was reloaded onto is not modified
        for name, value in encoder.state_dict().items():
            torch.testing.assert_close(value, pristine[name], rtol=0, atol=0)
    with pytest.raises(StoreError, match="encoder dim"):
        load_adapted(tmp_path / "m", make_encoder("native", tiny_vit(dim=16), target_channels=CHANNELS))


# ---- the study


@pytest.fixture(scope="module")
def study_data():
    rng = np.random.default_rng(0)
    labels = rng.random((90, 3)) < 0.4
    images = rng.integers(100, 400, (90, 2, 16, 16)).astype(np.uint16)
    for k in range(3):  # each class brightens its own quadrant of the protein channel
        y, x = 8 * (k % 2), 8 * (k // 2)
        images[labels[:, k], 0, y:y + 8, x:x + 8] += 300
    return images, labels, make_split(labels, n_folds=3, seed=0)


FAST = AdaptConfig(regimes=("frozen", "lora", "full"), folds=2, epochs=3, batch_size=16, lr=3e-3, full_lr=1e-3,
                   lora=LoraSettings(rank=2))
HEAD = ProbeConfig(hidden=(16,), dropout=0.1)


def test_run_adaptation_scores_each_regime_as_the_probes_do(study_data):
    images, labels, split = study_data
    encoder = tiny_encoder()
    pristine = {k: v.clone() for k, v in encoder.state_dict().items()}
    result = run_adaptation(encoder, images, labels, split=split, config=FAST, probe=HEAD, class_names="abc",
                            set_name="tiny", seed=0)
    scores = result.probe.scores
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert set(scores["probe"]) == {"frozen", "lora", "full"} and set(scores["fold"]) == {0, 1}
    assert result.probe.probs("tiny", "lora").shape == (2, len(split.test), 3)
    head = 32 * 16 + 16 + 16 * 3 + 3
    lora = 2 * 2 * (32 + 96)  # 2 blocks x rank 2 x (in + out) of qkv
    backbone = sum(p.numel() for p in encoder.parameters())
    costs = result.costs.set_index(["probe", "fold"])
    assert costs.loc[("frozen", 0), "trainable_params"] == head
    assert costs.loc[("lora", 0), "trainable_params"] == head + lora
    assert costs.loc[("full", 0), "trainable_params"] == head + backbone
    assert len(result.probe.history) == 3 * 2 * FAST.epochs
    # the caller's encoder: weights and modules untouched
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(value, pristine[name], rtol=0, atol=0)
    assert type(encoder.backbone.blocks[0].attn.qkv) is nn.Linear
    # Table III's machinery shows the regimes beside the frozen probe
    frozen = run_probe_suite({"tiny": np.zeros((90, 4), np.float32) + np.arange(90)[:, None]}, labels, split=split,
                             config=ProbeConfig(hidden=(8,), epochs=1), class_names="abc")
    table = ProbeResult.concat([frozen, result.probe]).table()
    assert list(table["probe"]) == ["mlp", "frozen", "lora", "full"]
    assert set(result.table()["trainable_params"]) == {head, head + lora, head + backbone}

    # a regime's numbers do not depend on the regimes trained beside it
    alone = run_adaptation(tiny_encoder(), images, labels, split=split, config=AdaptConfig(
        regimes=("lora",), folds=1, epochs=3, batch_size=16, lr=3e-3, lora=LoraSettings(rank=2)), probe=HEAD,
        class_names="abc", set_name="tiny", seed=0)
    np.testing.assert_allclose(alone.probe.probs("tiny", "lora")[0], result.probe.probs("tiny", "lora")[0],
                               rtol=1e-5, atol=1e-6)


def test_adaptation_learns_the_planted_classes(study_data):
    images, labels, split = study_data
    config = AdaptConfig(regimes=("lora", "full"), folds=1, epochs=20, batch_size=16, lr=1e-2, full_lr=3e-3)
    result = run_adaptation(tiny_encoder(), images, labels, split=split, config=config, probe=HEAD,
                            class_names="abc", set_name="tiny", seed=0)
    history = result.probe.history
    for regime in ("lora", "full"):
        loss = history[history["probe"] == regime]["loss"].to_numpy()
        assert loss[-1] < 0.8 * loss[0]
    table = result.table().set_index("probe")
    assert (table["train_f1_mean"] > 0.6).all()


def test_lp_ft_starts_lora_and_full_from_the_frozen_regime_s_trained_head(study_data, tmp_path):
    from safetensors.torch import load_file

    images, labels, split = study_data
    config = AdaptConfig(regimes=("frozen", "lora", "full"), folds=1, head_epochs=3, epochs=1, images_per_epoch=16,
                         batch_size=16, lr=1e-9, full_lr=1e-9, weight_decay=0.0, train_score_images=12,
                         lora=LoraSettings(rank=2))
    result = run_adaptation(tiny_encoder(), images, labels, split=split, config=config, probe=HEAD,
                            class_names="abc", set_name="tiny", seed=0, save_dir=tmp_path)
    heads = {regime: {k: v for k, v in load_file(tmp_path / regime / "fold0" / "weights.safetensors").items()
                      if k.startswith("head.")} for regime in config.regimes}
    for regime in ("lora", "full"):  # an lr of 1e-9 leaves the copied head where the frozen regime left it
        for name, value in heads["frozen"].items():
            torch.testing.assert_close(heads[regime][name], value, rtol=0, atol=1e-6)
    costs = result.costs.set_index("probe")
    train = len(split.folds[0][0])
    assert costs.loc["frozen", "steps"] == 3 * -(-train // 16) and costs.loc["lora", "steps"] == 1
    assert costs.loc["lora", "head_s"] == costs.loc["frozen", "train_s"]
    assert (costs["predicted_images"] == 12 + len(split.folds[0][1]) + len(split.test)).all()
    untrained = run_adaptation(tiny_encoder(), images, labels, split=split, config=AdaptConfig(
        regimes=("frozen",), folds=1, head_epochs=0, epochs=1, images_per_epoch=16, batch_size=16), probe=HEAD,
        class_names="abc", set_name="tiny", seed=0)
    assert untrained.costs.loc[0, "steps"] == 1 and untrained.costs.loc[0, "head_s"] == 0
