"""Issue 18's benchmarks at their small size, run as `dinoxfer bench` runs them: what they time, and that the
bench summary (chapter 90's table) shows them."""

import pytest

from dinoxfer_lib.adapt.bench import SIZES
from dinoxfer_lib.bench import run_benchmarks, summary_table


def test_lora_step_times_the_same_adapters_on_both_sides():
    (result,) = run_benchmarks(["lora_step"], size="small", device="cpu")
    head = 192 * 512 + 512 + 512 * 256 + 256 + 256 * 17 + 17  # the paper's MLP on vit_micro's 192-d CLS
    assert result["lora_modules"] == 4  # qkv of vit_micro's 4 blocks
    assert result["lora_trainable_params"] == head + 4 * 8 * (192 + 3 * 192)
    assert result["full_trainable_params"] == head + result["backbone_params"]
    assert result["ours_s"] > 0 and result["reference_s"] > 0 and result["full_finetune_s"] > 0
    # the ratio is rounded to 2 decimals, the seconds to 4: equal up to that rounding (relative to short times)
    rounding = 0.005 + result["ratio"] * 5e-5 * (1 / result["ours_s"] + 1 / result["reference_s"])
    assert result["ratio"] == pytest.approx(result["reference_s"] / result["ours_s"], abs=rounding)


def test_seg_head_epoch_reports_the_token_cache_apart():
    (result,) = run_benchmarks(["seg_head_epoch"], size="small", device="cpu")
    assert result["n_patches"] == SIZES["seg_head_epoch"]["small"]["n_patches"]
    assert result["token_cache_s"] > 0 and result["ours_s"] > 0
    table = summary_table([result])
    assert table.loc["seg_head_epoch", "unit"] == "seconds"
    assert table.loc["seg_head_epoch", "ratio"] == result["ratio"] and table.loc["seg_head_epoch", "size"] == "small"
