"""The dino/<domain> stage end to end on a tiny profile, and the DINO chapter's inspection figures."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from dinoxfer_lib.dino.inspect import cls_attention, patch_pca_rgb, prepare_images
from dinoxfer_lib.pipeline.dino import STAGE_FILES, train_backbone
from dinoxfer_lib.models.backbones import create_backbone
from dinoxfer_lib.pipeline import load_backbones, load_split, open_run
from dinoxfer_lib.pl.dino import plot_attention_maps, plot_patch_pca, plot_training_curves

TINY_RUN = {
    "data": {"opencell": {"n_images": 40, "image_size": 16, "n_groups": 20, "n_batches": 2}},
    "split": {"n_folds": 2},
    "embed": {"img_size": 16},
    "dino": {"epochs": 1, "batch_size": 8, "out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8, "n_local_crops": 1,
             "local_crop_size": 8},
}


def test_stage_trains_on_the_dev_split_writes_its_files_and_is_reused(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = open_run("smoke", TINY_RUN, runs_root=tmp_path)
        artifact = train_backbone(run, "opencell", progress=False)
        assert not artifact.reused and all((artifact.path / name).is_file() for name in STAGE_FILES)
        summary = json.loads((artifact.path / "summary.json").read_text())
        assert summary["n_images"] == len(load_split(run, "opencell").dev) < 40  # the test images stay unseen
        assert "collapse" in summary and summary["epochs"] == 1
        assert not (run.store.root / ".dino_resume").exists() or not any((run.store.root / ".dino_resume").iterdir())
        assert train_backbone(run, "opencell", progress=False).reused
        assert load_backbones(run, ("opencell",))["opencell"].stage == "dino/opencell"
    finally:
        torch.set_num_threads(threads)


def test_a_chapter_run_alone_trains_the_backbone_it_needs_never_random_weights(tmp_path, capsys):
    """Chapter 03 run before (or without) chapter 02: `store` weights train dino/opencell rather than fall back to
    random ones; a changed DINO recipe trains again rather than reuse weights of another one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = open_run("smoke", TINY_RUN, runs_root=tmp_path)
        backbone = load_backbones(run, ("opencell",))["opencell"]
        assert backbone.stage == "dino/opencell" and not backbone.random
        assert "dino/opencell: trained now" in capsys.readouterr().out
        assert backbone.sha256 == run.store.load("dino/opencell").provenance["files"]["teacher_backbone.safetensors"][
            "sha256"]
        changed = open_run("smoke", {**TINY_RUN, "dino": {**TINY_RUN["dino"], "lr": 1e-3}}, runs_root=tmp_path)
        assert load_backbones(changed, ("opencell",))["opencell"].sha256 != backbone.sha256
    finally:
        torch.set_num_threads(threads)


def test_diverged_training_leaves_no_stage_and_no_checkpoint_to_resume(tmp_path, monkeypatch):
    import dinoxfer_lib.pipeline.dino as stage_module
    from dinoxfer_lib.errors import TrainingError

    def diverge(images, *, out_dir, **kwargs):  # as train_dino does after a checkpointed epoch and a NaN one
        out_dir.mkdir(parents=True)
        (out_dir / "checkpoint.pth").write_bytes(b"epoch 1")
        raise TrainingError("DINO loss is nan at step 9 (epoch 2, step 1 of 8): lower dino.lr")

    monkeypatch.setattr(stage_module, "train_dino", diverge)
    run = open_run("smoke", TINY_RUN, runs_root=tmp_path)
    with pytest.raises(TrainingError, match="step 9"):
        train_backbone(run, "opencell", progress=False)
    assert run.store.artifact_hash("dino/opencell") is None
    for leftovers in (".dino_resume", ".scratch"):
        assert not any((run.store.root / leftovers).glob("*")), leftovers


def _as_set_arguments(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _as_set_arguments(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}={value}"


def test_torchrun_entry_point_takes_overrides_and_writes_the_stage_the_book_reuses(tmp_path, capsys):
    """``torchrun -m dinoxfer_lib.pipeline.dino --set ...`` (here one process): the notebook run with the same
    overrides finds the stage instead of training again."""
    from dinoxfer_lib.pipeline.dino import main

    main(["--profile", "smoke", "--domain", "opencell", "--runs", str(tmp_path),
          "--set", *_as_set_arguments(TINY_RUN)])
    assert "dino/opencell: trained" in capsys.readouterr().out
    assert train_backbone(open_run("smoke", TINY_RUN, runs_root=tmp_path), "opencell", progress=False).reused


def test_attention_pca_and_figures():
    torch.manual_seed(0)
    backbone = create_backbone("vit_micro", in_chans=2, img_size=16)
    raw = np.random.default_rng(0).integers(0, 4000, (2, 2, 24, 24)).astype(np.uint16)
    x = prepare_images(raw, img_size=16)
    assert x.shape == (2, 2, 16, 16) and 0 <= x.min() and x.max() <= 1
    attention = cls_attention(backbone, x)
    assert attention.shape == (2, 3, 2, 2) and np.all(attention.sum(axis=(2, 3)) < 1)  # the rest goes to CLS
    pca = patch_pca_rgb(backbone, x)
    assert pca.shape == (2, 2, 2, 3) and pca.min() == 0 and pca.max() == 1
    history = {"step": [0, 1], "loss": [5.0, 4.0], "teacher_entropy": [3.0, 2.5], "kl_globals": [0.5, 0.3],
               "lr": [0.0, 1e-4], "weight_decay": [0.04, 0.05], "teacher_momentum": [0.996, 0.998],
               "collapse": ["", "uniform"]}
    for fig in (plot_training_curves(pd.DataFrame(history), out_dim=32),
                plot_attention_maps(raw, attention, channel_names=("protein", "nucleus")),
                plot_patch_pca(raw, pca, channel_names=("protein", "nucleus"))):
        assert isinstance(fig, Figure) and fig.axes
