"""EM segmentation: IoU and Dice + BCE against their formulas, patch tokens, heads, joint sampling, the study."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score
from timm.models.vision_transformer import VisionTransformer

from dinoxfer_lib.data.em import make_lucchi_like, make_vnc_like
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from dinoxfer_lib.models.channels import Scaling, make_encoder
from dinoxfer_lib.seg import (
    SegConfig, dice_bce_loss, foreground_iou, joint_draws, make_seg_head, patch_tokens, predict_masks,
    run_seg_study, train_segmenter,
)

EIGHT_BIT = Scaling(bounds=((0.0,), (255.0,)))


def tiny_encoder(depth=2, dim=32, seed=0):
    """A 3-slot (ImageNet-like) ViT with 4 px patches; EM's one channel is replicated into its slots."""
    torch.manual_seed(seed)
    vit = VisionTransformer(img_size=32, patch_size=4, in_chans=3, num_classes=0, embed_dim=dim, depth=depth,
                            num_heads=2, dynamic_img_size=True)
    return make_encoder("replication", vit, target_channels=("em",), slots=("red", "green", "blue"),
                        scaling=EIGHT_BIT, mean=IMAGENET_MEAN, std=IMAGENET_STD)


# ---- scores and loss


def test_foreground_iou_hand_case_and_scikit_learn():
    truth = np.array([[[1, 1, 0], [0, 0, 0]], [[0, 1, 0], [0, 0, 0]]], bool)
    predicted = np.array([[[1, 0, 0], [0, 0, 1]], [[0, 1, 1], [0, 0, 0]]], bool)
    assert foreground_iou(predicted, truth) == pytest.approx(2 / 5)  # pooled: 2 shared of 5 marked pixels
    rng = np.random.default_rng(0)
    truth, predicted = rng.random((5, 7, 9)) < 0.2, rng.random((5, 7, 9)) < 0.3
    assert foreground_iou(predicted, truth) == pytest.approx(jaccard_score(truth.ravel(), predicted.ravel()))
    assert np.isnan(foreground_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)))
    with pytest.raises(DataError, match="differ in shape"):
        foreground_iou(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


def test_dice_bce_loss_against_its_formula():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 4, 5))
    masks = rng.random((3, 4, 5)) < 0.3
    masks[2] = False  # an image without foreground
    p = 1 / (1 + np.exp(-logits))
    bce = -np.mean(masks * np.log(p) + (1 - masks) * np.log(1 - p))
    dice = [(2 * (p[i] * masks[i]).sum() + 1) / (p[i].sum() + masks[i].sum() + 1) for i in range(3)]
    expected = 0.3 * bce + 0.7 * (1 - np.mean(dice))
    got = dice_bce_loss(torch.tensor(logits), torch.tensor(masks), bce_weight=0.3, dice_weight=0.7)
    assert got.item() == pytest.approx(expected, rel=1e-10)


# ---- tokens and heads


def test_patch_tokens_are_the_encoder_s_last_block_tokens():
    encoder = tiny_encoder(depth=4)
    raw = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (3, 1, 32, 24)).astype(np.float32))
    tokens = patch_tokens(encoder, raw)
    assert tokens.shape == (3, 32, 8, 6)
    # the encoder's Cell-DINO feature ends with the mean patch token of the last block, prepared the same way
    pooled = make_encoder("replication", encoder.backbone, target_channels=("em",), slots=encoder.slots,
                          scaling=EIGHT_BIT, mean=IMAGENET_MEAN, std=IMAGENET_STD, feature="cls4_patchmean")
    with torch.no_grad():
        torch.testing.assert_close(tokens.mean(dim=(2, 3)), pooled(raw)[:, -32:], rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="single-channel"):
        patch_tokens(encoder, raw.expand(-1, 2, -1, -1))


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_heads_give_one_logit_per_pixel(kind):
    head = make_seg_head(kind, 16, width=8)
    assert head(torch.randn(2, 16, 4, 3), (56, 42)).shape == (2, 56, 42)  # 14 px patches: not a power of two
    with pytest.raises(ConfigError, match="unknown segmentation head"):
        make_seg_head("unet", 16)


# ---- joint sampling


@pytest.mark.parametrize(("sampling", "first_share"), [("balanced", 0.5), ("proportional", 0.25)])
def test_joint_draws_take_each_domain_in_the_configured_proportion(sampling, first_share):
    generator = torch.Generator().manual_seed(0)
    drawn = joint_draws([100, 300], 40_000, sampling=sampling, generator=generator)
    assert (drawn < 100).mean() == pytest.approx(first_share, abs=0.01)
    counts = np.bincount(drawn, minlength=400)
    assert counts[:100].std() / counts[:100].mean() < 0.2  # uniform within a domain
    assert counts[100:].std() / counts[100:].mean() < 0.2


