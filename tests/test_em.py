"""EM domain pair: readers on tiny files in each published layout, synthetic stand-ins, tiling."""

import zipfile

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter

from dinoxfer_lib.data.em import EMSet, make_lucchi_like, make_vnc_like, read_lucchi_pp, read_vnc, tile_em
from dinoxfer_lib.errors import ConfigError, DataError


def _slice(rng, shape=(6, 10)):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_lucchi(root, rng, n=(3, 2), rgba_masks=False, shape=(6, 10)):
    """Lucchi++ as the zip unpacks: Lucchi++/{Train,Test}_{In,Out}; inputs mask%04d.png, masks %d.png."""
    truth = {}
    for split, count in zip(("Train", "Test"), n):
        (root / "Lucchi++" / f"{split}_In").mkdir(parents=True)
        (root / "Lucchi++" / f"{split}_Out").mkdir(parents=True)
        for k in range(count):
            image, mask = _slice(rng, shape), rng.random(shape) < 0.3
            iio.imwrite(root / "Lucchi++" / f"{split}_In" / f"mask{k:04d}.png", image)
            if rgba_masks:  # white RGBA on mitochondria, transparent black elsewhere
                out = np.zeros((*shape, 4), np.uint8)
                out[mask] = 255
            else:
                out = mask.astype(np.uint8) * 255
            iio.imwrite(root / "Lucchi++" / f"{split}_Out" / f"{k}.png", out)
            truth[(split.lower(), k)] = (image, mask)
    return truth


def test_read_lucchi_pp_pairs_slices_by_number(tmp_path):
    rng = np.random.default_rng(0)
    truth = write_lucchi(tmp_path, rng, n=(12, 2))  # 12 slices: "10.png" must follow "9.png", not "1.png"
    em = read_lucchi_pp(tmp_path)
    assert em.images.shape == (14, 1, 6, 10) and em.images.dtype == np.uint8
    assert list(em.obs["split"]) == ["train"] * 12 + ["test"] * 2
    for row, (split, k) in enumerate([("train", k) for k in range(12)] + [("test", 0), ("test", 1)]):
        image, mask = truth[(split, k)]
        np.testing.assert_array_equal(em.images[row, 0], image)
        np.testing.assert_array_equal(em.masks[row], mask)
        assert em.obs.loc[row, "slice"] == k
    assert em.metadata["voxel_size_nm"] == (5.0, 5.0, 5.0) and not em.synthetic


def test_read_lucchi_pp_rgba_masks_and_zip(tmp_path):
    rng = np.random.default_rng(1)
    truth = write_lucchi(tmp_path / "src", rng, rgba_masks=True)
    archive = tmp_path / "lucchi_pp.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in (tmp_path / "src").rglob("*.png"):
            z.write(path, path.relative_to(tmp_path / "src"))
    em = read_lucchi_pp(archive)
    np.testing.assert_array_equal(em.masks[0], truth[("train", 0)][1])
    assert (tmp_path / "lucchi_pp.zip.unzip" / "Lucchi++" / "Train_In").is_dir()


def test_read_lucchi_pp_refuses_missing_mask(tmp_path):
    write_lucchi(tmp_path, np.random.default_rng(2))
    (tmp_path / "Lucchi++" / "Train_Out" / "1.png").unlink()
    with pytest.raises(DataError, match="Train_Out has 2 .0-2.*expected one mask per slice"):
        read_lucchi_pp(tmp_path)


def write_vnc(root, rng, n=5, shape=(8, 8)):
    """groundtruth-drosophila-vnc: stack1/raw/NN.tif (8-bit), stack1/mitochondria/NN.png (non-zero = mito)."""
    (root / "stack1" / "raw").mkdir(parents=True)
    (root / "stack1" / "mitochondria").mkdir(parents=True)
    truth = []
    for k in range(n):
        image, mask = _slice(rng, shape), rng.random(shape) < 0.3
        tifffile.imwrite(root / "stack1" / "raw" / f"{k:02d}.tif", image)
        grey = np.where(mask, 255, 0).astype(np.uint8)
        grey[mask & (rng.random(shape) < 0.2)] = 73  # anti-aliased border values of the release
        iio.imwrite(root / "stack1" / "mitochondria" / f"{k:02d}.png", grey)
        truth.append((image, mask))
    return truth


def test_read_vnc_holds_out_last_sections(tmp_path):
    truth = write_vnc(tmp_path, np.random.default_rng(3))
    em = read_vnc(tmp_path, test_sections=2)
    assert list(em.obs["split"]) == ["train"] * 3 + ["test"] * 2
    for k, (image, mask) in enumerate(truth):
        np.testing.assert_array_equal(em.images[k, 0], image)
        np.testing.assert_array_equal(em.masks[k], mask)
    assert em.metadata["voxel_size_nm"] == (50.0, 4.6, 4.6)
    assert len(em.split("test")) == 2
    with pytest.raises(ConfigError, match="test_sections = 5"):
        read_vnc(tmp_path, test_sections=5)


