"""Embedding extraction: an ImageSet through a channel encoder into an AnnData (X = embeddings, obs = metadata).

The hot loop does no per-image Python work. Batches are sliced from the (memory-mapped) ImageSet in their raw
dtype — the next one is read by a background thread while the current one is embedded — moved to the device,
converted to float there, resized batch-wise when the encoder expects another size, scaled and embedded under
``torch.inference_mode``. At most two batches are held as floats (one on a CPU). On CUDA the backbone runs on a
bfloat16 copy of its weights (faster than fp32 weights under autocast: the performance chapter has the figures;
embeddings agree with the fp32 CPU ones to cosine > 0.99, tested); the next batch is read
straight into pinned memory, then moved, converted and resized on a side stream while the current one is computed,
and each batch's rows come back while the next is computed. On a CPU everything is fp32. With
``out_path`` the embeddings are written row block by row block into the ``.h5ad`` file's ``X`` dataset as they are
computed, so nothing N-sized is kept in memory during extraction; the file is written under a temporary name and
renamed at the end, so a crash never leaves half an embedding file.

A large set shards across processes (``torchrun``; give ``shards``, a folder every process reaches): each process
embeds its contiguous share of the images (:func:`shard_rows`; a view of the memory-mapped set, no copy) on its own
device and writes it as ``rank<r>-of-<world>.npy``; rank 0 then assembles the AnnData in image order.

The result opens directly in scanpy: ``obs`` = the ImageSet's metadata (index = ``image_id``), ``obsm["labels"]``
/ ``obsm["grades"]`` = the label matrices over ``uns["class_names"]``, ``uns["embedding"]`` = how the numbers were
made (backbone, checkpoint hash, strategy, feature, normalisation, image size, device, dtype, throughput).
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.devices import raw_tensor, raw_to_float, resolve_device
from dinoxfer_lib.dino import distributed
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.models.channels import ChannelEncoder, check_channels
from dinoxfer_lib.progress import progress_bar
from dinoxfer_lib.provenance import device_description

if TYPE_CHECKING:
    import anndata

# Images per forward pass on CPU: small enough that a pass's activations stay in cache (larger passes were slower
# for vit_micro at 64 px on 2 cores). GPUs take the whole batch.
CPU_CHUNK = 32

# torch.compile modes ``compile`` accepts by name (True is "default"). "max-autotune-no-cudagraphs" also times
# Triton matrix-product kernels against cuBLAS, with the bias and GELU fused into them: a little faster than the
# default mode, for much longer compilation (the performance chapter has the figures).
# The CUDA-graph modes are left out: the last, smaller batch runs eagerly, outside any graph.
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")


def extract_embeddings(
    dataset: ImageSet,
    encoder: ChannelEncoder,
    *,
    batch_size: int = 64,
    img_size: int | None = None,
    device: str | torch.device | None = None,
    out_path: str | os.PathLike | None = None,
    description: dict | None = None,
    compile: bool | str = False,
    shards: str | os.PathLike | None = None,
) -> anndata.AnnData | None:
    """Embed every image of ``dataset`` in order; return (and with ``out_path`` write) an AnnData.

    Parameters
    ----------
    dataset
        Images ``(N, C, H, W)`` in their raw dtype (uint16, uint8 or float), possibly memory-mapped; their
        ``channel_names`` must be the encoder's target channels in the same order.
    encoder
        A :class:`~dinoxfer_lib.models.channels.ChannelEncoder`: backbone + channel strategy + feature
        (``cls`` or ``cls4_patchmean``) + intensity normalisation.
    batch_size
        Images read and moved to the device at once. Larger is faster on a GPU until memory runs out
        (replication and bag of channels run C x this many images through the backbone).
    img_size
        Side the encoder sees (default: the backbone's own); images of another size are resized batch-wise
        (bilinear, antialiased when shrinking). Non-square images are stretched to a square.
    device
        Default: CUDA when available, else CPU (under ``torchrun``, this process's GPU).
    out_path
        Write an ``.h5ad`` here, streaming ``X``; the returned AnnData is read back from it.
    description
        Extra provenance merged into ``uns["embedding"]`` (e.g. the embedding set and where the backbone came from).
    compile
        Run the standardisation and the backbone through ``torch.compile`` as one graph (the last, smaller batch
        runs eagerly, so no second shape is compiled); ``True`` or a mode of
        :data:`COMPILE_MODES`. It costs seconds of compilation per process (about a minute with max-autotune) and
        pays off only on long runs: see the performance chapter for the measured gain and cost.
    shards
        Under a ``torch.distributed`` process group of more than one process: a folder every process can reach.
        Every process must call this function with the same arguments; each embeds its share into the folder and
        rank 0 assembles the result (``out_path`` is only written by rank 0, the other ranks return ``None``).
        Ignored without a process group.

    Returns
    -------
    anndata.AnnData
        ``X`` float32 ``(N, encoder.out_dim)``; ``obs`` indexed by ``image_id``; ``var`` names say which channel and
        feature each column is; ``obsm["labels"]`` (uint8), ``obsm["grades"]``; ``uns["class_names"]``,
        ``uns["channel_names"]``, ``uns["embedding"]``.
    """
    check_channels(encoder, dataset.channel_names)
    if batch_size < 1:
        raise ConfigError(f"batch_size = {batch_size}: expected >= 1")
    if len(dataset) == 0:
        raise DataError(f"{dataset.domain}: no images to embed")
    mode = compile_mode(compile)
    rank, world = distributed.rank_and_world()
    sharded = shards is not None and world > 1
    device = resolve_device(distributed.process_device() if device is None and sharded else device)
    size = (img_size or encoder.img_size,) * 2
    encoder = _on_device(encoder, device, mode=mode)
    options = {"device": device, "size": size, "batch_size": batch_size, "mode": mode}
    if sharded:
        return _extract_sharded(dataset, encoder, Path(shards), rank=rank, world=world, out_path=out_path,
                                description=description, **options)
    skeleton = _skeleton(dataset, encoder)
    with _EmbeddingSink(skeleton, out_path) as X:
        seconds = _embed_rows(dataset.images, encoder, X, desc=dataset.domain, **options)
        skeleton.uns["embedding"] = _provenance(dataset, encoder, description, seconds=seconds, **options)
    if out_path is None:
        skeleton.X = X
        return skeleton
    import anndata

    return anndata.read_h5ad(out_path)


def shard_rows(n: int, rank: int, world: int) -> range:
    """The contiguous rows of ``n`` that process ``rank`` of ``world`` embeds: the first ``n % world`` processes
    take one more, so shares differ by at most one image and together cover ``0..n`` in order."""
    share, extra = divmod(n, world)
    start = rank * share + min(rank, extra)
    return range(start, start + share + (rank < extra))


def _extract_sharded(dataset: ImageSet, encoder: ChannelEncoder, shards: Path, *, rank: int, world: int,
                     out_path: str | os.PathLike | None, description: dict | None, **options) -> anndata.AnnData | None:
    """This process's share into ``shards``; after all have written theirs, rank 0 assembles them in order."""
    rows = shard_rows(len(dataset), rank, world)
    shards.mkdir(parents=True, exist_ok=True)
    name = f"rank{rank:05d}-of-{world:05d}"
    partial = shards / f".{name}.partial.npy"
    X = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(rows), encoder.out_dim))
    seconds = _embed_rows(dataset.images[rows.start : rows.stop], encoder, X, desc=f"{dataset.domain} {name}",
                          **options)
    X.flush()
    del X
    os.replace(partial, shards / f"{name}.npy")
    (shards / f"{name}.json").write_text(json.dumps({"rows": [rows.start, rows.stop], "seconds": seconds}))
    distributed.barrier()  # every share is written
    result = None
    if rank == 0:
        result = _assemble_shards(dataset, encoder, shards, world=world, out_path=out_path, description=description,
                                  **options)
    distributed.barrier()  # rank 0 has read every share: the caller may remove the folder
    return result


