"""Every checkpoint layout loads into a timm ViT and reproduces the source model's outputs exactly; unsafe,
malformed or mismatched files fail with one clear line."""

import argparse
import dataclasses
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
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
    assert len(report.sha256) == 64 and report.pos_embed_grid is None
    assert all(".head." in f".{k}" for k in report.dropped_keys)  # only projection heads / classifiers are dropped
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


def test_mask_token_is_dropped_and_foreign_weights_are_an_error(tmp_path):
    state = {**vit(seed=1).state_dict(), "mask_token": torch.zeros(1, 192)}
    report = load_backbone_weights(vit(), state)
    assert report.dropped_keys == ("mask_token",) and report.sha256 == ""
    path = tmp_path / "extra.pth"
    torch.save({**vit().state_dict(), "blocks.0.attn.gate.weight": torch.zeros(3)}, path)
    with pytest.raises(DataError, match=r"extra.pth: 1 checkpoint weights have no place in the vit_micro backbone: "
                                        r"blocks.0.attn.gate.weight"):
        load_backbone_weights(vit(), path)


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
def test_every_architecture_runs_forward_and_backward(arch, monkeypatch):
    spec = ARCHITECTURES[arch]
    monkeypatch.setitem(ARCHITECTURES, arch, dataclasses.replace(spec, depth=min(spec.depth, 2)))  # CI-sized
    torch.manual_seed(0)
    side = 4 * spec.patch_size
    model = create_backbone(arch, in_chans=2, img_size=side)
    out = model.forward_features(torch.randn(1, 2, side, side))
    out[:, 0].sum().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None for p in model.parameters())
    assert out.shape[1] == 1 + spec.reg_tokens + 16
    assert hasattr(model.blocks[0].ls1, "gamma") == (spec.layerscale is not None)
    with torch.no_grad():  # another input size: position embeddings are interpolated on the fly
        tokens = model.forward_features(torch.randn(1, 2, 6 * spec.patch_size, 6 * spec.patch_size)).shape[1]
    assert tokens == 1 + spec.reg_tokens + 36


# ---------------------------------------------------------------------------------------------------------------------
# Published layouts of every registered architecture, against ViTs built by hand with timm (not through the registry)

# What each published model is, written out from its source (DINO hubconf, DINOv2 hub, timm's *_dinov2 models); the
# depth is cut to one block to keep the test fast, the registry entry is cut the same way.
HAND_BUILT = {
    "vit_small_patch16": dict(patch_size=16, embed_dim=384, num_heads=6),
    "vit_small_patch8": dict(patch_size=8, embed_dim=384, num_heads=6),
    "vit_base_patch16": dict(patch_size=16, embed_dim=768, num_heads=12),
    "vit_base_patch8": dict(patch_size=8, embed_dim=768, num_heads=12),
    "vit_small_patch14_dinov2": dict(patch_size=14, embed_dim=384, num_heads=6, init_values=1e-5),
    "vit_base_patch14_dinov2": dict(patch_size=14, embed_dim=768, num_heads=12, init_values=1e-5),
    "vit_large_patch14_dinov2": dict(patch_size=14, embed_dim=1024, num_heads=16, init_values=1e-5),
    "vit_small_patch14_reg4_dinov2": dict(patch_size=14, embed_dim=384, num_heads=6, init_values=1e-5, reg_tokens=4,
                                          no_embed_class=True),
    "vit_base_patch14_reg4_dinov2": dict(patch_size=14, embed_dim=768, num_heads=12, init_values=1e-5, reg_tokens=4,
                                         no_embed_class=True),
    "vit_large_patch14_reg4_dinov2": dict(patch_size=14, embed_dim=1024, num_heads=16, init_values=1e-5, reg_tokens=4,
                                          no_embed_class=True),
}


def by_hand(arch, in_chans=3, seed=0):
    """The published architecture, one block deep, at a 2 x 2 patch grid, with every weight random (LayerScale too)."""
    from timm.models.vision_transformer import VisionTransformer

    kwargs = HAND_BUILT[arch]
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=2 * kwargs["patch_size"], in_chans=in_chans, num_classes=0, depth=1,
                              dynamic_img_size=True, **kwargs).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ls1.gamma", "ls2.gamma", "cls_token", "reg_token")):
                p.copy_(torch.randint(-64, 64, p.shape) / 64)  # dyadic: sums with the CLS position stay exact
    return model


