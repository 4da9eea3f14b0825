"""Channel strategies put each channel where the paper says, normalisation is explicit, and extraction is batched,
ordered, reproducible and streams to .h5ad."""

import shutil

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dinoxfer_lib.data.dataset import ImageSet, load_imageset, save_imageset
from dinoxfer_lib.embed import extract_embeddings
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED, create_backbone
from dinoxfer_lib.models.channels import (
    Scaling,
    dataset_scaling,
    make_encoder,
    percentiles,
    scale_intensities,
)

IDENTITY = Scaling(bounds=((0.0, 0.0), (1.0, 1.0)))  # inputs already in [0, 1] pass unchanged
OPENCELL = ("protein", "nucleus")


class Recorder(nn.Module):
    """A stand-in backbone that remembers what it was fed and returns per-slot means as its 'CLS' token."""

    def __init__(self, in_chans):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, 1, 1)
        self.patch_embed.img_size = (16, 16)
        self.embed_dim = in_chans
        self.seen = []

    def forward_features(self, x):
        self.seen.append(x.clone())
        return x.mean(dim=(2, 3))[:, None, :].expand(-1, 2, -1)  # (B, tokens, D)


def images(n=6, c=2, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((n, c, size, size)).astype(np.float32))


def micro(in_chans, seed=0):
    torch.manual_seed(seed)
    return create_backbone("vit_micro", in_chans=in_chans, img_size=16).eval()


def test_mapping_places_protein_red_nucleus_green_blue_black():
    rec = Recorder(3)
    enc = make_encoder("mapping", rec, target_channels=OPENCELL, slots=PRETRAINED["dino_vitb8_imagenet"].slots,
                       slot_table="imagenet", scaling=IDENTITY)
    x = images()
    enc(x)
    fed = rec.seen[-1]
    assert torch.equal(fed[:, 0], x[:, 0]) and torch.equal(fed[:, 1], x[:, 1])
    assert torch.count_nonzero(fed[:, 2]) == 0
    assert len(rec.seen) == 1  # one forward pass