def _assemble_shards(dataset: ImageSet, encoder: ChannelEncoder, shards: Path, *, world: int,
                     out_path: str | os.PathLike | None, description: dict | None, **options) -> anndata.AnnData:
    """The AnnData of the whole set from the ``world`` shares in ``shards``, rows in image order."""
    skeleton = _skeleton(dataset, encoder)
    seconds = []
    with _EmbeddingSink(skeleton, out_path) as X:
        for rank in range(world):
            name = f"rank{rank:05d}-of-{world:05d}"
            rows = shard_rows(len(dataset), rank, world)
            share = np.load(shards / f"{name}.npy", mmap_mode="r")
            if share.shape != (len(rows), encoder.out_dim):
                raise DataError(f"{shards / name}.npy: shape {share.shape}, expected {(len(rows), encoder.out_dim)}")
            X[rows.start : rows.stop] = share
            seconds.append(json.loads((shards / f"{name}.json").read_text())["seconds"])
        skeleton.uns["embedding"] = {
            **_provenance(dataset, encoder, description, seconds=max(seconds), **options),
            "processes": world,
        }
    if out_path is None:
        skeleton.X = X
        return skeleton
    import anndata

    return anndata.read_h5ad(out_path)


def _skeleton(dataset: ImageSet, encoder: ChannelEncoder) -> anndata.AnnData:
    """The AnnData without ``X``: obs, var names, label matrices, class and channel names."""
    import anndata

    skeleton = anndata.AnnData(obs=_obs(dataset), var=pd.DataFrame(index=encoder.feature_names()))
    skeleton.obsm["labels"] = dataset.labels.astype(np.uint8)
    skeleton.obsm["grades"] = dataset.grades
    skeleton.uns["class_names"] = list(dataset.class_names)
    skeleton.uns["channel_names"] = list(dataset.channel_names)
    return skeleton


