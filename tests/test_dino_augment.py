"""Batched multi-crop: shapes, geometry, statistics and reproducibility of every augmentation."""

import dataclasses

import pytest
import torch

from dinoxfer_lib.dino.augment import CropSpec, draw_params, multi_crop, step_generator, to_unit_range
from dinoxfer_lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD

QUIET = dict(flip_p=0.0, warp_p=0.0, protein_rescale_p=0.0, brightness_sigma=0.0, contrast_sigma=0.0)


def spec(**kw):
    base = dict(global_size=16, local_size=8, n_local=3, global_scale=(0.4, 1.0), local_scale=(0.05, 0.4),
                n_channels=2, protein_channel=0, natural=False)
    return CropSpec(**{**base, **kw})


def full_image(p, kind="global"):
    """Make every crop of ``kind`` the whole image with aspect ratio 1."""
    p[f"{kind}.area"].fill_(1.0)
    p[f"{kind}.log_ratio"].zero_()
    return p


def test_shapes_and_view_major_order():
    s = spec()
    views = multi_crop(torch.rand(5, 2, 20, 20), s, draw_params(s, 5, step_generator(0, 1)))
    assert [v.shape for v in views] == [(10, 2, 16, 16), (15, 2, 8, 8)]
    assert len(multi_crop(torch.rand(5, 2, 20, 20), spec(n_local=0), draw_params(spec(n_local=0), 5,
                                                                                step_generator(0)))) == 1


def test_same_seed_same_crops_other_seed_other_crops_and_rows_are_independent_of_the_batch():
    s = spec(warp_p=0.5, protein_rescale_p=0.5)
    x = torch.rand(6, 2, 24, 24)
    a = multi_crop(x, s, draw_params(s, 6, step_generator(3, 0, 1)))
    b = multi_crop(x, s, draw_params(s, 6, step_generator(3, 0, 1)))
    c = multi_crop(x, s, draw_params(s, 6, step_generator(3, 0, 2)))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.allclose(a[0], c[0])
    # a process holding rows 3..5 of the global batch makes exactly those images' views (DDP premise)
    p = draw_params(s, 6, step_generator(3, 0, 1))
    part = multi_crop(x[3:], s, {k: v[3:] for k, v in p.items()})
    assert torch.allclose(part[0][:3], a[0][3:6], atol=1e-6)  # view 0 of images 3..5
    assert torch.allclose(part[1][3:6], a[1][9:12], atol=1e-6)  # local view 1 of images 3..5


def test_full_crop_reproduces_the_image_and_flips_mirror_it():
    s = spec(global_size=24, **QUIET)
    x = torch.rand(4, 2, 24, 24)
    p = full_image(draw_params(s, 4, step_generator(0)))
    views = multi_crop(x, s, p)
    assert torch.allclose(views[0][:4], x, atol=1e-5) and torch.allclose(views[0][4:], x, atol=1e-5)
    p["global.flip"][:, 0] = torch.tensor([True, False])
    views = multi_crop(x, s, p)
    assert torch.allclose(views[0][:4], x.flip(-1), atol=1e-5)  # horizontal flip of view 0
    p["global.flip"][:, 0] = torch.tensor([False, True])
    assert torch.allclose(multi_crop(x, s, p)[0][:4], x.flip(-2), atol=1e-5)


def test_crop_areas_follow_the_scale_range():
    s = spec(global_size=32, global_scale=(0.25, 0.25), **QUIET)
    x = torch.zeros(64, 1, 64, 64)
    x[..., 16:48, 16:48] = 1.0  # a bright square of a quarter of the area, centred
    p = draw_params(dataclasses.replace(s, n_channels=1), 64, step_generator(1))
    p["global.log_ratio"].zero_()
    p["global.position"].fill_(0.5)  # centred crops of a quarter of the area = exactly the square
    views = multi_crop(x, dataclasses.replace(s, n_channels=1, protein_channel=None), p)[0]
    assert views.mean().item() == pytest.approx(1.0, abs=0.02)


def test_cell_warping_moves_one_corner_inward_and_keeps_the_others():
    s = spec(global_size=32, **{**QUIET, "warp_p": 1.0}, warp_max=0.25, n_channels=1, protein_channel=None)
    h = 32
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    coords = torch.stack((xs, ys)).float()[None] / (h - 1)  # channel 0 = x, channel 1 = y in [0, 1]
    s = dataclasses.replace(s, n_channels=2)
    p = full_image(draw_params(s, 1, step_generator(0)))
    p["global.warp_corner"].fill_(2)  # bottom-right corner
    p["global.warp_amount"].fill_(0.25)
    view = multi_crop(coords, s, p)[0][0]  # (2, 32, 32): where each output pixel was sampled from
    assert view[0, 0, 0] < 0.05 and view[1, 0, 0] < 0.05  # top-left corner stays
    assert view[0, -1, -1] == pytest.approx(0.75, abs=0.05) and view[1, -1, -1] == pytest.approx(0.75, abs=0.05)
    assert view[0, 0, -1] > 0.95  # top-right corner stays