def test_imagenet_standardisation_makes_the_empty_slot_true_black():
    rec = Recorder(3)
    enc = make_encoder("mapping", rec, target_channels=OPENCELL, slots=("red", "green", "blue"),
                       slot_table="imagenet", scaling=IDENTITY, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    x = images()
    enc(x)
    fed = rec.seen[-1]
    assert torch.allclose(fed[:, 0], (x[:, 0] - 0.485) / 0.229)
    assert torch.allclose(fed[:, 2], torch.full_like(fed[:, 2], -0.406 / 0.225))
    assert "mean/std" in enc.describe()["normalisation"]


def test_mapping_into_dino4cells_slots_follows_the_slot_names():
    rec = Recorder(4)
    slots = PRETRAINED["dino4cells_hpa_fov"].slots
    enc = make_encoder("mapping", rec, target_channels=OPENCELL, slots=slots, slot_table="hpa", scaling=IDENTITY,
                       per_image_zscore=True)
    x = images()
    enc(x)
    fed = rec.seen[-1]
    p, nuc = slots.index("protein"), slots.index("nucleus")
    for i, slot in ((0, p), (1, nuc)):  # z-scored per image and slot
        assert torch.allclose(fed[:, slot].mean(dim=(1, 2)), torch.zeros(6), atol=1e-5)
        assert torch.allclose(fed[:, slot].std(dim=(1, 2), unbiased=False), torch.ones(6), atol=1e-4)
        assert torch.allclose(fed[:, slot], (x[:, i] - x[:, i].mean((1, 2), keepdim=True))
                              / x[:, i].std((1, 2), unbiased=False, keepdim=True), atol=1e-4)
    empty = [s for s in range(4) if s not in (p, nuc)]
    assert torch.count_nonzero(fed[:, empty]) == 0  # black stays black after the z-score
    assert enc.describe()["slot_map"] == {"protein": "protein", "nucleus": "nucleus"}


def test_replication_concatenates_per_channel_in_order():
    backbone = micro(3)
    enc = make_encoder("replication", backbone, target_channels=OPENCELL, slots=("red", "green", "blue"))
    x = images() * 1000
    with torch.no_grad():
        out, swapped = enc(x), enc(x.flip(1))
        protein_alone = backbone.forward_features(scale_intensities(x, Scaling())[:, :1].expand(-1, 3, -1, -1))[:, 0]
    d = backbone.embed_dim
    assert out.shape == (6, 2 * d) == (6, enc.out_dim)
    assert torch.allclose(out[:, :d], protein_alone, atol=1e-5)
    assert torch.allclose(out[:, :d], swapped[:, d:], atol=1e-5)
    assert torch.allclose(out[:, d:], swapped[:, :d], atol=1e-5)
    assert enc.feature_names()[d] == "nucleus:cls:0"


@pytest.mark.parametrize("reduce, factor", [("concat", 5), ("mean", 1)])
def test_bag_of_channels_takes_any_channel_count(reduce, factor):
    backbone = micro(1)
    names = tuple(f"c{i}" for i in range(5))
    enc = make_encoder("bag_of_channels", backbone, target_channels=names, reduce=reduce)
    x = images(c=5)
    with torch.no_grad():
        out = enc(x)
        three = make_encoder("bag_of_channels", backbone, target_channels=names[:3], reduce=reduce)(x[:, :3])
    d = backbone.embed_dim
    assert out.shape == (6, factor * d) == (6, enc.out_dim)
    if reduce == "concat":  # each channel's block is that channel's own embedding, whatever the others are
        assert torch.allclose(out[:, : 3 * d], three, atol=1e-5)


def test_multilayer_feature_is_five_widths_and_ends_with_the_plain_cls():
    backbone = micro(2)
    x = images()
    with torch.no_grad():
        wide = make_encoder("native", backbone, target_channels=OPENCELL, feature="cls4_patchmean")(x)
        cls = make_encoder("native", backbone, target_channels=OPENCELL)(x)
    d = backbone.embed_dim
    assert wide.shape == (6, 5 * d)
    assert torch.allclose(wide[:, 3 * d : 4 * d], cls, atol=1e-5)  # CLS of the last block = the paper's feature


def test_per_image_scaling_removes_gain_and_offset():
    x = images()
    assert torch.allclose(scale_intensities(x * 900 + 120, Scaling()), scale_intensities(x, Scaling()), atol=1e-5)
    scaled = scale_intensities(x * 900, Scaling())
    assert scaled.min() >= 0 and scaled.max() <= 1


def test_percentiles_match_numpy_beyond_torch_quantile_limits():
    x = torch.rand(3, 1001)
    got = percentiles(x, (1.0, 99.8)).numpy()
    assert np.allclose(got, np.percentile(x.numpy(), [1.0, 99.8], axis=-1), atol=1e-6)
    big = torch.rand(1, 17_000_000)  # torch.quantile refuses more than 16 M elements
    assert percentiles(big, (50.0,)).shape == (1, 1)


def test_dataset_scaling_uses_fixed_bounds_per_channel():
    raw = np.random.default_rng(0).integers(0, 4000, (20, 2, 8, 8)).astype(np.uint16)
    scaling = dataset_scaling(raw, max_images=20)
    expected = np.percentile(raw.transpose(1, 0, 2, 3).reshape(2, -1).astype(np.float32), [1, 99.8], axis=1)
    assert np.allclose(scaling.bounds, expected, rtol=1e-5)
    dim_image = torch.from_numpy(raw[:1].astype(np.float32)) / 4  # a dimmer image stays dimmer
    assert scale_intensities(dim_image, scaling).mean() < scale_intensities(dim_image * 4, scaling).mean()
    assert "dataset statistics" in scaling.describe()


@pytest.mark.parametrize(
    "strategy, kwargs, fragment",
    [
        ("fusion", {}, "mapping, replication, bag_of_channels, native"),
        ("native", {}, "mapping or replication"),
        ("mapping", {"slot_table": {"protein": "Z"}}, "'Z'"),
        ("mapping", {"slot_table": "cellpainting"}, "imagenet, hpa"),
        ("mapping", {}, "needs a slot_table"),
        ("replication", {"feature": "gem"}, "cls4_patchmean"),
        ("bag_of_channels", {}, "single-channel"),
        ("bag_of_channels", {"reduce": "max"}, "concat, mean"),
        ("replication", {"mean": IMAGENET_MEAN, "per_image_zscore": True}, "not both"),
    ],
)
def test_bad_strategy_settings_are_clear(strategy, kwargs, fragment):
    backbone = create_backbone("vit_micro", in_chans=3, img_size=16)
    kwargs = {"std": IMAGENET_STD, **kwargs} if "mean" in kwargs else kwargs
    with pytest.raises(ConfigError, match=fragment):
        make_encoder(strategy, backbone, target_channels=OPENCELL, slots=("red", "green", "blue"), **kwargs)


def dataset(n=10, size=24, dtype=np.uint16):
    rng = np.random.default_rng(1)
    return ImageSet(
        images=rng.integers(100, 250, (n, 2, size, size)).astype(dtype),
        labels=rng.random((n, 3)) < 0.5,
        grades=np.zeros((n, 3)),
        obs=pd.DataFrame({"image_id": [f"im{i}" for i in range(n)], "group": "g", "batch": "b", "domain": "t",
                          "plate": np.arange(n)}),
        class_names=("a", "b", "c"),
        channel_names=OPENCELL,
        domain="t",
        synthetic=True,
    )


def test_extraction_is_ordered_batch_size_independent_and_streams_to_h5ad(tmp_path):
    save_imageset(dataset(), tmp_path / "set")
    data = load_imageset(tmp_path / "set")  # read-only memory map, as the pipeline hands it over
    assert isinstance(data.images, np.memmap)
    enc = make_encoder("native", micro(2), target_channels=OPENCELL)
    a = extract_embeddings(data, enc, batch_size=3)  # 24 px images resized to the backbone's 16 px
    b = extract_embeddings(data, enc, batch_size=10)
    one = extract_embeddings(data.subset(np.array([4])), enc, batch_size=1)
    assert np.allclose(a.X, b.X, atol=1e-5) and np.allclose(a.X[4], one.X[0], atol=1e-5)

    path = tmp_path / "out" / "emb.h5ad"
    written = extract_embeddings(data, enc, batch_size=4, out_path=path, description={"set": "micro_native"})
    back = anndata.read_h5ad(path)
    assert not list(path.parent.glob(".*"))  # no temporary file left behind
    assert np.allclose(back.X, a.X, atol=1e-5) and np.array_equal(written.X, back.X)
    assert back.X.dtype == np.float32 and back.X.shape == (10, 192)
    assert list(back.obs_names) == [f"im{i}" for i in range(10)] and list(back.obs["plate"]) == list(range(10))
    assert np.array_equal(back.obsm["labels"], data.labels.astype(np.uint8))
    assert list(back.uns["class_names"]) == ["a", "b", "c"]
    meta = back.uns["embedding"]
    assert meta["set"] == "micro_native" and meta["strategy"] == "native" and meta["feature"] == "cls"
    assert meta["img_size"] == 16 and meta["dim"] == 192 and meta["device"] == "cpu" and meta["dtype"] == "float32"
    assert meta["arch"] == "vit_micro" and meta["weights"] == "random initialisation"
    assert "percentile" in meta["normalisation"]


def test_extraction_records_the_checkpoint_and_accepts_any_dtype(tmp_path):
    from dinoxfer_lib.models.checkpoints import build_backbone, save_backbone

    path = save_backbone(micro(2, seed=3), tmp_path / "teacher_backbone.safetensors")
    backbone, report = build_backbone(path, img_size=16)
    enc = make_encoder("native", backbone, target_channels=OPENCELL)
    as_uint16 = extract_embeddings(dataset(size=16), enc, batch_size=4)
    as_float = extract_embeddings(dataset(size=16, dtype=np.float64), enc, batch_size=4)
    as_uint8 = extract_embeddings(dataset(size=16, dtype=np.uint8), enc, batch_size=4)
    assert np.allclose(as_uint16.X, as_float.X, atol=1e-5) and np.allclose(as_uint16.X, as_uint8.X, atol=1e-5)
    bright = dataset(size=16)
    bright.images = bright.images * 257  # up to 64,250: the upper half of the 16-bit range must stay positive
    as_float_bright = dataset(size=16, dtype=np.float64)
    as_float_bright.images = bright.images.astype(np.float64)
    assert np.allclose(extract_embeddings(bright, enc, batch_size=4).X,
                       extract_embeddings(as_float_bright, enc, batch_size=4).X, atol=1e-5)
    signed = dataset(size=16, dtype=np.int16)
    signed.images = signed.images - 300  # background-subtracted data go negative and must stay negative
    as_float_signed = dataset(size=16, dtype=np.float64)
    as_float_signed.images = signed.images.astype(np.float64)
    assert np.allclose(extract_embeddings(signed, enc, batch_size=4).X,
                       extract_embeddings(as_float_signed, enc, batch_size=4).X, atol=1e-5)
    assert as_uint16.uns["embedding"]["weights_sha256"] == report.sha256


@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile on a CPU needs a C++ compiler")
@pytest.mark.parametrize("compile", [True, "max-autotune-no-cudagraphs"])
def test_compiled_extraction_matches_eager_and_leaves_the_callers_model_alone(compile):
    """Compiling is a speed option only, in either mode: same embeddings, in order, with a smaller last batch (10
    images in batches of 4); the caller's encoder is neither compiled nor changed, and a second extraction (a new
    copy of the encoder) reuses the graph instead of compiling again."""
    data = dataset(n=10)
    enc = make_encoder("native", micro(2), target_channels=OPENCELL)
    eager = extract_embeddings(data, enc, batch_size=4)
    stats = torch._dynamo.utils.counters["stats"]
    captured, graphs = stats["calls_captured"], stats["unique_graphs"]
    compiled = extract_embeddings(data, enc, batch_size=4, compile=compile)
    assert stats["calls_captured"] > captured  # the backbone did go through dynamo ...
    assert stats["unique_graphs"] - graphs <= 1  # ... as one graph for one shape: the last batch of 2 ran eagerly
    assert compiled.X.shape == (10, 192) and np.allclose(compiled.X, eager.X, atol=1e-4)
    assert compiled.uns["embedding"]["compiled"] and not eager.uns["embedding"]["compiled"]
    assert compiled.uns["embedding"]["compile_mode"] == ("default" if compile is True else compile)
    assert "_embed" not in vars(enc)  # the caller's encoder is not compiled, nor are its blocks
    assert all(getattr(block, "_compiled_call_impl", None) is None for block in enc.backbone.blocks)
    graphs, captured = stats["unique_graphs"], stats["calls_captured"]
    again = extract_embeddings(data, enc, batch_size=4, compile=compile)
    assert (stats["unique_graphs"], stats["calls_captured"]) == (graphs, captured)
    assert np.array_equal(again.X, compiled.X)


def test_an_unknown_compile_mode_is_refused_before_any_work(tmp_path):
    out = tmp_path / "emb.h5ad"
    enc = make_encoder("native", micro(2), target_channels=OPENCELL)
    with pytest.raises(ConfigError, match="compile = 'fastest': expected true, false or one of default, max-autot"):
        extract_embeddings(dataset(n=4), enc, batch_size=4, out_path=out, compile="fastest")
    assert not list(tmp_path.iterdir())


def test_channel_order_must_match_the_encoder():
    enc = make_encoder("native", micro(2), target_channels=("nucleus", "protein"))
    with pytest.raises(DataError, match="in that order"):
        extract_embeddings(dataset(), enc, batch_size=4)


def test_single_channel_copy_of_a_four_channel_backbone_equals_replication():
    from dinoxfer_lib.models.channels import single_channel_copy

    four = micro(4)
    x = images(c=2)
    with torch.no_grad():
        boc = make_encoder("bag_of_channels", single_channel_copy(four), target_channels=OPENCELL)(x)
        rep = make_encoder("replication", four, target_channels=OPENCELL)(x)
    assert single_channel_copy(four).patch_embed.proj.in_channels == 1 and four.patch_embed.proj.in_channels == 4
    assert torch.allclose(boc, rep, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_extraction_matches_cpu_fp32():
    """bf16 weights on the GPU may round, not change the embedding: each image's vector points the same way; and
    the caller's model keeps its fp32 weights."""
    data = dataset(n=12)
    enc = make_encoder("native", micro(2), target_channels=OPENCELL)
    cpu = extract_embeddings(data, enc, batch_size=5, device="cpu").X
    gpu = extract_embeddings(data, enc, batch_size=5, device="cuda")
    assert gpu.uns["embedding"]["dtype"] == "bfloat16 weights" and gpu.X.dtype == np.float32
    assert enc.backbone.patch_embed.proj.weight.dtype == torch.float32
    cosine = (cpu * gpu.X).sum(1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(gpu.X, axis=1)
    assert cosine.min() > 0.99
    compiled = extract_embeddings(data, enc, batch_size=5, device="cuda", compile=True).X
    assert np.allclose(compiled, gpu.X, atol=0.05 * np.abs(gpu.X).max())
