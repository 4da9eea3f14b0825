"""The DINO benchmark times a DINOv2 step beside the DINO step on the same model, and `dinoxfer bench` says so."""

import pytest
import torch

from dinoxfer_lib.bench import ratio_lines, summary_table
from dinoxfer_lib.bench.dino import bench_dino


def test_dinov2_step_is_timed_beside_the_dino_step():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = bench_dino(arch="vit_micro", img_size=32, batch_size=4, steps=2, n_local_crops=2, local_crop_size=16,
                            out_dim=64, rounds=1, device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert result["dinov2_images_per_s"] > 0 and result["ours_images_per_s"] > 0
    assert result["dinov2_ratio"] == pytest.approx(result["dinov2_images_per_s"] / result["ours_images_per_s"],
                                                   abs=0.01)
    assert "dinov2_mfu" not in result  # MFU and memory only on a GPU
    row = summary_table([result]).loc["dino: DINOv2 step vs DINO step"]
    assert (row["ours"], row["reference"], row["ratio"]) == (result["dinov2_images_per_s"],
                                                            result["ours_images_per_s"], result["dinov2_ratio"])
    first, second = ratio_lines(result)
    assert first.startswith(f"dino: {result['ratio']:.2f}x the reference")
    assert f"DINOv2 step runs at {result['dinov2_ratio']:.2f}x the DINO step" in second
