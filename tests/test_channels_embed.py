"""Channel strategies put each channel where the paper says, and extraction is batched, ordered and reproducible."""

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.embed import extract_embeddings
from dinoxfer_lib.errors import ConfigError
from dinoxfer_lib.models.backbones import create_backbone
from dinoxfer_lib.models.channels import make_encoder, scale_per_image


class Recorder(nn.Module):
    """A stand-in backbone that remembers its inputs and returns their per-slot means as the 'CLS' token."""

    def __init__(self, in_chans):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, 1, 1)
        self.embed_dim = in_chans
        self.seen = []

    def forward_features(self, x):
        self.seen.append(x.clone())
        return x.mean(dim=(2, 3))[:, None, :].expand(-1, 2, -1)


def images(n=6, c=2, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((n, c, size, size)).astype(np.float32))


def test_mapping_places_protein_red_nucleus_green_blue_black():
    rec = Recorder(3)
    enc = make_encoder("mapping", rec, target_channels=("protein", "nucleus"), slots=("red", "green", "blue"), slot_table="imagenet")
    x = images()
    enc(x)
    fed = rec.seen[-1]
    assert torch.equal(fed[:, 0], x[:, 0]) and torch.equal(fed[:, 1], x[:, 1])
    assert torch.count_nonzero(fed[:, 2]) == 0


def test_mapping_into_hpa_slots_follows_the_slot_names():
    rec = Recorder(4)
    slots = ("microtubules", "protein", "nucleus", "er")
    enc = make_encoder("mapping", rec, target_channels=("protein", "nucleus"), slots=slots, slot_table="hpa")
    x = images()
    enc(x)
    fed = rec.seen[-1]
    assert torch.equal(fed[:, 1], x[:, 0]) and torch.equal(fed[:, 2], x[:, 1])
    assert torch.count_nonzero(fed[:, 0]) == 0 and torch.count_nonzero(fed[:, 3]) == 0


def test_replication_concatenates_per_channel_in_order():
    backbone = create_backbone("vit_micro", in_chans=3, img_size=16).eval()
    enc = make_encoder("replication", backbone, target_channels=("protein", "nucleus"), slots=("red", "green", "blue"))
    x = images()
    with torch.no_grad():
        out, swapped = enc(x), enc(x.flip(1))
    d = backbone.embed_dim
    assert out.shape == (6, 2 * d) == (6, enc.out_dim)
    assert torch.allclose(out[:, :d], swapped[:, d:], atol=1e-5) and torch.allclose(out[:, d:], swapped[:, :d], atol=1e-5)


@pytest.mark.parametrize("reduce, factor", [("concat", 5), ("mean", 1)])
def test_bag_of_channels_any_channel_count(reduce, factor):
    backbone = create_backbone("vit_micro", in_chans=1, img_size=16).eval()
    names = tuple(f"c{i}" for i in range(5))
    enc = make_encoder("bag_of_channels", backbone, target_channels=names, reduce=reduce)
    with torch.no_grad():
        out = enc(images(c=5))
    assert out.shape == (6, factor * backbone.embed_dim) == (6, enc.out_dim)


def test_multilayer_feature_is_five_widths():
    backbone = create_backbone("vit_micro", in_chans=2, img_size=16).eval()
    enc = make_encoder("native", backbone, target_channels=("protein", "nucleus"), feature="cls4_patchmean")
    with torch.no_grad():
        assert enc(images()).shape == (6, 5 * backbone.embed_dim)


def test_scaling_is_per_image_and_channel():
    x = images()
    x[0, 0] *= 1000
    scaled = scale_per_image(x)
    assert scaled.min() >= 0 and scaled.max() <= 1
    assert torch.allclose(scaled[0, 0], scale_per_image(x[:1] / 1000)[0, 0], atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"strategy": "fusion"}, "mapping"),
        ({"strategy": "native"}, "mapping or replication"),
        ({"strategy": "mapping", "slot_table": {"protein": "Z"}}, "'Z'"),
        ({"strategy": "native", "feature": "gem"}, "cls4_patchmean"),
    ],
)
def test_bad_strategy_settings_are_clear(kwargs, fragment):
    backbone = create_backbone("vit_micro", in_chans=3, img_size=16)
    strategy = kwargs.pop("strategy")
    with pytest.raises(ConfigError, match=fragment):
        make_encoder(strategy, backbone, target_channels=("protein", "nucleus"), slots=("red", "green", "blue"), **kwargs)


def dataset(n=10):
    rng = np.random.default_rng(1)
    return ImageSet(
        images=rng.integers(100, 60000, (n, 2, 24, 24)).astype(np.uint16),
        labels=rng.random((n, 3)) < 0.5,
        grades=np.zeros((n, 3)),
        obs=pd.DataFrame({"image_id": [f"im{i}" for i in range(n)], "group": "g", "batch": "b", "domain": "t"}),
        class_names=("a", "b", "c"),
        channel_names=("protein", "nucleus"),
        domain="t",
        synthetic=True,
    )


def test_extraction_is_ordered_and_batch_size_independent(tmp_path):
    torch.manual_seed(0)
    backbone = create_backbone("vit_micro", in_chans=2, img_size=16).eval()
    enc = make_encoder("native", backbone, target_channels=("protein", "nucleus"))
    data = dataset()
    a = extract_embeddings(data, enc, batch_size=3, img_size=16)
    b = extract_embeddings(data, enc, batch_size=10, img_size=16)
    one = extract_embeddings(data.subset(np.array([4])), enc, batch_size=1, img_size=16)
    assert np.allclose(a.X, b.X, atol=1e-5)
    assert np.allclose(a.X[4], one.X[0], atol=1e-5)
    path = tmp_path / "emb.h5ad"
    extract_embeddings(data, enc, batch_size=4, img_size=16, out_path=path, description={"backbone": "micro"})
    back = anndata.read_h5ad(path)
    assert list(back.obs_names) == [f"im{i}" for i in range(10)]
    assert back.uns["embedding"]["backbone"] == "micro" and back.uns["embedding"]["strategy"] == "native"
    assert np.array_equal(back.obsm["labels"], data.labels.astype(np.uint8))
    assert back.X.dtype == np.float32 and back.X.shape == (10, backbone.embed_dim)
