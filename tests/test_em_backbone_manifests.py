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