def _embed_rows(images: np.ndarray, encoder: ChannelEncoder, X, *, device: torch.device, size: tuple[int, int],
                batch_size: int, mode: str | None, desc: str) -> float:
    """Embed ``images`` (N, C, H, W) into the rows of ``X`` (N, D), in order; returns the seconds it took."""
    chunk = CPU_CHUNK if device.type == "cpu" else batch_size
    side_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    uint16 = images.dtype == np.uint16
    started = time.perf_counter()
    bar = progress_bar(total=len(images), desc=f"embedding {desc}", unit="img")
    with torch.inference_mode(), bar:
        waiting = None  # the previous batch: its rows are copied to the host while this one computes
        for start, raw in _prefetched_batches(images, batch_size, pin=device.type == "cuda"):
            x = _prepare(raw, device, size, side_stream, uint16=uint16)  # (B, C, *size), raw intensities
            out = _embed(encoder, x, chunk, eager_below=min(chunk, batch_size) if mode else 0)  # (B, dim)
            if waiting is not None:
                bar.update(_store_rows(X, *waiting))
            waiting = (start, _to_host(out))
        if waiting is not None:
            bar.update(_store_rows(X, *waiting))
    return time.perf_counter() - started


def _provenance(dataset: ImageSet, encoder: ChannelEncoder, description: dict | None, *, seconds: float,
                device: torch.device, size: tuple[int, int], batch_size: int, mode: str | None) -> dict:
    """``uns["embedding"]``: how the numbers were made."""
    n = len(dataset)
    return {
        **encoder.describe(),
        **(description or {}),
        "domain": dataset.domain,
        "synthetic": bool(dataset.synthetic),
        "img_size": int(size[0]),
        "batch_size": int(batch_size),
        "device": device_description() if device.type == "cuda" else "cpu",
        "dtype": "bfloat16 weights" if device.type == "cuda" else "float32",
        "compiled": mode is not None,
        **({"compile_mode": mode} if mode else {}),
        "n_images": int(n),
        "seconds": round(seconds, 3),
        "images_per_second": round(n / max(seconds, 1e-9), 2),
    }


def _obs(dataset: ImageSet) -> pd.DataFrame:
    """The ImageSet's metadata indexed by ``image_id``; text columns as str so h5ad can store them."""
    obs = dataset.obs.copy()
    obs.index = pd.Index(obs["image_id"].astype(str).to_numpy())
    for column in obs.columns:
        if obs[column].dtype == object:
            obs[column] = obs[column].astype(str)
    return obs


def compile_mode(compile: bool | str) -> str | None:
    """The torch.compile mode ``compile`` asks for, ``None`` for eager; anything else is a one-line error."""
    if compile is False:
        return None
    if compile is True:
        return "default"
    if compile not in COMPILE_MODES:
        raise ConfigError(f"compile = {compile!r}: expected true, false or one of {', '.join(COMPILE_MODES)}")
    return compile


def _on_device(encoder: ChannelEncoder, device: torch.device, *, mode: str | None = None) -> ChannelEncoder:
    """The encoder moved to ``device`` in eval mode. On CUDA, or when compiling, a copy of it (made on the device, so
    it costs no transfer) whose backbone holds bfloat16 weights on CUDA, and whose standardisation and backbone are
    compiled as one graph in ``mode`` when one is given; the caller's model keeps its own precision and stays
    uncompiled.

    One graph rather than one compiled block reused twelve times: it also fuses each block's last addition into
    the next block's LayerNorm (faster end to end than compiling per block; the performance chapter has the
    figures). The per-image percentile scaling before it stays eager (its quantiles would sort in the graph)."""
    encoder = encoder.to(device).eval()
    if device.type != "cuda" and mode is None:
        return encoder
    encoder = copy.deepcopy(encoder)
    if device.type == "cuda":
        encoder.backbone.to(torch.bfloat16)
    if mode is not None:
        encoder.compile_features(mode)
    return encoder


def _embed(encoder: ChannelEncoder, x: torch.Tensor, chunk: int, *, eager_below: int) -> torch.Tensor:
    """A batch's embeddings, ``chunk`` images per call. A part smaller than ``eager_below`` (the last one) runs
    eagerly, so a compiled encoder never compiles a second shape (seconds) nor pads the part (wasted images)."""
    parts = []
    for part in x.split(chunk):
        with torch.compiler.set_stance("force_eager") if len(part) < eager_below else nullcontext():
            parts.append(encoder(part))
    return torch.cat(parts)


