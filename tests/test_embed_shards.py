"""Embedding extraction sharded over two gloo processes on the CPU gives the single-process AnnData, in image order,
both called directly and as a pipeline stage (one spawn serves both tests: starting processes is the cost)."""

import json

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dinoxfer_lib.data.classes import OPENCELL_CHANNELS
from dinoxfer_lib.data.dataset import ImageSet, load_imageset, save_imageset
from dinoxfer_lib.embed import extract_embeddings, shard_rows
from dinoxfer_lib.models.backbones import create_backbone
from dinoxfer_lib.models.channels import make_encoder
from dinoxfer_lib.pipeline import open_run
from dinoxfer_lib.pipeline.backbones import random_backbone
from dinoxfer_lib.pipeline.embeddings import EMBEDDING_FILE, SHARD_DIR, make_embeddings

N_IMAGES = 7  # odd: the two shares differ (4 and 3 images)
# The smoke profile, smaller: 45 OpenCell-like images at 32 px (23 and 22 per process).
OVERRIDES = {"data": {"opencell": {"n_images": 45, "n_groups": 15, "n_batches": 2, "image_size": 32}},
             "embed": {"img_size": 32, "batch_size": 16}}


def save_dataset(folder):
    rng = np.random.default_rng(0)
    dataset = ImageSet(
        images=rng.integers(0, 60000, (N_IMAGES, 2, 20, 20)).astype(np.uint16),
        labels=rng.random((N_IMAGES, 3)) > 0.5,
        grades=np.zeros((N_IMAGES, 3), np.int8),
        obs=pd.DataFrame({"image_id": [f"im{i}" for i in range(N_IMAGES)], "group": "g", "batch": "b",
                          "domain": "t"}),
        class_names=("a", "b", "c"),
        channel_names=("protein", "nucleus"),
        domain="t",
    )
    save_imageset(dataset, folder)


def encoder():
    torch.manual_seed(0)
    return make_encoder("native", create_backbone("vit_micro", in_chans=2, img_size=16).eval(),
                        target_channels=("protein", "nucleus"))


def embed_stage(runs_root):
    """The pipeline stage ``embeddings/sharded``: the OpenCell-like images through a seeded random backbone."""
    run = open_run("smoke", OVERRIDES, runs_root=runs_root)
    backbone = random_backbone(run.config, "opencell", channels=OPENCELL_CHANNELS)
    return make_embeddings(run, "embeddings/sharded", domain="opencell", backbone=backbone, strategy="native")


def worker(rank, folder):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        result = extract_embeddings(load_imageset(f"{folder}/set"), encoder(), batch_size=3,
                                    out_path=f"{folder}/sharded.h5ad", shards=f"{folder}/shards")
        first, again = embed_stage(f"{folder}/runs"), embed_stage(f"{folder}/runs")
        record = {"returned": result is not None, "reused": [first.reused, again.reused], "path": str(first.path)}
        (folder / f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The folder where two gloo processes ran :func:`worker`."""
    folder = tmp_path_factory.mktemp("ddp")
    save_dataset(folder / "set")
    mp.spawn(worker, args=(folder,), nprocs=2, join=True)
    return folder


def single_process(call):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return call()
    finally:
        torch.set_num_threads(threads)


def test_two_processes_give_the_single_process_embeddings(two_processes, tmp_path):
    folder = two_processes
    sharded = anndata.read_h5ad(folder / "sharded.h5ad")
    assert [json.loads((folder / f"rank{r}.json").read_text())["returned"] for r in (0, 1)] == [True, False]
    shares = sorted(p.name for p in (folder / "shards").glob("*.npy"))
    assert shares == ["rank00000-of-00002.npy", "rank00001-of-00002.npy"]
    assert np.load(folder / "shards" / shares[0]).shape[0] == 4

    single = single_process(lambda: extract_embeddings(load_imageset(folder / "set"), encoder(), batch_size=3,
                                                       shards=tmp_path / "unused"))  # no process group: no shards
    assert not (tmp_path / "unused").exists()
    assert list(sharded.obs_names) == list(single.obs_names) == [f"im{i}" for i in range(N_IMAGES)]
    np.testing.assert_allclose(sharded.X, single.X, atol=1e-5)
    np.testing.assert_array_equal(sharded.obsm["labels"], single.obsm["labels"])
    assert sharded.uns["embedding"]["processes"] == 2 and sharded.uns["embedding"]["n_images"] == N_IMAGES


def test_sharded_pipeline_stage_matches_one_process_and_is_reused(two_processes, tmp_path):
    records = [json.loads((two_processes / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["reused"] for r in records] == [[False, True]] * 2  # computed once, then reused by every rank
    assert records[0]["path"] == records[1]["path"]
    assert not list((two_processes / "runs" / "smoke" / SHARD_DIR).iterdir())  # shares removed once assembled
    sharded = anndata.read_h5ad(f"{records[0]['path']}/{EMBEDDING_FILE}")
    single = anndata.read_h5ad(single_process(lambda: embed_stage(tmp_path / "runs")).path / EMBEDDING_FILE)
    assert sharded.n_obs == 45 and list(sharded.obs_names) == list(single.obs_names)
    np.testing.assert_allclose(sharded.X, single.X, atol=1e-5)
    assert sharded.uns["embedding"]["processes"] == 2 and "processes" not in single.uns["embedding"]


@pytest.mark.parametrize("n, world", [(7, 2), (10, 3), (2, 4), (0, 2)])
def test_shards_cover_every_row_once_in_order(n, world):
    shares = [shard_rows(n, rank, world) for rank in range(world)]
    assert [i for share in shares for i in share] == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
