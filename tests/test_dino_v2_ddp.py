"""Two gloo processes on the CPU compute exactly what one process computes with DINOv2: the all-reduced
Sinkhorn-Knopp targets, the iBOT centre and KoLeo's gradient over the global batch, and whole training runs (masks,
heads, centres)."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.dinov2 import DINOv2Loss
from dinoxfer_lib.dino.ibot import IBOTPatchLoss
from dinoxfer_lib.dino.sinkhorn import sinkhorn_knopp
from dinoxfer_lib.dino.train import train_dino

# Random-noise images give a fresh ViT near-identical features, so Sinkhorn-Knopp's targets start out uniform.
pytestmark = pytest.mark.filterwarnings("ignore::dinoxfer_lib.dino.health.CollapseWarning")

# drop-path off: its masks are drawn per process, everything else is keyed on (seed, epoch, step, image)
CONFIG = DinoConfig(objective="dinov2", epochs=1, batch_size=4, out_dim=64, hidden_dim=32, bottleneck_dim=16,
                    n_local_crops=2, local_crop_size=16, warmup_epochs=0, freeze_last_layer=0, checkpoint_every=1,
                    lr=0.005, drop_path_rate=0.0, centering="sinkhorn_knopp", koleo_loss_weight=0.0,
                    ibot_separate_head=True, ibot_out_dim=32, ibot_hidden_dim=16, ibot_bottleneck_dim=8)
# KoLeo is off in the run: a fresh ViT gives every image nearly the same CLS feature (nearest neighbours ~1e-5
# apart), where float32 rounding of a different summation order changes KoLeo's gradient, and Adam turns that into
# full-size steps. Its distributed gradient is checked among the pieces below, on well-separated features.


def images():
    return np.random.default_rng(0).integers(100, 60000, (8, 2, 32, 32)).astype(np.uint16)


def run(out_dir, config):
    return train_dino(images(), config=config, arch="vit_micro", img_size=32, channel_names=("protein", "nucleus"),
                      out_dir=out_dir, seed=3, device="cpu", progress=False)


def pieces(rank, world):
    """The distributed pieces on this process's half of fixed inputs (rank 0 of 1 gets all of them)."""
    torch.manual_seed(0)
    logits, inputs = torch.randn(8, 6), torch.randn(2, 8, 6)  # inputs: 2 global views of 8 images
    rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
    targets = sinkhorn_knopp(logits[rows], 0.3, iterations=3)
    ibot = IBOTPatchLoss(6)
    ibot.update_center(logits[rows][: 1 + rank])  # unequal patch counts per process
    # KoLeo's gradient through the trainer's loss (DINO term constant here), then DDP's average over processes
    loss_fn = DINOv2Loss(dataclasses.replace(CONFIG, out_dim=6, n_local_crops=0, koleo_loss_weight=1.0), n_crops=2)
    layer = torch.nn.Linear(6, 5)
    global_cls = layer(inputs[:, rows].reshape(-1, 6))  # (2 * local images, 5), view-major
    cls = logits[rows].repeat(2, 1)
    loss, _ = loss_fn(cls, cls[:0], global_cls, torch.softmax(cls, dim=-1), cls[:0], None)
    loss.backward()
    grad = layer.weight.grad
    if world > 1:
        dist.all_reduce(grad)
        grad /= world
    return {"targets": targets, "center": ibot.center, "koleo_grad": grad}


def worker(rank, folder):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        result = run(f"{folder}/ddp", CONFIG)
        torch.save({"pieces": pieces(rank, 2), "student": result.student.state_dict(),
                    "teacher": result.teacher.state_dict(),
                    "history": result.history[["dino_loss", "ibot_loss"]].to_numpy()}, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    mp.spawn(worker, args=(str(tmp_path),), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    torch.set_num_threads(1)

    # the pieces: each process's share of the one-process answer
    single = pieces(0, 1)
    targets = torch.cat([r["pieces"]["targets"] for r in ranks])
    assert torch.allclose(targets, single["targets"], atol=1e-6)
    torch.manual_seed(0)  # the centre moves towards the mean over both processes' patches: rows 0 and 4, 5
    logits = torch.randn(8, 6)
    expected = 0.1 * torch.cat((logits[:1], logits[4:6])).mean(0, keepdim=True)
    for r in ranks:
        assert torch.allclose(r["pieces"]["center"], expected, atol=1e-6)
        assert torch.allclose(r["pieces"]["koleo_grad"], single["koleo_grad"], atol=1e-6)

    # the training run
    for part in ("student", "teacher"):
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), f"ranks differ in {part}.{key}"
    one = run(tmp_path / "single", CONFIG)
    np.testing.assert_allclose(ranks[0]["history"], one.history[["dino_loss", "ibot_loss"]].to_numpy(),
                               rtol=1e-5)  # the logged terms are the global batch's
    for part in ("student", "teacher"):
        for key, value in getattr(one, part).state_dict().items():
            other = ranks[0][part][key]
            if key.endswith("attn.qkv.bias"):  # the key bias: softmax ignores it, Adam amplifies its noise
                width = len(value) // 3
                value, other = (torch.cat((v[:width], v[2 * width:])) for v in (value, other))
            assert torch.allclose(value, other, atol=1e-5), f"{part}.{key} differs from 1 process"
    assert not torch.allclose(one.student.backbone.mask_token, torch.zeros(1, 192))  # the mask token trained
