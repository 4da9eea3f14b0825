"""Every checkpoint layout loads into a timm ViT and reproduces the source model's outputs exactly; unsafe or
mismatched files fail with one clear line."""

import argparse
import os

import pytest
import torch
from safetensors.torch import save_file

from dinoxfer_lib.errors import ConfigError, DataError, FetchError
from dinoxfer_lib.models.backbones import ARCHITECTURES, PRETRAINED, create_backbone, pretrained_weights
from dinoxfer_lib.models.checkpoints import build_backbone, load_backbone_weights, save_backbone

IMG = 32


def vit(in_chans=2, seed=0, img_size=IMG):
    torch.manual_seed(seed)
    return create_backbone("vit_micro", in_chans=in_chans, img_size=img_size).eval()


def outputs(model, in_chans=2, size=IMG):
    torch.manual_seed(123)
    with torch.no_grad():
        return model.forward_features(torch.randn(2, in_chans, size, size))


def prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


def projection_head(prefix=""):
    """Keys of DINO's projection head (DINOHead), which must be dropped."""
    return {
        f"{prefix}head.mlp.0.weight": torch.randn(16, 192),
        f"{prefix}head.mlp.0.bias": torch.zeros(16),
        f"{prefix}head.last_layer.weight_g": torch.ones(8, 1),
        f"{prefix}head.last_layer.weight_v": torch.randn(8, 16),
    }


def dino_full_checkpoint(teacher, student):
    """The official main_dino.py layout: DDP student (module.backbone.), bare teacher (backbone.), heads, extras."""
    return {
        "student": {**prefixed(student.state_dict(), "module.backbone."), **projection_head("module.")},
        "teacher": {**prefixed(teacher.state_dict(), "backbone."), **projection_head()},
        "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 5e-4, "params": [0]}]},
        "epoch": 3,
        "args": argparse.Namespace(arch="vit_micro", patch_size=8, out_dim=8, lr=5e-4, output_dir="/tmp/x"),
        "dino_loss": {"center": torch.zeros(1, 8)},
        "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
    }


def write(tmp_path, layout, source):
    """``source`` saved in ``layout``; returns the file path."""
    path = tmp_path / f"{layout}.pth"
    if layout == "official_backbone":
        torch.save(source.state_dict(), path)
    elif layout == "official_full":
        torch.save(dino_full_checkpoint(source, vit(seed=99)), path)
    elif layout == "timm_state_dict":
        from timm.models.vision_transformer import VisionTransformer

        classifier = VisionTransformer(img_size=IMG, patch_size=8, in_chans=2, num_classes=10, embed_dim=192, depth=4,
                                       num_heads=3)
        classifier.load_state_dict(source.state_dict(), strict=False)  # backbone identical, plus a 10-class head
        torch.save(classifier.state_dict(), path)
    elif layout == "timm_train_checkpoint":
        torch.save({"epoch": 2, "arch": "vit_micro", "state_dict": prefixed(source.state_dict(), "module.")}, path)
    elif layout == "safetensors_plain":
        path = tmp_path / "plain.safetensors"
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    elif layout == "safetensors_ours":
        path = save_backbone(source, tmp_path / "teacher_backbone.safetensors")
    elif layout == "ours_full":  # our DINO trainer: official layout, single process (no module.), config dict
        torch.save({"teacher": {**prefixed(source.state_dict(), "backbone."), **projection_head()},
                    "student": prefixed(vit(seed=98).state_dict(), "backbone."), "epoch": 1,
                    "config": {"arch": "vit_micro", "lr": 5e-4}}, path)
    return path