def official_backbone(model):
    """The weights as the official code names them: DINOv2 keeps the CLS position in pos_embed, calls the registers
    register_tokens and carries its mask token."""
    state = dict(model.state_dict())
    if "reg_token" in state:
        cls_position = torch.randint(-64, 64, (1, 1, state["cls_token"].shape[-1])) / 64
        state["register_tokens"] = state.pop("reg_token")
        state["cls_token"] = state["cls_token"] - cls_position
        state["pos_embed"] = torch.cat((cls_position, state["pos_embed"]), dim=1)
    if "blocks.0.ls1.gamma" in state:
        state["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    return state


def dino_head(prefix, width):
    return {f"{prefix}mlp.0.weight": torch.randn(16, width), f"{prefix}last_layer.weight_g": torch.ones(8, 1),
            f"{prefix}last_layer.weight_v": torch.randn(8, 16)}


def published(layout, model, arch):
    state, width = official_backbone(model), model.embed_dim
    if layout == "backbone":  # dino_vitb8_pretrain.pth, dinov2_vits14_pretrain.pth
        return state
    if layout == "dino_full":  # main_dino.py checkpoint; DINO4Cells' DINO_FOV_checkpoint.pth
        return {"teacher": {**prefixed(state, "backbone."), **dino_head("head.", width)},
                "student": {**prefixed(official_backbone(by_hand(arch, seed=7)), "module.backbone."),
                            **dino_head("module.head.", width)},
                "epoch": 100, "args": argparse.Namespace(arch="vit_base", patch_size=8), "dino_loss": {}}
    if layout == "dinov2_eval":  # dinov2 train.py do_test: eval/<iteration>/teacher_checkpoint.pth
        return {"teacher": {**prefixed(state, "backbone."), **dino_head("dino_head.", width),
                            **dino_head("ibot_head.", width)}}
    if layout == "dinov2_train":  # dinov2 FSDP checkpoint: the SSL model with block chunks
        chunked = {k.replace("blocks.0.", "blocks.0.0."): v for k, v in state.items()}
        return {"model": {**prefixed(chunked, "teacher.backbone."), **prefixed(chunked, "student.backbone."),
                          **dino_head("teacher.dino_head.", width), "dino_loss.center": torch.zeros(1, 8),
                          "ibot_patch_loss.center": torch.zeros(1, 1, 8)},
                "optimizer": {}, "iteration": 1249}
    raise AssertionError(layout)


CASES = [(arch, layout, 3) for arch in list(HAND_BUILT)[:4] for layout in ("backbone", "dino_full")]
CASES += [("vit_base_patch8", "dino_full", 4)]  # DINO4Cells HPA FOV: 4-channel ViT-B/8
CASES += [(arch, layout, 3) for arch in list(HAND_BUILT)[4:] for layout in ("backbone", "dinov2_eval", "dinov2_train")]


@pytest.mark.parametrize("arch,layout,in_chans", CASES)
def test_published_layouts_of_every_architecture_load_with_the_users_arch(tmp_path, monkeypatch, arch, layout,
                                                                           in_chans):
    monkeypatch.setitem(ARCHITECTURES, arch, dataclasses.replace(ARCHITECTURES[arch], depth=1))
    source = by_hand(arch, in_chans)
    path = tmp_path / f"{arch}.pth"
    torch.save(published(layout, source, arch), path)
    built, report = build_backbone(path, img_size=source.patch_embed.img_size[0], arch=arch)
    assert built.dinoxfer_arch == arch and report.which == ("" if layout == "backbone" else "teacher")
    side = source.patch_embed.img_size[0]
    x = torch.randn(2, in_chans, side, side)
    with torch.no_grad():
        assert torch.equal(built.forward_features(x), source.forward_features(x))
    heads = [k for k in report.dropped_keys if "head." in k]
    assert len(heads) == {"backbone": 0, "dino_full": 3, "dinov2_eval": 6, "dinov2_train": 3}[layout]
    assert ("mask_token" in report.dropped_keys) == (layout == "backbone" and "dinov2" in arch)


def test_an_explicit_arch_is_honoured_and_layerscale_weights_are_loaded(tmp_path, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "vit_micro_twin", ARCHITECTURES["vit_micro"])  # same shape, registered after
    torch.manual_seed(3)
    source = create_backbone("vit_micro", in_chans=2, img_size=IMG, layerscale=1e-5).eval()  # as objective dinov2
    with torch.no_grad():
        for block in source.blocks:
            block.ls1.gamma.uniform_(0.5, 1.5)
    path = save_backbone(source, tmp_path / "teacher_backbone.safetensors")
    guessed, _ = build_backbone(path, img_size=IMG)
    named, _ = build_backbone(path, img_size=IMG, arch="vit_micro_twin")
    assert guessed.dinoxfer_arch == "vit_micro" and named.dinoxfer_arch == "vit_micro_twin"
    assert torch.equal(outputs(named), outputs(source)) and torch.equal(outputs(guessed), outputs(source))
    with pytest.raises(ConfigError, match="unknown architecture 'vit_gigantic'"):
        build_backbone(path, img_size=IMG, arch="vit_gigantic")


def test_registers_need_a_register_architecture(tmp_path, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "vit_small_patch14_dinov2",
                        dataclasses.replace(ARCHITECTURES["vit_small_patch14_dinov2"], depth=1))
    path = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(official_backbone(by_hand("vit_small_patch14_reg4_dinov2")), path)
    with pytest.raises(DataError, match="4 register tokens, the vit_small_patch14_dinov2 backbone none"):
        build_backbone(path, img_size=28, arch="vit_small_patch14_dinov2")


def test_rgb_weights_adapt_to_other_channel_counts_only_when_asked():
    from timm.models import adapt_input_conv

    rgb = vit(in_chans=3, seed=1)
    for channels in (1, 2, 4):
        report = load_backbone_weights(vit(in_chans=channels), rgb.state_dict(), adapt_in_chans=True)
        assert report.adapted_in_chans == (3, channels)
    single = vit(in_chans=1)
    load_backbone_weights(single, rgb.state_dict(), adapt_in_chans=True)
    assert torch.equal(single.patch_embed.proj.weight,
                       adapt_input_conv(1, rgb.patch_embed.proj.weight.detach().clone()))
    with pytest.raises(DataError, match="3 input channels"):
        load_backbone_weights(vit(in_chans=1), rgb.state_dict())
    with pytest.raises(DataError, match="4 input channels"):  # only RGB filters have a rule to adapt from
        load_backbone_weights(vit(in_chans=2), vit(in_chans=4).state_dict(), adapt_in_chans=True)


# ---------------------------------------------------------------------------------------------------------------------
# Position embeddings resized exactly as DINO's interpolate_pos_encoding


def cubic_weights(t, a=-0.75):
    """Keys' cubic convolution weights of the 4 neighbours x0-1..x0+2 at fraction t (PyTorch's bicubic, a=-0.75)."""
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return np.array([far(t + 1), near(t), near(1 - t), far(2 - t)])


def dino_interpolate_pos_encoding(pos_embed, image_side, patch):
    """DINO's vision_transformer.interpolate_pos_encoding, written out in numpy.

    The official call is F.interpolate(grid, scale_factor=(w0 + 0.1) / M, mode="bicubic") with w0 = side // patch:
    the output has int(w0 + 0.1) = w0 positions, and output position i samples the old grid at
    (i + 0.5) / scale - 0.5, where scale is the given factor (not w0 / M), with Keys' cubic kernel and the grid's
    edge values repeated outside it."""
    pos = pos_embed[0].double().numpy()
    cls, grid = pos[:1], pos[1:]
    m = math.isqrt(len(grid))
    grid = grid.reshape(m, m, -1)
    w0 = image_side // patch
    scale = (w0 + 0.1) / m
    matrix = np.zeros((w0, m))  # 1-D resampling operator, applied to rows and columns
    for i in range(w0):
        x = (i + 0.5) / scale - 0.5
        x0 = math.floor(x)
        for offset, weight in zip(range(-1, 3), cubic_weights(x - x0)):
            matrix[i, min(max(x0 + offset, 0), m - 1)] += weight
    resized = np.einsum("ia,jb,abd->ijd", matrix, matrix, grid).reshape(w0 * w0, -1)
    return torch.from_numpy(np.concatenate((cls, resized))[None])


@pytest.mark.parametrize("arch", ["vit_small_patch16", "vit_small_patch8"])
@pytest.mark.parametrize("side", [96, 48])
def test_position_embeddings_follow_dinos_interpolate_pos_encoding(tmp_path, monkeypatch, arch, side):
    monkeypatch.setitem(ARCHITECTURES, arch, dataclasses.replace(ARCHITECTURES[arch], depth=1))
    torch.manual_seed(0)
    published_224 = create_backbone(arch, in_chans=3, img_size=224)  # as released: laid out for 224 px
    with torch.no_grad():
        published_224.pos_embed.normal_()
    path = tmp_path / "dino_pretrain.pth"
    torch.save(published_224.state_dict(), path)
    model, report = build_backbone(path, img_size=side)
    patch = ARCHITECTURES[arch].patch_size
    expected = dino_interpolate_pos_encoding(published_224.pos_embed.detach(), side, patch)
    assert report.pos_embed_grid == ((224 // patch,) * 2, (side // patch,) * 2)
    assert torch.allclose(model.pos_embed.double(), expected, atol=1e-5)
    size_based = F.interpolate(published_224.pos_embed[:, 1:].reshape(1, 224 // patch, 224 // patch, -1)
                               .permute(0, 3, 1, 2), size=(side // patch,) * 2, mode="bicubic")
    assert not torch.allclose(model.pos_embed[0, 1:].T.reshape(size_based.shape), size_based, atol=1e-3)


def test_dinov2_registers_resize_to_the_exact_grid_with_antialiasing(tmp_path, monkeypatch):
    from timm.layers import resample_abs_pos_embed

    arch = "vit_small_patch14_reg4_dinov2"
    monkeypatch.setitem(ARCHITECTURES, arch, dataclasses.replace(ARCHITECTURES[arch], depth=1))
    torch.manual_seed(0)
    published_518 = create_backbone(arch, in_chans=3, img_size=518)
    path = tmp_path / "dinov2_reg4.pth"
    torch.save(official_backbone(published_518), path)
    model, report = build_backbone(path, img_size=224)
    assert report.pos_embed_grid == ((37, 37), (16, 16))
    expected = resample_abs_pos_embed(published_518.pos_embed, [16, 16], num_prefix_tokens=0, antialias=True)
    assert torch.allclose(model.pos_embed, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Malformed checkpoints: one line naming the file and what was expected (issue 16)


def _state(**change):
    state = vit().state_dict()
    for key, value in change.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    return state


MALFORMED = [
    ("patch_2d", lambda: _state(**{"patch_embed.proj.weight": torch.zeros(192, 128)}),
     r"patch_embed.proj.weight has shape \(192, 128\), expected 4-D"),
    ("no_pos_embed", lambda: _state(pos_embed=None), r"no pos_embed weights, expected .* \(1, tokens, 192\)"),
    ("non_square_pos_embed", lambda: _state(pos_embed=torch.zeros(1, 13, 192)),
     r"pos_embed holds 13 positions, expected a square patch grid"),
    ("pos_embed_2d", lambda: _state(pos_embed=torch.zeros(17, 192)), r"pos_embed has shape \(17, 192\), expected"),
    ("cls_token_1d", lambda: _state(cls_token=torch.zeros(192)), r"cls_token has shape \(192,\), expected"),
    ("teacher_tensor", lambda: {"teacher": torch.zeros(3)},
     r"checkpoint\['teacher'\] is a Tensor, expected a state dict"),
    ("model_list", lambda: {"model": [1, 2]}, r"checkpoint\['model'\] is a list, expected a state dict"),
    ("list_payload", lambda: [vit().state_dict()], r"expected a state dict or a DINO checkpoint dict, got list"),
    ("tensor_payload", lambda: torch.zeros(3), r"expected a state dict or a DINO checkpoint dict, got Tensor"),
    ("number_payload", lambda: 7, r"expected a state dict or a DINO checkpoint dict, got int"),
]


@pytest.mark.parametrize("name,payload,expected", MALFORMED, ids=[row[0] for row in MALFORMED])
def test_malformed_checkpoints_are_one_line_naming_the_file(tmp_path, name, payload, expected):
    path = tmp_path / f"{name}.pth"
    torch.save(payload(), path)
    for load in (lambda: load_backbone_weights(vit(), path), lambda: build_backbone(path, img_size=IMG)):
        with pytest.raises(DataError, match=expected) as info:
            load()
        message = str(info.value)
        assert message.startswith(str(path)) and "\n" not in message
