"""DINO BoC: the bag-of-channels corpus, a single-channel encoder trained on it, and embedding any channel set."""

import numpy as np
import pytest
import torch

from dinoxfer_lib.dino.bag import bag_of_channels
from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.train import train_dino
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.models.backbones import create_backbone
from dinoxfer_lib.models.channels import Scaling, make_encoder, scale_intensities
from dinoxfer_lib.models.checkpoints import build_backbone


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sources(seed=0):
    """Three domains as a lab might have them: 2-channel uint16, 4-channel uint8 (not square), 1-channel float."""
    rng = np.random.default_rng(seed)
    return {
        "opencell": rng.integers(0, 65535, (10, 2, 20, 20)).astype(np.uint16),
        "hpa": rng.integers(0, 255, (3, 4, 16, 24)).astype(np.uint8),
        "phase": rng.normal(5.0, 2.0, (5, 1, 32, 32)),
    }


def test_channels_are_drawn_balanced_across_sources():
    bag = bag_of_channels(sources(), size=8, seed=0)
    per_source = round((10 * 2 + 3 * 4 + 5 * 1) / 3)  # all channels, split evenly: 12 each
    assert bag.images.shape == (3 * per_source, 1, 8, 8) and bag.images.dtype == np.float32
    assert 0 <= bag.images.min() and bag.images.max() <= 1
    for name, n_pairs in (("opencell", 20), ("hpa", 12), ("phase", 5)):
        mine = bag.source == name
        assert mine.sum() == per_source
        pairs = bag.image_index[mine] * (2 if name == "opencell" else 4 if name == "hpa" else 1) + \
            bag.channel_index[mine]
        counts = np.bincount(pairs, minlength=n_pairs)
        assert counts.max() - counts.min() <= 1  # each pair as often as any other, +- 1
    assert set(bag.channel_index[bag.source == "hpa"]) == {0, 1, 2, 3}
    again, other = bag_of_channels(sources(), size=8, seed=0), bag_of_channels(sources(), size=8, seed=1)
    assert np.array_equal(again.images, bag.images) and not np.array_equal(other.image_index, bag.image_index)


def test_each_channel_is_normalised_on_its_own():
    rng = np.random.default_rng(3)
    dim, bright = rng.integers(0, 100, (2, 1, 16, 16)), rng.integers(10000, 60000, (2, 1, 16, 16))
    images = np.concatenate((dim, bright), axis=1).astype(np.uint16)  # one dim and one bright channel per image
    bag = bag_of_channels({"lab": images}, size=16, seed=0)
    for out, image, channel in zip(bag.images, bag.image_index, bag.channel_index):
        x = images[image, channel].astype(np.float64)
        low, high = np.percentile(x, [1, 99.8])  # its own window, whatever the other channel holds
        np.testing.assert_allclose(out[0], np.clip((x - low) / (high - low), 0, 1), atol=1e-5)


def test_channels_are_resized_to_one_side_around_the_centre():
    ramp = np.tile(np.arange(24, dtype=np.float32), (16, 1))[None, None]  # (1, 1, 16, 24), columns 0..23
    mirrored = ramp[..., ::-1].copy()
    a = bag_of_channels({"a": ramp}, size=8).images[0, 0]
    b = bag_of_channels({"a": mirrored}, size=8).images[0, 0]
    assert a.shape == (8, 8)
    np.testing.assert_allclose(a, b[:, ::-1], atol=1e-6)  # the centre square: mirroring the input mirrors it
    reference = scale_intensities(torch.from_numpy(ramp), Scaling())[0, 0].numpy()
    assert reference[0, 0] < a[0, 0] and a[0, -1] < reference[0, -1]  # the outer columns were cut, not squeezed in


