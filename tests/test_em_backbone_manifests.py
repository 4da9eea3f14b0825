"""The manifests of paper 004's data (Lucchi++, VNC) and backbones (DINOv2, DINOv3, OpenCLIP) parse and agree."""

import pytest

from dinoxfer_lib.data.manifests import load_manifest

DATASETS = {"lucchi_pp": "lucchi_pp.zip", "vnc": "groundtruth-drosophila-vnc-master.zip"}
BACKBONES = {
    "dinov2_vits14": ("auto", "vit_small_patch14_dinov2"),
    "dinov2_vitb14": ("auto", "vit_base_patch14_dinov2"),
    "dinov2_vitl14": ("auto", "vit_large_patch14_dinov2"),
    "dinov3_vits16": ("manual", "vit_small_patch16_dinov3"),
    "dinov3_vitb16": ("manual", "vit_base_patch16_dinov3"),
    "openclip_vitb16_laion2b": ("auto", "vit_base_patch16_clip_224"),
}


@pytest.mark.parametrize("name", DATASETS)
def test_em_dataset_manifests_pin_their_archives(name):
    manifest = load_manifest(name)
    assert manifest.kind == "dataset" and manifest.download_mode == "auto"
    (archive,) = manifest.files
    assert archive.filename == DATASETS[name] and archive.sha256 is not None
    assert "read_" in manifest.layout  # says which reader takes the layout


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_manifests_name_a_timm_architecture(name):
    import timm

    mode, arch = BACKBONES[name]
    manifest = load_manifest(name)
    assert manifest.kind == "checkpoint" and manifest.download_mode == mode
    assert len(manifest.files) == 1 and manifest.licence
    assert arch in manifest.description and timm.is_model(arch)  # the architecture the weights load into
    if mode == "manual":
        assert manifest.files[0].filename in manifest.instructions


REGISTERED = {name: arch for name, (mode, arch) in BACKBONES.items() if mode == "auto"}


@pytest.mark.parametrize("name", REGISTERED)
def test_named_004_backbones_build_timm_s_architecture(name):
    """Each downloadable backbone of 004 is registered with its manifest's file and builds exactly the model timm
    builds for it: the same weights, shapes and LayerNorm epsilon (on the meta device: no memory, no init)."""
    import timm
    import torch

    from dinoxfer_lib.models.backbones import PRETRAINED, create_backbone
    from dinoxfer_lib.models.checkpoints import infer_architecture

    meta = PRETRAINED[name]
    assert meta.manifest == name and meta.filename == load_manifest(name).files[0].filename
    with torch.device("meta"):
        theirs = timm.create_model(REGISTERED[name], pretrained=False, num_classes=0, img_size=224)
        ours = create_backbone(meta.arch, in_chans=meta.in_chans, img_size=224)
    shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == shapes
    eps = {m.eps for m in theirs.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert {m.eps for m in ours.modules() if isinstance(m, torch.nn.LayerNorm)} == eps
    assert infer_architecture(theirs.state_dict(), name) == (meta.arch, 3)  # what build_backbone picks
