"""Two gloo processes on the CPU train exactly what one process trains with the same global batch."""

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.train import train_dino

# drop-path off: its masks are drawn per process, everything else is keyed on (seed, epoch, step, image)
CONFIG = DinoConfig(epochs=2, batch_size=4, out_dim=64, hidden_dim=32, bottleneck_dim=16, n_local_crops=2,
                    local_crop_size=8, warmup_epochs=1, freeze_last_layer=1, checkpoint_every=1, lr=0.005,
                    drop_path_rate=0.0)


def images():
    return np.random.default_rng(0).integers(100, 60000, (8, 2, 16, 16)).astype(np.uint16)


def run(out_dir):
    return train_dino(images(), config=CONFIG, arch="vit_micro", img_size=16, channel_names=("protein", "nucleus"),
                      out_dir=out_dir, seed=3, device="cpu", progress=False)


def worker(rank, folder):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        result = run(f"{folder}/ddp")
        torch.save({"student": result.student.state_dict(), "teacher": result.teacher.state_dict(),
                    "world": result.summary["world_size"]}, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    mp.spawn(worker, args=(str(tmp_path),), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    for part in ("student", "teacher"):
        for name, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][name]), f"ranks differ in {part}.{name}"
    assert (tmp_path / "ddp" / "checkpoint.pth").is_file()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run(tmp_path / "single")
    finally:
        torch.set_num_threads(threads)
    for part in ("student", "teacher"):
        for name, value in getattr(single, part).state_dict().items():
            other = ranks[0][part][name]
            if name.endswith("attn.qkv.bias"):
                # The key bias shifts all of a query's logits equally: softmax ignores it, its gradient is pure
                # rounding noise, and Adam turns noise of either summation order into full-size steps.
                width = len(value) // 3
                value, other = torch.cat((value[:width], value[2 * width:])), torch.cat((other[:width], other[2 * width:]))
            assert torch.allclose(value, other, atol=1e-5), f"{part}.{name} differs from 1 process"
    assert not torch.allclose(single.student.backbone.pos_embed, single.teacher.backbone.pos_embed)  # it trained
