"""DINO training: checkpoints in the official layout, exact resume, the health log, and the book's stage."""

import dataclasses
import json
import weakref

import numpy as np
import pandas as pd
import pytest
import torch

from dinoxfer_lib.dino.checkpoint import CHECKPOINT_FILE
from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.health import health_checks
from dinoxfer_lib.dino.train import TrainingInterrupted, build_networks, epoch_order, train_dino
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.models.checkpoints import build_backbone, read_checkpoint

TINY = DinoConfig(epochs=3, batch_size=4, out_dim=64, hidden_dim=32, bottleneck_dim=16, n_local_crops=2,
                  local_crop_size=8, warmup_epochs=1, freeze_last_layer=1, checkpoint_every=2, lr=0.005,
                  drop_path_rate=0.1)
CHANNELS = ("protein", "nucleus")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run faster without intra-op threads fighting other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(100, 60000, (8, 2, 16, 16)).astype(np.uint16)


def train(images, out_dir, **kw):
    return train_dino(images, config=kw.pop("config", TINY), arch="vit_micro", img_size=16, channel_names=CHANNELS,
                      out_dir=out_dir, seed=1, progress=False, **kw)


@pytest.fixture(scope="module")
def full_run(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return out, train(images, out)


def test_checkpoint_has_the_official_layout_and_loads_as_a_backbone(full_run):
    out, result = full_run
    ckpt = read_checkpoint(out / CHECKPOINT_FILE)
    assert {"student", "teacher", "optimizer", "epoch", "args", "dino_loss", "fp16_scaler"} <= set(ckpt)
    assert ckpt["epoch"] == 3 and ckpt["fp16_scaler"] is None and ckpt["args"]["out_dim"] == 64
    assert "center" in ckpt["dino_loss"] and "head.last_layer.weight_g" in ckpt["teacher"]
    for path in (out / CHECKPOINT_FILE, out / "teacher_backbone.safetensors"):
        model, report = build_backbone(path, img_size=16)
        assert report.which in ("teacher", "")
        for name, value in model.state_dict().items():
            assert torch.equal(value, result.teacher.backbone.state_dict()[name])
    assert any(k.startswith("head.") for k in report.dropped_keys) or report.layout == "safetensors"


def test_history_summary_and_schedules(full_run):
    out, result = full_run
    history = result.history
    assert len(history) == 3 * 2  # 8 images // 4 per step, 3 epochs
    for column in ("loss", "lr", "weight_decay", "teacher_momentum", "teacher_entropy", "center_norm",
                   "kl_globals", "argmax_share", "collapse"):
        assert column in history.columns
    assert history["lr"].iloc[0] == 0 and history["lr"].max() == pytest.approx(0.005 * 4 / 256)
    assert history["teacher_momentum"].is_monotonic_increasing
    assert (history["teacher_entropy"] <= np.log(64) + 1e-4).all() and np.isfinite(history["loss"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["images_per_s"] > 0 and summary["collapse"] in ("", "uniform", "one_hot")


def test_resumed_run_ends_with_the_same_weights(images, full_run, tmp_path):
    _, uninterrupted = full_run
    with pytest.raises(TrainingInterrupted):
        train(images, tmp_path, stop_after_epochs=1)  # killed after epoch 1: no checkpoint yet (every 2 epochs)
    assert not (tmp_path / CHECKPOINT_FILE).exists()
    with pytest.raises(TrainingInterrupted):
        train(images, tmp_path, stop_after_epochs=2)  # restarts from scratch, checkpoint at epoch 2, then dies
    assert read_checkpoint(tmp_path / CHECKPOINT_FILE)["epoch"] == 2
    resumed = train(images, tmp_path)
    assert resumed.summary["resumed_from_epoch"] == 2
    for a, b in zip(uninterrupted.teacher.state_dict().values(), resumed.teacher.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(uninterrupted.student.state_dict().values(), resumed.student.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert len(resumed.history) == len(uninterrupted.history)


def test_first_epoch_keeps_the_last_layer_fixed(images, tmp_path):
    config = DinoConfig(**{**TINY.__dict__, "epochs": 1, "freeze_last_layer": 1, "checkpoint_every": 1})
    result = train(images, tmp_path, config=config)
    torch.manual_seed(1)
    initial, _ = build_networks(config, arch="vit_micro", img_size=16, in_chans=2)
    assert torch.equal(result.student.head.last_layer.weight_v, initial.head.last_layer.weight_v)
    assert not torch.equal(result.student.head.mlp[0].weight, initial.head.mlp[0].weight)


def test_images_per_epoch_sets_the_steps_whatever_the_corpus_size(images, tmp_path):
    config = dataclasses.replace(TINY, epochs=2, images_per_epoch=12, warmup_epochs=0, checkpoint_every=10)
    history = train(images, tmp_path, config=config).history
    assert len(history) == 2 * (12 // 4)  # 3 steps an epoch from 8 images: each epoch goes round them 1.5 times
    order = epoch_order(8, 12, torch.Generator().manual_seed(0))
    assert len(order) == 12 and sorted(order[:8].tolist()) == list(range(8))  # a full order first, then part
    assert torch.equal(epoch_order(8, None, torch.Generator().manual_seed(0)),
                       torch.randperm(8, generator=torch.Generator().manual_seed(0)))  # unset: as before
    with pytest.raises(ConfigError, match="images_per_epoch"):
        train(images, tmp_path, config=dataclasses.replace(TINY, images_per_epoch=2))


def test_bad_sizes_are_config_errors(images, tmp_path):
    with pytest.raises(ConfigError, match="local_crop_size"):
        train(images, tmp_path, config=DinoConfig(**{**TINY.__dict__, "local_crop_size": 12}))
    with pytest.raises(ConfigError, match="batch_size"):
        train(images, tmp_path, config=DinoConfig(**{**TINY.__dict__, "batch_size": 32}))


def test_a_checkpoint_of_another_recipe_is_not_resumed(images, full_run):
    out, _ = full_run
    with pytest.raises(DataError, match="out_dim"):
        train(images, out, config=DinoConfig(**{**TINY.__dict__, "out_dim": 128}))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_training_follows_the_cpu_fp32_run(images, tmp_path):
    """The GPU path (device-resident data, bf16 autocast, fused AdamW) trains the same model as the CPU path: the
    same crops and initial weights, so the per-step losses agree up to bf16 rounding (drop-path off: its masks come
    from each device's own random stream)."""
    config = dataclasses.replace(TINY, drop_path_rate=0.0)
    cpu = train(images, tmp_path / "cpu", device="cpu", config=config)
    gpu = train(images, tmp_path / "gpu", device="cuda", config=config)
    np.testing.assert_allclose(gpu.history["loss"], cpu.history["loss"], rtol=0.02)
    assert gpu.summary["device"] != cpu.summary["device"]


def test_a_batch_too_large_for_the_gpu_is_a_one_line_setting_error_and_frees_the_step(images, tmp_path,
                                                                                       monkeypatch):
    from dinoxfer_lib.dino.loss import DINOLoss

    half_built = []

    def out_of_memory(self, student_out, teacher_out, epoch):
        half_built.append(weakref.ref(student_out))  # holds the student's autograd graph
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(DINOLoss, "forward", out_of_memory)
    with pytest.raises(ConfigError, match=r"dino.batch_size = 4 \(4 per process\) does not fit .* torchrun") as caught:
        train(images, tmp_path)
    assert caught.value.__context__ is None  # the out-of-memory error, and the activations it holds, are gone
    del caught
    assert half_built and half_built[0]() is None
    assert not (tmp_path / CHECKPOINT_FILE).exists()  # nothing half-written


def history_of(loss, entropy, share):
    return pd.DataFrame({"loss": loss, "teacher_entropy": entropy, "argmax_share": share})


def test_health_checks_flag_a_rebound_a_partial_collapse_and_a_uniform_teacher(full_run):
    steps = np.arange(100)
    falling = 5.0 * np.exp(-steps / 20) + 1.0
    k = 256
    healthy = health_checks(history_of(falling, np.full(100, 2.0), np.full(100, 0.05)), k)
    assert healthy["healthy"].all() and len(healthy) == 4
    rebound = np.where(steps < 50, falling, falling[50] + 0.05 * (steps - 50))  # falls, then climbs back
    checks = health_checks(history_of(rebound, np.full(100, 2.0), np.full(100, 0.05)), k).set_index("check")
    assert not checks.loc["loss stayed down (last − lowest window, nats)", "healthy"]
    partial = health_checks(history_of(falling, np.full(100, 2.0), np.full(100, 0.5)), k)  # half on one prototype
    assert partial["healthy"].tolist() == [True, True, True, False]
    uniform = health_checks(history_of(falling, np.full(100, 0.99 * np.log(k)), np.full(100, 0.05)), k)
    assert uniform["healthy"].tolist() == [True, True, False, True]
    # a real run's history has what the checks read
    _, result = full_run
    assert len(health_checks(result.history, TINY.out_dim)) == 4
