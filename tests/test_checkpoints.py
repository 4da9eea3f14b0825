"""Every published DINO checkpoint layout loads into a timm ViT and reproduces the source model's outputs exactly."""

import argparse
import os

import pytest
import torch

from dinoxfer_lib.errors import ConfigError, DataError, FetchError
from dinoxfer_lib.models.backbones import create_backbone, pretrained_weights
from dinoxfer_lib.models.checkpoints import build_backbone, load_backbone_weights, save_backbone

IMG = 32


def model(in_chans=2, seed=0):
    torch.manual_seed(seed)
    return create_backbone("vit_micro", in_chans=in_chans, img_size=IMG).eval()


def outputs(m, in_chans=2):
    torch.manual_seed(123)
    with torch.no_grad():
        return m.forward_features(torch.randn(2, in_chans, IMG, IMG))


def prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


def head_keys():
    return {"head.mlp.0.weight": torch.randn(8, 192), "head.last_layer.weight_g": torch.ones(1, 8)}


def full_checkpoint(teacher, student):
    return {
        "teacher": {**prefixed(teacher.state_dict(), "backbone."), **prefixed(head_keys(), "")},
        "student": {**prefixed(student.state_dict(), "module.backbone."), **prefixed(head_keys(), "module.")},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
        "epoch": 3,
        "args": argparse.Namespace(arch="vit_micro", out_dim=8),
        "dino_loss": {"center": torch.zeros(1, 8)},
    }


@pytest.mark.parametrize("layout", ["bare", "full", "timm_wrapped", "safetensors", "ours"])
def test_each_layout_reproduces_outputs(tmp_path, layout):
    source = model(seed=1)
    path = tmp_path / "ckpt.pth"
    if layout == "bare":
        torch.save(source.state_dict(), path)
    elif layout == "full":
        torch.save(full_checkpoint(source, model(seed=2)), path)
    elif layout == "timm_wrapped":
        torch.save({"state_dict": prefixed(source.state_dict(), "module.")}, path)
    elif layout == "safetensors":
        path = save_backbone(source, tmp_path / "ckpt.safetensors")
    elif layout == "ours":
        torch.save({"teacher": prefixed(source.state_dict(), "backbone."), "epoch": 1}, path)
    target = model(seed=9)
    report = load_backbone_weights(target, path)
    assert torch.equal(outputs(source), outputs(target))
    assert report.sha256 and not report.interpolated_pos_embed


def test_teacher_is_taken_by_default_and_head_dropped(tmp_path):
    teacher, student = model(seed=1), model(seed=2)
    path = tmp_path / "full.pth"
    torch.save(full_checkpoint(teacher, student), path)
    target = model(seed=9)
    report = load_backbone_weights(target, path)
    assert report.which == "teacher" and report.dropped_head_keys == 2
    assert torch.equal(outputs(teacher), outputs(target))
    load_backbone_weights(target, path, which="student")
    assert torch.equal(outputs(student), outputs(target))


def test_dino4cells_four_channel_checkpoint(tmp_path):
    source = model(in_chans=4, seed=1)
    path = tmp_path / "DINO_FOV_checkpoint.pth"
    torch.save(full_checkpoint(source, source), path)
    built, report = build_backbone(path, img_size=IMG)
    assert built.patch_embed.proj.in_channels == 4
    assert torch.equal(outputs(source, 4), outputs(built, 4))


def test_wrong_channel_count_names_the_strategies(tmp_path):
    path = tmp_path / "hpa.pth"
    torch.save(model(in_chans=4).state_dict(), path)
    with pytest.raises(DataError) as info:
        load_backbone_weights(model(in_chans=2), path)
    message = str(info.value)
    assert "4 input channels" in message and "mapping" in message and "replication" in message
    assert "\n" not in message


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"teacher": model().state_dict(), "payload": Payload()}, path)
    with pytest.raises(DataError, match="refused"):
        load_backbone_weights(model(), path)
    assert not marker.exists()


def test_position_embeddings_are_interpolated_for_another_size(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save(model().state_dict(), path)
    bigger = create_backbone("vit_micro", in_chans=2, img_size=48)
    report = load_backbone_weights(bigger, path)
    assert report.interpolated_pos_embed
    with torch.no_grad():
        assert bigger.forward_features(torch.randn(1, 2, 48, 48)).shape == (1, 1 + 36, 192)


def test_missing_backbone_weights_are_an_error(tmp_path):
    state = model().state_dict()
    del state["blocks.0.attn.qkv.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(DataError, match="lacks 1 backbone weights"):
        load_backbone_weights(model(), path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(model().state_dict(), path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="cut.pth"):
        load_backbone_weights(model(), path)


def test_named_weights_need_fetch_first(tmp_path):
    with pytest.raises(FetchError, match="dinoxfer fetch dino_vitb8_imagenet"):
        build_backbone("dino_vitb8_imagenet", img_size=224, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="dino4cells_hpa_fov"):
        pretrained_weights("dino_resnet")
    with pytest.raises(ConfigError, match="vit_base_patch8"):
        create_backbone("vit_huge", in_chans=3, img_size=224)
