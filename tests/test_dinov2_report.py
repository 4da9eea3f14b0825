"""The dinov2: config section, and chapter 02's readings of the DINOv2 backbones (recipe, budgets, paired
differences, the cell-line table)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dinoxfer_lib.config import load_config
from dinoxfer_lib.dino.config import DINOv2Config
from dinoxfer_lib.errors import ConfigError
from dinoxfer_lib.pipeline.dino import DinoRun
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report import pretraining


def test_a_partial_recipe_keeps_dinov2s_defaults():
    recipe = load_config("smoke", {"dinov2": {"recipe": {"epochs": 3}}}).dinov2.recipe
    assert isinstance(recipe, DINOv2Config) and recipe.epochs == 3
    assert (recipe.objective, recipe.teacher_temp, recipe.momentum_teacher, recipe.drop_path_rate) == (
        "dinov2", 0.07, 0.992, 0.3)
    assert load_config("paper").dinov2.recipe.batch_size == 512


@pytest.mark.parametrize("overrides, fragment", [
    ({"backbones": ["cell_dino", "dinov3"]}, "dinov2.backbones"),
    ({"backbones": ["dino_boc", "dino_boc"]}, "dinov2.backbones"),
    ({"recipe": {"objective": "dino"}}, "dinov2.recipe.objective' = 'dino': expected dinov2"),
    ({"recipe": {"teacher_temp": -1}}, "dinov2.recipe.teacher_temp"),
    ({"boc_sources": ["opencell", "imagenet"]}, "dinov2.boc_sources"),
    ({"boc_images_per_source": 0}, "dinov2.boc_images_per_source"),
    ({"max_images": 4}, "dinov2.max_images' = 4: expected >= recipe.batch_size (32)"),
    ({"plus_layerscale_init": -0.1}, "dinov2.plus_layerscale_init"),
    ({"recipe": {"epoch": 3}}, "dinov2.recipe.epoch"),
])
def test_bad_dinov2_values_name_the_key_in_one_line(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config("smoke", {"dinov2": overrides})
    assert fragment in str(info.value) and "\n" not in str(info.value)


def probe_result(per_fold: dict[str, list[float]]) -> ProbeResult:
    """A result whose MLP test macro F1 per fold is given (train and validation a constant)."""
    rows = [{"set": name, "probe": "mlp", "fold": fold, "subset": subset, "threshold": "0.5", "class": None,
             "metric": "f1", "value": value if subset == "test" else 0.5}
            for name, values in per_fold.items() for fold, value in enumerate(values)
            for subset in ("train", "val", "test")]
    return ProbeResult(scores=pd.DataFrame(rows), test_probs={}, history=pd.DataFrame(),
                       test_index=np.arange(3), class_names=("a", "b"))


def test_paired_differences_pair_fold_models_and_give_a_t_interval():
    dino, dinov2, boc = [0.50, 0.60, 0.55, 0.40], [0.56, 0.63, 0.60, 0.49], [0.59, 0.60, 0.61, 0.48]
    result = probe_result({"hpa_mapping": dino, "cell_dino_mapping": dinov2, "dino_boc": boc})
    table = pretraining.paired_differences({"localisation": result, "cell line": None})
    assert list(table["to"]) == ["cell_dino_mapping", "dino_boc"]  # no Cell-DINO+ row: that pair is left out
    row = table.iloc[0]
    diff = np.subtract(dinov2, dino)
    half = stats.t.ppf(0.975, 3) * diff.std(ddof=1) / 2
    assert row["difference"] == pytest.approx(diff.mean()) and row["std"] == pytest.approx(diff.std(ddof=1))
    assert (row["low"], row["high"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert row["per fold"] == "+0.060, +0.030, +0.050, +0.090" and row["folds"] == 4
    note = pretraining.objectives_note(table, synthetic=True)
    assert "localisation, DINO → DINOv2" in note and "higher" in note  # every fold gains: resolved
    assert "bag of channels (DINO BoC): +0.000 macro F1" in note and "not resolved from 0" in note  # folds disagree
    assert pretraining.paired_differences({}).empty
    assert "nothing to compare" in pretraining.objectives_note(pd.DataFrame(), synthetic=False)


def test_dinov2_recipe_table_sets_this_run_beside_dinov2_and_dino():
    table = pretraining.dinov2_recipe_table(load_config("demo").dinov2.recipe)
    assert list(table.columns) == ["this run", "DINOv2 default", "DINO / paper", "differs"]
    assert table.loc["teacher_temp"].tolist() == ["0.01", "0.07", "0.04", "yes"]
    assert table.loc["koleo_loss_weight", "differs"] == "" and table.loc["objective", "DINO / paper"] == "dino"


def test_budget_table_and_note_say_what_each_run_cost():
    def run(objective, steps, init=None, sources=None):
        summary = {"objective": objective, "init_from": init, "channels": ["a", "b"], "steps": steps,
                   "batch_size": 8, "wall_time_s": 2.0, "images_per_s": 30.0, "final_loss": 1.23456,
                   "collapse": ""}
        return DinoRun(None, summary, pd.DataFrame(), {"sources": sources or {"hpa": 16}})

    table = pretraining.training_budget_table({"hpa": run("dino", 4), "cell_dino": run("dinov2", 4),
                                               "dino_boc": run("dinov2", 4, sources={"hpa": 2, "natural": 2})})
    assert table.loc["dino_boc", "trained on"] == "hpa (2), natural (2)"
    assert table.loc["cell_dino", "samples seen"] == 32 and table.loc["hpa", "starts from"] == "random"
    assert table.loc["hpa", "collapse"] == "none" and table.loc["hpa", "final loss"] == 1.2346
    assert "same number of optimiser steps (4)" in pretraining.budget_note(table)


def test_cell_line_table_labels_and_orders_the_sets():
    result = probe_result({"dino_boc": [0.4, 0.5], "imagenet_mapping": [0.6, 0.8]})
    table = pretraining.cell_line_table(result)
    assert list(table.index) == ["imagenet_mapping", "dino_boc"]  # Table III order
    assert table.loc["imagenet_mapping"].tolist() == ["ImageNet-1k", "channel mapping", "0.700 ± 0.141"]


def test_attention_compares_the_backbones_that_read_the_images_as_they_come():
    import torch

    from dinoxfer_lib.dino.inspect import cls_attention, mean_attention, prepare_images
    from dinoxfer_lib.models.backbones import create_backbone
    from dinoxfer_lib.pipeline.backbones import ResolvedBackbone

    channels = ("protein", "microtubules", "nucleus", "er")
    torch.manual_seed(0)
    joint, single = (create_backbone("vit_micro", in_chans=c, img_size=16) for c in (4, 1))
    backbones = {
        "cell_dino": ResolvedBackbone("cell_dino", joint, channels, None, None, "dino/cell_dino (this run)", "x"),
        "dino_boc": ResolvedBackbone("dino_boc", single, ("channel",), None, None, "dino/dino_boc (this run)", "y"),
        "dino4cells": ResolvedBackbone("hpa", joint, ("nucleus", "protein", "microtubules", "er"), None, None,
                                       "dino4cells_hpa_fov", "z", per_image_zscore=True),
    }
    models = pretraining.attention_backbones(backbones, channels)
    assert list(models) == ["cell_dino", "dino_boc"]  # DINO4Cells reads another slot order, z-scored
    raw = np.random.default_rng(0).integers(0, 4000, (2, 4, 16, 16)).astype(np.uint16)
    maps = mean_attention(models, raw, img_size=16, channel_names=channels)
    assert maps["cell_dino"].shape == maps["dino_boc"].shape == (2, 2, 2)
    protein_alone = prepare_images(raw, img_size=16)[:, :1]
    np.testing.assert_allclose(maps["dino_boc"], cls_attention(single, protein_alone).mean(axis=1))