def _prepare(raw: torch.Tensor, device: torch.device, size: tuple[int, int],
             side_stream: torch.cuda.Stream | None = None, *, uint16: bool = False) -> torch.Tensor:
    """A raw batch on ``device`` as float32 at ``size``: it travels in its own (smaller) dtype and is converted and
    resized there (bilinear, antialiased when shrinking; uint16 as :func:`~dinoxfer_lib.devices.raw_to_float` says).

    With ``side_stream`` (CUDA) all of that is queued there, so it overlaps the model still computing the previous
    batch; the model's stream waits for it.
    """
    with torch.cuda.stream(side_stream) if side_stream is not None else nullcontext():
        x = raw_to_float(raw.to(device, non_blocking=True), uint16=uint16)
        if x.shape[-2:] != size:
            shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
            x = F.interpolate(x, size=size, mode="bilinear", antialias=shrink, align_corners=False)
    if side_stream is not None:
        compute = torch.cuda.current_stream(device)
        compute.wait_stream(side_stream)
        x.record_stream(compute)  # its memory is used on the compute stream, not only where it was allocated
    return x


def _read_batch(images: np.ndarray, start: int, batch_size: int, *, pin: bool) -> torch.Tensor:
    """An in-memory copy of one (memory-mapped) batch as a :func:`~dinoxfer_lib.devices.raw_tensor`. For a GPU it
    is read straight into page-locked memory (one copy, not a copy and then a pinned copy), so its transfer runs
    asynchronously."""
    batch = images[start : start + batch_size]
    if not pin:
        return raw_tensor(np.array(batch))
    with warnings.catch_warnings():  # a read-only memory map: it is only read from
        warnings.simplefilter("ignore", UserWarning)
        source = raw_tensor(batch)
    return torch.empty(source.shape, dtype=source.dtype, pin_memory=True).copy_(source)  # a multi-threaded copy


def _prefetched_batches(images: np.ndarray, batch_size: int, *, pin: bool) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, raw batch) in order; the next batch is read from disk while the caller embeds this one."""
    starts = range(0, len(images), batch_size)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_read_batch, images, starts[0], batch_size, pin=pin) if starts else None
        for i, start in enumerate(starts):
            batch = pending.result()
            if i + 1 < len(starts):
                pending = pool.submit(_read_batch, images, starts[i + 1], batch_size, pin=pin)
            yield start, batch


def _to_host(out: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    """Start copying a batch's embeddings to the host without waiting for them (an event marks when they are
    there), so the GPU already computes the next batch while the CPU writes this one."""
    if out.device.type != "cuda":
        return out.float(), None
    host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
    host.copy_(out.float(), non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    return host, done


def _store_rows(X, start: int, rows: tuple[torch.Tensor, torch.cuda.Event | None]) -> int:
    """Write one batch's rows once they have arrived on the host; returns how many."""
    host, done = rows
    if done is not None:
        done.synchronize()
    X[start : start + len(host)] = host.numpy()
    return len(host)


class _EmbeddingSink:
    """Where embedding rows go: a preallocated array, or the ``X`` dataset of an ``.h5ad`` being written.

    For a file, the AnnData skeleton (obs, var, obsm, uns) is written first under a temporary name, ``X`` is
    created as an empty (N, D) float32 dataset and filled block by block, ``uns`` is rewritten with the final
    provenance on exit, and only a complete file is renamed to ``out_path``.
    """

    def __init__(self, skeleton, out_path: str | os.PathLike | None) -> None:
        self.skeleton, self.out_path = skeleton, None if out_path is None else Path(out_path)
        self.shape = (skeleton.n_obs, skeleton.n_vars)

    def __enter__(self):
        if self.out_path is None:
            return np.empty(self.shape, dtype=np.float32)
        import h5py

        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out_path.with_name(f".{self.out_path.stem}.{uuid.uuid4().hex[:8]}.h5ad")
        self.skeleton.write_h5ad(self.tmp)
        self.file = h5py.File(self.tmp, "r+")
        rows = max(1, min(self.shape[0], (1 << 20) // max(1, 4 * self.shape[1])))  # ~1 MB row-block chunks
        X = self.file.create_dataset("X", shape=self.shape, dtype="f4", chunks=(rows, max(1, self.shape[1])))
        X.attrs["encoding-type"], X.attrs["encoding-version"] = "array", "0.2.0"  # anndata's dense-array spec
        return X

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.out_path is None:
            return
        from anndata.io import write_elem

        try:
            if exc_type is None:
                del self.file["uns"]
                write_elem(self.file, "uns", dict(self.skeleton.uns))
            self.file.close()
            if exc_type is None:
                os.replace(self.tmp, self.out_path)
        finally:
            self.tmp.unlink(missing_ok=True)
