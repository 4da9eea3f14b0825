"""DINOv2 through the DINO trainer: DINOv2-layout checkpoints, the terms in the log, exact resume, init_from."""

import dataclasses

import numpy as np
import pytest
import torch

from dinoxfer_lib.dino.checkpoint import CHECKPOINT_FILE
from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.train import TrainingInterrupted, train_dino
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.models.backbones import create_backbone
from dinoxfer_lib.models.checkpoints import build_backbone, load_backbone_weights, read_checkpoint, save_backbone
from dinoxfer_lib.files import file_sha256

# 32 px globals give vit_micro a 4 x 4 patch grid to mask; 16 px locals a 2 x 2 one
TINY = DinoConfig(objective="dinov2", epochs=3, batch_size=4, out_dim=64, hidden_dim=32, bottleneck_dim=16,
                  n_local_crops=2, local_crop_size=16, warmup_epochs=1, freeze_last_layer=1, checkpoint_every=2,
                  lr=0.005, drop_path_rate=0.1, ibot_separate_head=True, ibot_out_dim=48, ibot_hidden_dim=32,
                  ibot_bottleneck_dim=16, centering="centering")
CHANNELS = ("protein", "nucleus")
# Random-noise images give a fresh ViT near-identical features: the teacher's targets start out uniform.
pytestmark = pytest.mark.filterwarnings("ignore::dinoxfer_lib.dino.health.CollapseWarning")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(100, 60000, (8, 2, 32, 32)).astype(np.uint16)


def train(images, out_dir, **kw):
    return train_dino(images, config=kw.pop("config", TINY), arch="vit_micro", img_size=32, channel_names=CHANNELS,
                      out_dir=out_dir, seed=1, progress=False, **kw)


@pytest.fixture(scope="module")
def full_run(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("dinov2")
    return out, train(images, out)


def test_dinov2_checkpoint_has_the_dinov2_layout_and_loads_as_a_backbone(full_run):
    out, result = full_run
    ckpt = read_checkpoint(out / CHECKPOINT_FILE)
    assert {"student", "teacher", "optimizer", "epoch", "args", "dino_loss", "ibot_loss"} <= set(ckpt)
    teacher = ckpt["teacher"]
    assert "backbone.mask_token" in teacher and "backbone.blocks.0.ls1.gamma" in teacher
    assert "dino_head.last_layer.weight_v" in teacher and "ibot_head.last_layer.weight_v" in teacher
    assert ckpt["args"]["objective"] == "dinov2" and ckpt["epoch"] == 3
    expected = {k: v for k, v in result.teacher.backbone.state_dict().items() if k != "mask_token"}
    for path in (out / CHECKPOINT_FILE, out / "teacher_backbone.safetensors"):
        model, report = build_backbone(path, img_size=32)
        assert model.state_dict().keys() == expected.keys()
        assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    _, report = build_backbone(out / CHECKPOINT_FILE, img_size=32)
    dropped = set(report.dropped_keys)
    assert "backbone.mask_token" in dropped and any(k.startswith("ibot_head.") for k in dropped)


def test_dinov2_history_logs_its_terms(full_run):
    _, result = full_run
    history = result.history
    assert len(history) == 3 * 2 and result.summary["objective"] == "dinov2"
    for column in ("loss", "dino_loss", "ibot_loss", "koleo_loss", "teacher_entropy", "collapse"):
        assert column in history.columns
    assert np.isfinite(history[["dino_loss", "ibot_loss", "koleo_loss"]].to_numpy()).all()
    assert (history["ibot_loss"] > 0).all()  # every step masks some patches
    weighted = history["dino_loss"] + TINY.ibot_loss_weight * history["ibot_loss"] + \
        TINY.koleo_loss_weight * history["koleo_loss"]
    np.testing.assert_allclose(history["loss"], weighted, rtol=1e-5)


def test_dinov2_resumed_run_ends_with_the_same_weights(images, full_run, tmp_path):
    _, uninterrupted = full_run
    with pytest.raises(TrainingInterrupted):
        train(images, tmp_path, stop_after_epochs=2)  # checkpoint at epoch 2 (heads, both centres), then dies
    assert read_checkpoint(tmp_path / CHECKPOINT_FILE)["ibot_loss"]["center"].abs().sum() > 0
    resumed = train(images, tmp_path)
    assert resumed.summary["resumed_from_epoch"] == 2
    for part in ("student", "teacher"):
        for (name, a), b in zip(getattr(uninterrupted, part).state_dict().items(),
                                getattr(resumed, part).state_dict().values()):
            assert torch.allclose(a, b, atol=1e-6), f"{part}.{name}"
    np.testing.assert_allclose(resumed.history["loss"], uninterrupted.history["loss"], rtol=1e-6)


def test_shared_head_and_sinkhorn_knopp_train_too(images, tmp_path):
    config = dataclasses.replace(TINY, epochs=1, checkpoint_every=1, ibot_separate_head=False,
                                 centering="sinkhorn_knopp")
    result = train(images, tmp_path, config=config)
    assert not any(k.startswith("ibot_head.") for k in result.student.state_dict())
    assert (result.history["center_norm"] == 0).all()  # Sinkhorn-Knopp keeps no running centre
    assert np.isfinite(result.history["loss"]).all() and result.history["ibot_loss"].gt(0).all()


def test_init_from_starts_both_networks_from_given_weights(images, tmp_path):
    torch.manual_seed(5)
    natural = create_backbone("vit_micro", in_chans=3, img_size=64)  # an RGB backbone at another size
    source = save_backbone(natural, tmp_path / "natural.safetensors")
    frozen_teacher = dataclasses.replace(TINY, epochs=1, checkpoint_every=1, momentum_teacher=1.0, layerscale_init=0.0)
    result = train(images, tmp_path / "run", config=frozen_teacher, init_from=source)
    reference = create_backbone("vit_micro", in_chans=2, img_size=32)
    load_backbone_weights(reference, source, adapt_in_chans=True)
    for name, value in reference.state_dict().items():  # momentum 1: the teacher is still the initial backbone
        assert torch.equal(result.teacher.backbone.state_dict()[name], value), name
    assert result.summary["init_from"] == {"source": str(source), "sha256": file_sha256(source)}
    other = save_backbone(create_backbone("vit_micro", in_chans=3, img_size=64), tmp_path / "other.safetensors")
    with pytest.raises(DataError, match="trained from other initial weights"):
        train(images, tmp_path / "run", config=frozen_teacher, init_from=other)
    with pytest.raises(DataError, match="no LayerScale: build the backbone without"):
        train(images, tmp_path / "layerscale", config=dataclasses.replace(frozen_teacher, layerscale_init=1e-5),
              init_from=source)
