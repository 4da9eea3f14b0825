"""Official DINOv2 backbones load by name: each registered name agrees with its manifest and builds its ViT."""

import dataclasses
import re

import pytest
import torch

from dinoxfer_lib.data.manifests import load_manifest
from dinoxfer_lib.errors import FetchError
from dinoxfer_lib.models.backbones import ARCHITECTURES, PRETRAINED, create_backbone
from dinoxfer_lib.models.checkpoints import build_backbone

NAMES = {"vit_small_patch14_dinov2": "dinov2_vits14", "vit_base_patch14_dinov2": "dinov2_vitb14",
         "vit_large_patch14_dinov2": "dinov2_vitl14"}


@pytest.mark.parametrize("name", NAMES)
def test_named_dinov2_weights_match_their_manifest_and_architecture(name):
    meta = PRETRAINED[name]
    manifest = load_manifest(meta.manifest)
    assert meta.manifest == NAMES[name] and meta.arch == name and name in manifest.description
    (file,) = manifest.files
    assert (file.filename, file.url) == (meta.filename, meta.url)
    assert meta.licence in manifest.licence
    # the shapes the manifest records for the published file are the ones the registered architecture builds
    layout = " ".join(manifest.layout.split())
    pos = tuple(int(n) for n in re.search(r"pos_embed \((\d+), (\d+), (\d+)\)", layout).groups())
    patch = tuple(int(n) for n in re.search(r"patch_embed\.proj\.weight \((\d+), (\d+), (\d+), (\d+)\)",
                                            layout).groups())
    last_block = int(re.search(r"blocks\.0-(\d+)\.", layout).group(1))
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = create_backbone(name, in_chans=3, img_size=518)
    state = model.state_dict()
    assert tuple(state["pos_embed"].shape) == pos and tuple(state["patch_embed.proj.weight"].shape) == patch
    assert len(model.blocks) == last_block + 1 and "blocks.0.ls1.gamma" in state


def test_a_dinov2_file_in_the_cache_loads_by_name(tmp_path, monkeypatch):
    name = "vit_small_patch14_dinov2"
    with pytest.raises(FetchError, match="dinoxfer fetch dinov2_vits14"):
        build_backbone(name, img_size=28, cache_dir=tmp_path)
    # the published layout (CLS position in pos_embed at 518 px, LayerScale, mask token), one block deep
    monkeypatch.setitem(ARCHITECTURES, name, dataclasses.replace(ARCHITECTURES[name], depth=1))
    torch.manual_seed(0)
    source = create_backbone(name, in_chans=3, img_size=518).eval()
    state = {**source.state_dict(), "mask_token": torch.zeros(1, 384)}
    torch.save(state, tmp_path / PRETRAINED[name].filename)
    built, report = build_backbone(name, img_size=518, cache_dir=tmp_path)
    assert built.dinoxfer_arch == name and built.dinoxfer_weights["source"] == name
    assert report.dropped_keys == ("mask_token",) and report.pos_embed_grid is None
    x = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        assert torch.allclose(built(x), source(x))