LAYOUTS = ["official_backbone", "official_full", "timm_state_dict", "timm_train_checkpoint", "safetensors_plain",
           "safetensors_ours", "ours_full"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_reproduces_the_source_outputs(tmp_path, layout):
    source = vit(seed=1)
    path = write(tmp_path, layout, source)
    target = vit(seed=9)
    assert not torch.equal(outputs(source), outputs(target))
    report = load_backbone_weights(target, path)
    assert torch.equal(outputs(source), outputs(target))
    assert len(report.sha256) == 64 and report.pos_embed_grid is None and report.unexpected_keys == ()
    built, built_report = build_backbone(path, img_size=IMG)
    assert not built.training and built.dinoxfer_arch == "vit_micro"
    assert torch.equal(outputs(source), outputs(built)) and built_report.sha256 == report.sha256


def test_teacher_by_default_student_on_request_head_dropped(tmp_path):
    teacher, student = vit(seed=1), vit(seed=2)
    path = tmp_path / "checkpoint.pth"
    torch.save(dino_full_checkpoint(teacher, student), path)
    target = vit(seed=9)
    report = load_backbone_weights(target, path)
    assert report.layout == "dino_full" and report.which == "teacher"
    assert sorted(report.dropped_keys) == sorted(projection_head())
    assert torch.equal(outputs(teacher), outputs(target))
    report = load_backbone_weights(target, path, which="student")
    assert report.which == "student" and all(k.startswith("module.head.") for k in report.dropped_keys)
    assert torch.equal(outputs(student), outputs(target))
    with pytest.raises(ConfigError, match="teacher, student"):
        load_backbone_weights(target, path, which="ema")


def test_dino4cells_four_channel_checkpoint_builds_a_four_channel_backbone(tmp_path):
    source = vit(in_chans=4, seed=1)
    path = tmp_path / "DINO_FOV_checkpoint.pth"
    torch.save(dino_full_checkpoint(source, vit(in_chans=4, seed=2)), path)
    built, report = build_backbone(path, img_size=IMG)
    assert built.patch_embed.proj.in_channels == 4 and report.which == "teacher"
    assert torch.equal(outputs(source, 4), outputs(built, 4))


def test_wrong_channel_count_names_the_strategies(tmp_path):
    path = tmp_path / "hpa.pth"
    torch.save(vit(in_chans=4).state_dict(), path)
    for load in (lambda: load_backbone_weights(vit(in_chans=2), path),
                 lambda: build_backbone(path, img_size=IMG, in_chans=2)):
        with pytest.raises(DataError) as info:
            load()
        message = str(info.value)
        assert "4 input channels" in message and "'mapping'" in message and "'replication'" in message
        assert "\n" not in message


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"teacher": vit().state_dict(), "args": Payload()}, path)
    with pytest.raises(DataError) as info:
        load_backbone_weights(vit(), path)
    assert "refused" in str(info.value) and "system" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_position_embeddings_are_interpolated_for_another_size(tmp_path):
    path = tmp_path / "ckpt.pth"
    source = vit()
    torch.save(source.state_dict(), path)
    bigger = vit(img_size=48)
    report = load_backbone_weights(bigger, path)
    assert report.pos_embed_grid == ((4, 4), (6, 6))
    assert outputs(bigger, size=48).shape == (2, 1 + 36, 192)
    assert torch.equal(bigger.cls_token, source.cls_token)


def test_missing_backbone_weights_are_an_error(tmp_path):
    state = vit().state_dict()
    del state["blocks.0.attn.qkv.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(DataError, match="lacks 1 backbone weights, e.g. blocks.0.attn.qkv.weight"):
        load_backbone_weights(vit(), path)


def test_unexpected_keys_are_reported_not_fatal():
    state = {**vit(seed=1).state_dict(), "mask_token": torch.zeros(1, 192)}
    report = load_backbone_weights(vit(), state)
    assert report.unexpected_keys == ("mask_token",) and report.sha256 == ""


def test_other_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "micro.pth"
    torch.save(vit().state_dict(), path)
    with pytest.raises(DataError, match="wrong shape"):
        build_backbone(path, img_size=IMG, arch="vit_small_patch8")


def test_truncated_or_foreign_files_are_clear_errors(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(vit().state_dict(), path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="cut.pth.*corrupt"):
        load_backbone_weights(vit(), path)
    resnet = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 2)}, resnet)
    with pytest.raises(DataError, match="no ViT backbone"):
        load_backbone_weights(vit(), resnet)
    with pytest.raises(DataError, match="not found"):
        build_backbone(tmp_path / "absent.pth", img_size=IMG)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors header")
    with pytest.raises(DataError, match="cannot read safetensors"):
        load_backbone_weights(vit(), broken)


def test_named_weights_resolve_from_the_download_cache(tmp_path):
    with pytest.raises(FetchError, match="dinoxfer fetch dino_vitb8_imagenet"):
        build_backbone("dino_vitb8_imagenet", img_size=IMG, cache_dir=tmp_path)
    source = vit(in_chans=3, seed=4)  # a stand-in file under the published name
    torch.save(source.state_dict(), tmp_path / PRETRAINED["dino_vitb8_imagenet"].filename)
    built, _ = build_backbone("dino_vitb8_imagenet", img_size=IMG, cache_dir=tmp_path)
    assert built.dinoxfer_weights["source"] == "dino_vitb8_imagenet"
    assert torch.equal(outputs(source, 3), outputs(built, 3))

    with pytest.raises(ConfigError, match="opencell_dino is trained by this book.*`store`"):
        build_backbone("opencell_dino", img_size=IMG)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="dino4cells_hpa_fov"):
        pretrained_weights("dino_resnet")
    with pytest.raises(ConfigError, match="dino_vitb8_imagenet"):
        build_backbone("dino_resnet", img_size=IMG)
    with pytest.raises(ConfigError, match="vit_base_patch8"):
        create_backbone("vit_huge", in_chans=3, img_size=224)


def test_pretrained_metadata_is_consistent():
    for name, meta in PRETRAINED.items():
        assert meta.arch in ARCHITECTURES, name
        assert meta.mean is None or len(meta.mean) == len(meta.std) == meta.in_chans, name
        assert (meta.manifest is None) != (meta.store_stage is None), name
    assert PRETRAINED["dino4cells_hpa_fov"].slots.index("protein") == 1  # DINO4Cells' protein channel


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_runs_forward_and_backward(arch):
    torch.manual_seed(0)
    model = create_backbone(arch, in_chans=2, img_size=32)
    out = model.forward_features(torch.randn(1, 2, 32, 32))
    out[:, 0].sum().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():  # another input size: position embeddings are interpolated on the fly
        tokens = model.forward_features(torch.randn(1, 2, 48, 48)).shape[1]
    assert tokens == 1 + (48 // model.patch_embed.patch_size[0]) ** 2