def test_read_vnc_refuses_other_layouts(tmp_path):
    with pytest.raises(DataError, match="no VNC layout"):
        read_vnc(tmp_path)
    write_vnc(tmp_path, np.random.default_rng(4), n=2)
    iio.imwrite(tmp_path / "stack1" / "mitochondria" / "01.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="01.png: mask is 4x4 px, its slice 8x8"):
        read_vnc(tmp_path, test_sections=1)


def test_tile_em_cuts_a_grid_without_overlap():
    rng = np.random.default_rng(5)
    em = EMSet(rng.integers(0, 255, (2, 1, 10, 13), dtype=np.uint8), rng.random((2, 10, 13)) < 0.5,
               _obs(2), {"domain": "lucchi"})
    tiles = tile_em(em, 4)
    assert len(tiles) == 2 * 2 * 3  # 10 // 4 rows of tiles, 13 // 4 columns
    row = tiles.obs.index[(tiles.obs["tile_y"] == 4) & (tiles.obs["tile_x"] == 8)][1]  # second image's tile
    np.testing.assert_array_equal(tiles.images[row, 0], em.images[1, 0, 4:8, 8:12])
    np.testing.assert_array_equal(tiles.masks[row], em.masks[1, 4:8, 8:12])
    assert tiles.obs["image_id"].is_unique and tiles.obs.loc[row, "stack"] == "b"
    with pytest.raises(ConfigError, match="exceeds"):
        tile_em(em, 11)


def _obs(n):
    import pandas as pd

    return pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "domain": "lucchi", "stack": list("ab")[:n],
                         "slice": range(n), "split": "train"})


# ---- synthetic stand-ins

SMALL = dict(n_stacks=6, n_slices=4, size=32, pixel_nm=20.0, test_stacks=1)


@pytest.fixture(scope="module")
def pair():
    return make_lucchi_like(**SMALL, seed=0), make_vnc_like(**SMALL, seed=0)


def test_synthetic_em_is_deterministic_per_seed(pair):
    lucchi, _ = pair
    again = make_lucchi_like(**SMALL, seed=0)
    np.testing.assert_array_equal(again.images, lucchi.images)
    np.testing.assert_array_equal(again.masks, lucchi.masks)
    other = make_lucchi_like(**SMALL, seed=1)
    assert not np.array_equal(other.images, lucchi.images)
    assert lucchi.synthetic and lucchi.images.shape == (24, 1, 32, 32) and lucchi.images.dtype == np.uint8
    assert list(lucchi.obs["split"]).count("test") == 4  # the last stack, whole


def _consecutive_correlation(em):
    """Mean correlation of neighbouring slices' structure (smoothed, so the pixel noise does not count)."""
    images = [gaussian_filter(x.astype(float), 1.5) for x in em.images[:, 0]]
    stack = em.obs["stack"].to_numpy()
    return np.mean([np.corrcoef(images[i].ravel(), images[i + 1].ravel())[0, 1]
                    for i in range(len(images) - 1) if stack[i] == stack[i + 1]])


def test_synthetic_pair_differs_as_the_real_pair(pair):
    lucchi, vnc = pair
    # anisotropy: 50 nm sections change between neighbours, isotropic FIB-SEM slices hardly do
    assert _consecutive_correlation(lucchi) > _consecutive_correlation(vnc) + 0.15
    assert vnc.metadata["voxel_size_nm"][0] == 50.0 and lucchi.metadata["voxel_size_nm"][0] == 20.0
    # denser neuropil in the larval VNC: more membrane
    assert vnc.obs["membrane_fraction"].mean() > 1.3 * lucchi.obs["membrane_fraction"].mean()

    # TEM: more contrast and more fine-grained noise than FIB-SEM
    def grain(em):
        x = em.images[:, 0].astype(float)
        return np.mean([(im - gaussian_filter(im, 1.5)).std() for im in x])

    assert vnc.images.std() > 1.5 * lucchi.images.std()
    assert grain(vnc) > 1.5 * grain(lucchi)
    # but the same mitochondria: comparable mask fractions, on both domains darker than their surroundings
    assert 1 / 3 < vnc.masks.mean() / lucchi.masks.mean() < 3
    for em in pair:
        assert em.images[:, 0][em.masks].mean() < em.images[:, 0][~em.masks].mean()


def test_emset_refuses_inconsistent_parts():
    with pytest.raises(DataError, match="masks shape"):
        EMSet(np.zeros((2, 1, 4, 4), np.uint8), np.zeros((2, 4, 5), bool), _obs(2), {"domain": "vnc"})
    with pytest.raises(DataError, match="split has values"):
        EMSet(np.zeros((2, 1, 4, 4), np.uint8), np.zeros((2, 4, 4), bool), _obs(2).assign(split="val"),
              {"domain": "vnc"})


def test_load_em_pair_gives_both_domains_as_patches(tmp_path):
    from dinoxfer_lib.data.em import EMDataConfig, load_em_pair

    pair = load_em_pair(EMDataConfig(n_stacks=3, n_slices=2, patch_size=32, pixel_nm=20.0, test_stacks=1), seed=0)
    assert set(pair) == {"lucchi", "vnc"} and all(em.images.shape[1:] == (1, 32, 32) for em in pair.values())
    write_lucchi(tmp_path / "lucchi", np.random.default_rng(6), shape=(16, 24))
    write_vnc(tmp_path / "vnc", np.random.default_rng(7), shape=(16, 16))
    real = load_em_pair(EMDataConfig(source="real", lucchi_path=str(tmp_path / "lucchi"), vnc_path=str(
        tmp_path / "vnc"), patch_size=8, vnc_test_sections=1), seed=0)
    assert len(real["lucchi"]) == 5 * 2 * 3 and len(real["vnc"]) == 5 * 2 * 2  # slices x tiles of 8 px
    assert not real["vnc"].synthetic and list(real["vnc"].split("test").obs["slice"].unique()) == [4]
    with pytest.raises(ConfigError, match=r"'data.em.lucchi_path'"):
        load_em_pair(EMDataConfig(source="real"), seed=0)