def test_schedule_scales_with_the_mean_channel_count():
    bag = bag_of_channels(sources(), size=8)
    assert bag.mean_channels == pytest.approx((10 * 2 + 3 * 4 + 5 * 1) / 18)
    assert bag.n_source_images == 18
    assert bag.epochs_matching(10) == 10  # 37 channel images per joint epoch, 36 in the bag: 10.3 epochs
    assert bag.epochs_matching(20) == 21  # 20.6
    assert bag_of_channels(sources(), size=8, per_source=6).epochs_matching(2) == round(2 * 37 / 18)
    assert bag.steps_matching(100) == int(np.ceil(100 * 37 / 18))


@pytest.mark.parametrize("bad,error,message", [
    ({}, DataError, "no sources"),
    ({"flat": np.zeros((4, 16, 16))}, DataError, r"source 'flat' has shape \(4, 16, 16\), expected \(N, C, H, W\)"),
    ({"empty": np.zeros((0, 2, 16, 16))}, DataError, "source 'empty'"),
])
def test_bad_sources_are_one_line(bad, error, message):
    with pytest.raises(error, match=message):
        bag_of_channels(bad, size=8)
    with pytest.raises(ConfigError, match="size = 0"):
        bag_of_channels(sources(), size=0)


def test_a_native_single_channel_encoder_embeds_any_channel_count_and_order():
    torch.manual_seed(0)
    backbone = create_backbone("vit_micro", in_chans=1, img_size=16).eval()  # trained on single channels
    x = torch.rand(3, 5, 16, 16) * 1000
    names = ("protein", "nucleus", "er", "microtubules", "actin")
    with torch.no_grad():
        five = make_encoder("bag_of_channels", backbone, target_channels=names)(x)
        order = [3, 0, 4, 2, 1]
        shuffled = make_encoder("bag_of_channels", backbone, target_channels=[names[i] for i in order])(x[:, order])
        two = make_encoder("bag_of_channels", backbone, target_channels=names[:2])(x[:, :2])
        mean = make_encoder("bag_of_channels", backbone, target_channels=names, reduce="mean")
        alone = backbone.forward_features(scale_intensities(x[:, 2:3], Scaling()))[:, 0]
    d = backbone.embed_dim
    assert five.shape == (3, 5 * d) and two.shape == (3, 2 * d)
    blocks = five.view(3, 5, d)
    assert torch.allclose(shuffled.view(3, 5, d), blocks[:, order], atol=1e-6)  # same channel, same block
    assert torch.allclose(two.view(3, 2, d), blocks[:, :2], atol=1e-6)
    assert torch.allclose(blocks[:, 2], alone, atol=1e-6)  # each channel embedded alone
    with torch.no_grad():
        assert torch.allclose(mean(x), mean(x[:, order]), atol=1e-6)  # the mean forgets the order


def test_boc_encoder_trains_on_the_bag_and_embeds_other_channel_sets(tmp_path):
    bag = bag_of_channels(sources(), size=32, per_source=4, seed=0)
    config = DinoConfig(objective="dinov2", epochs=1, batch_size=4, out_dim=32, hidden_dim=16, bottleneck_dim=8,
                        n_local_crops=2, local_crop_size=16, warmup_epochs=0, checkpoint_every=1, lr=0.005,
                        koleo_loss_weight=0.1)  # KoLeo on the channel CLS tokens
    result = train_dino(bag.images, config=config, arch="vit_micro", img_size=32, channel_names=("channel",),
                        out_dir=tmp_path, seed=0, progress=False)
    assert len(result.history) == 12 // 4 and np.isfinite(result.history["koleo_loss"]).all()
    backbone, _ = build_backbone(tmp_path / "teacher_backbone.safetensors", img_size=32)
    assert backbone.patch_embed.proj.in_channels == 1  # no single_channel_copy needed
    x = torch.rand(2, 3, 32, 32)
    encoder = make_encoder("bag_of_channels", backbone, target_channels=("protein", "nucleus", "er"))
    with torch.no_grad():
        assert encoder(x).shape == (2, 3 * backbone.embed_dim)