def test_protein_rescaling_frequency_and_range():
    s = spec(**{**QUIET, "protein_rescale_p": 0.2})
    x = torch.rand(400, 2, 16, 16) * 0.5 + 0.25
    p = full_image(draw_params(s, 400, step_generator(2)))
    views = multi_crop(x, s, p)[0][:400]
    changed = ~torch.isclose(views[:, 0], x[:, 0], atol=1e-4).all(dim=(1, 2))
    assert 0.14 < changed.float().mean().item() < 0.26
    peaks = views[changed, 0].amax(dim=(1, 2))
    assert torch.allclose(peaks, p["global.rescale_factor"][:, 0][changed], atol=1e-4)  # max = U(0, 2)
    assert torch.allclose(views[:, 1], x[:, 1], atol=1e-5)  # the nucleus is never rescaled


def test_brightness_and_contrast_factors_are_floored_at_half():
    s = spec(**{**QUIET, "brightness_sigma": 2.0})
    x = torch.rand(300, 2, 16, 16) + 0.5
    p = full_image(draw_params(s, 300, step_generator(4)))
    views = multi_crop(x, s, p)[0][:300]
    ratio = views.mean(dim=(2, 3)) / x.mean(dim=(2, 3))
    assert ratio.min().item() == pytest.approx(0.5, abs=1e-3)
    assert torch.allclose(ratio, p["global.brightness"][:, 0].clamp_min(0.5), atol=1e-4)


def test_channel_drop_zeroes_one_non_protein_channel():
    s = spec(n_channels=4, **{**QUIET}, channel_drop_p=1.0)
    x = torch.rand(50, 4, 16, 16) + 0.1
    views = multi_crop(x, s, full_image(draw_params(s, 50, step_generator(5))))[0]
    zero = (views.abs().amax(dim=(2, 3)) == 0)
    assert torch.all(zero.sum(1) == 1) and not zero[:, 0].any()
    assert zero[:, 1:].sum(0).min() > 0  # each other channel gets dropped sometimes


def test_natural_views_are_imagenet_standardised_and_jittered():
    s = spec(n_channels=3, protein_channel=None, natural=True, **{**QUIET})
    x = torch.rand(64, 3, 16, 16)
    p = full_image(draw_params(s, 64, step_generator(6)))
    views = multi_crop(x, s, p)[0]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    restored = views * std + mean
    assert restored.min() >= -1e-5 and restored.max() <= 1 + 1e-5
    grey = p["global.grey"][:, 0] & ~(p["global.blur"][:, 0] > 1)
    g = restored[:64][grey]
    assert torch.allclose(g[:, 0], g[:, 1], atol=1e-5)  # greyscale views have equal channels
    untouched = ~p["global.jitter"][:, 1] & ~p["global.grey"][:, 1] & (p["global.blur"][:, 1] >= 0.1) \
        & (p["global.solarize"][:, 1] >= 0.2)
    assert torch.allclose(restored[64:][untouched], x[untouched], atol=1e-4)


def test_to_unit_range_uses_the_embedding_percentile_window():
    raw = torch.arange(2 * 100, dtype=torch.float32).reshape(1, 2, 10, 10) * 100
    x = to_unit_range(raw)
    assert x.min() == 0 and x.max() == 1
    assert to_unit_range(torch.rand(2, 2, 40, 40) * 1000, max_side=20).shape == (2, 2, 20, 20)


def test_warping_the_whole_image_before_the_crop_as_dino4cells():
    s = spec(global_size=32, **{**QUIET, "warp_p": 1.0}, warp_max=0.25, n_channels=2, protein_channel=None)
    s = dataclasses.replace(s, warp_before_crop=True)
    h = 32
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    coords = torch.stack((xs, ys)).float()[None] / (h - 1) + 1.0  # in [1, 2]: black (0) only outside the field
    p = full_image(draw_params(s, 1, step_generator(0)))
    p["global.warp_corner"].fill_(2)  # bottom-right corner of the image moves inward by 1/4 of the side
    p["global.warp_amount"].fill_(0.25)
    view = multi_crop(coords, s, p)[0][0]  # the whole (warped) field: the corner's wedge is outside the source
    assert view[0, 1, 1] == pytest.approx(1.03, abs=0.05) and view[0, 1, -2] == pytest.approx(1.97, abs=0.05)
    assert (view[:, -1, -1] == 0).all()  # the moved corner left a black wedge, as kornia's warp_perspective does
    inside = view[:, int(0.7 * h), int(0.7 * h)]
    assert (inside > 1.0).all()  # points inside the warped quad still come from the field
    # a crop of half the side from the top-left quadrant is far from the moved corner: barely changed
    p["global.area"].fill_(0.25)
    p["global.position"].fill_(0.0)
    crop = multi_crop(coords, s, p)[0][0]
    plain = multi_crop(coords, s, {**p, "global.warp": torch.zeros_like(p["global.warp"])})[0][0]
    assert 0 < (crop - plain).abs().max() < 0.2