# ---- training and the study


@pytest.fixture(scope="module")
def em_pair():
    small = dict(n_stacks=6, n_slices=4, size=32, pixel_nm=20.0, test_stacks=2, seed=0)
    return {"lucchi": make_lucchi_like(**small), "vnc": make_vnc_like(**small)}


def test_trained_head_beats_an_untrained_one(em_pair):
    train, test = em_pair["lucchi"].split("train"), em_pair["lucchi"].split("test")
    config = SegConfig(head="linear", epochs=30, batch_size=8, lr=1e-2)
    untrained, _ = train_segmenter(tiny_encoder(), [train], config=replace(config, epochs=1, lr=1e-12),
                                   regime="frozen")
    trained, loss = train_segmenter(tiny_encoder(), [train], config=config, regime="frozen")
    assert loss[-1] < 0.7 * loss[0]

    def iou(model):
        return foreground_iou(predict_masks(model, test.images, threshold=0.5, batch_size=8), test.masks)

    assert iou(trained) > max(0.5, iou(untrained) + 0.2)


def test_seg_study_gives_004_s_table(em_pair):
    encoder = tiny_encoder()
    pristine = {k: v.clone() for k, v in encoder.state_dict().items()}
    config = SegConfig(head="linear", epochs=1, batch_size=8, lr=1e-3)
    result = run_seg_study(encoder, em_pair, config=config, n_examples=2)
    table = result.table()
    assert list(table.columns) == ["lucchi", "vnc"]
    assert list(table.index) == [(s, r) for s in ("lucchi", "vnc", "lucchi+vnc") for r in ("frozen", "lora")]
    assert table.notna().all().all() and ((table >= 0) & (table <= 1)).all().all()
    scores = result.scores.set_index(["train_set", "regime", "test_domain"])
    assert scores.loc[("vnc", "lora", "vnc"), "in_domain"] and not scores.loc[("vnc", "lora", "lucchi"), "in_domain"]
    assert result.examples[("lucchi+vnc", "frozen", "vnc")].shape == (2, 32, 32)
    costs = result.costs.set_index(["train_set", "regime"])
    lora = 2 * 8 * (32 + 96)  # 2 blocks x rank 8 x (in + out) of qkv
    assert costs.loc[("lucchi", "lora"), "trainable_params"] == costs.loc[("lucchi", "frozen"),
                                                                          "trainable_params"] + lora
    for name, value in encoder.state_dict().items():  # the pretrained encoder is left as it was
        torch.testing.assert_close(value, pristine[name], rtol=0, atol=0)

    with pytest.raises(DataError, match=r"names domains \['vnc'\]"):
        run_seg_study(encoder, {"lucchi": em_pair["lucchi"]}, config=config)


def test_lp_ft_starts_each_lora_model_from_its_training_set_s_frozen_head(em_pair):
    train = em_pair["vnc"].split("train")
    config = SegConfig(head="linear", epochs=1, batch_size=8, lr=1e-9, weight_decay=0.0)
    probed, _ = train_segmenter(tiny_encoder(), [train], config=replace(config, lr=1e-2), regime="frozen", epochs=3)
    lora, _ = train_segmenter(tiny_encoder(), [train], config=config, regime="lora", head=probed.head)
    for name, value in probed.head.named_parameters():  # an lr of 1e-9 leaves the copied head in place
        torch.testing.assert_close(dict(lora.head.named_parameters())[name], value, rtol=0, atol=1e-6)

    result = run_seg_study(tiny_encoder(), em_pair, config=replace(config, head_epochs=2, lr=1e-3,
                                                                   train_sets=(("vnc",),)), n_examples=1)
    costs = result.costs.set_index("regime")
    assert costs.loc["lora", "head_s"] == costs.loc["frozen", "head_s"] == costs.loc["frozen", "train_s"]
    assert result.history.groupby("regime")["epoch"].max().to_dict() == {"frozen": 2, "lora": 1}


def test_seg_config_names_the_bad_key():
    with pytest.raises(ConfigError, match=r"'seg.train_sets'"):
        SegConfig(train_sets=(("lucchi", "em"),)).validate("seg")
    with pytest.raises(ConfigError, match=r"'seg.lora.rank'"):
        SegConfig(lora=SegConfig().lora.__class__(rank=0)).validate("seg")
    with pytest.raises(ConfigError, match=r"'seg.joint_sampling'"):
        SegConfig(joint_sampling="equal").validate("seg")
