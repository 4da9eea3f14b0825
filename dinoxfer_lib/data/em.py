"""Electron-microscopy mitochondria segmentation: the Lucchi++ / VNC domain pair of paper 004, real and synthetic.

- **Lucchi++** (Casser et al. 2020, re-annotation of Lucchi et al. 2013): mouse hippocampus CA1 imaged by FIB-SEM
  with isotropic 5 x 5 x 5 nm voxels; a training and a testing volume of 165 slices each (the original EPFL volumes
  are 1024 x 768 px), binary mitochondria masks. :func:`read_lucchi_pp` reads the published ``lucchi_pp.zip``.
- **VNC** (Gerhard et al. 2013): *Drosophila* larval ventral nerve cord imaged by serial-section TEM, 4.6 x 4.6 nm
  pixels but 45-50 nm thick sections (anisotropic); stack 1 has 20 annotated 1024 x 1024 sections.
  :func:`read_vnc` reads the ``groundtruth-drosophila-vnc`` repository layout.

Both are 8-bit greyscale with dark membranes and dark, cristae-striped mitochondria: visually alike, yet 004 finds
the two domains far apart in every backbone's representation. The synthetic stand-ins (:func:`make_lucchi_like`,
:func:`make_vnc_like`) therefore share one tissue model - the same mitochondria shape distribution (capsules of
the same radius and length laws, at the same volume fraction) - and differ only where the real pair differs:

- **sampling**: FIB-SEM slices are one voxel thick and one voxel apart, so consecutive slices are nearly equal;
  ssTEM sections are 50 nm apart and each integrates 50 nm of tissue, so oblique membranes smear and consecutive
  sections change a lot (:attr:`EMLook.z_step_nm`, :attr:`EMLook.thickness_nm`);
- **membrane density**: hippocampal neurites are wide, larval neuropil neurites thin (``neurite_spacing_nm``);
- **contrast, texture, noise**: FIB-SEM backscatter images are smooth and low in contrast, TEM images grainy,
  contrasty and noisier.

Every set is an :class:`EMSet`: ``images`` (N, 1, H, W) uint8, ``masks`` (N, H, W) bool, an ``obs`` table
(``image_id, domain, stack, slice, split``) and ``metadata`` (voxel size, source, ``synthetic``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from dinoxfer_lib.data.checks import read_image
from dinoxfer_lib.data.em_config import EM_DOMAINS, VNC_TEST_SECTIONS, EMDataConfig
from dinoxfer_lib.errors import ConfigError, DataError

EM_SPLITS: tuple[str, ...] = ("train", "test")
OBS_COLUMNS: tuple[str, ...] = ("image_id", "domain", "stack", "slice", "split")

LUCCHI_VOXEL_NM = (5.0, 5.0, 5.0)  # (z, y, x), isotropic FIB-SEM
VNC_VOXEL_NM = (50.0, 4.6, 4.6)  # section thickness 45-50 nm; the larger value, as the section step


@dataclass
class EMSet:
    """EM images of one domain with their binary mitochondria masks.

    Attributes
    ----------
    images
        ``(N, 1, H, W)`` uint8 greyscale slices or patches.
    masks
        ``(N, H, W)`` bool, True on mitochondria.
    obs
        One row per image: ``image_id`` (unique), ``domain`` (``lucchi`` / ``vnc``), ``stack`` (volume), ``slice``
        (index in it), ``split`` (``train`` / ``test``); tiles add ``tile_y, tile_x``, synthetic sets ``z_nm`` and
        ``membrane_fraction``.
    metadata
        ``domain``, ``synthetic``, ``voxel_size_nm`` (z, y, x), ``source``, and ``dataset`` (real data) or
        ``emulates`` (stand-ins).
    """

    images: np.ndarray
    masks: np.ndarray
    obs: pd.DataFrame
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        name = self.metadata.get("domain", "EM set")
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[1] != 1:
            raise DataError(f"{name}: images must be (N, 1, H, W), got shape {self.images.shape}")
        if self.masks.shape != (n, *self.images.shape[2:]):
            raise DataError(f"{name}: masks shape {self.masks.shape}, expected {(n, *self.images.shape[2:])}")
        if len(self.obs) != n:
            raise DataError(f"{name}: obs has {len(self.obs)} rows for {n} images")
        missing = [c for c in OBS_COLUMNS if c not in self.obs.columns]
        if missing:
            raise DataError(f"{name}: obs lacks columns {missing}")
        bad = sorted(set(self.obs["split"]) - set(EM_SPLITS))
        if bad:
            raise DataError(f"{name}: obs split has values {bad}, expected {', '.join(EM_SPLITS)}")
        if self.obs["image_id"].duplicated().any():
            dup = self.obs["image_id"][self.obs["image_id"].duplicated()].iloc[0]
            raise DataError(f"{name}: image_id {dup!r} appears more than once")
        self.masks = self.masks.astype(bool, copy=False)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def domain(self) -> str:
        return self.metadata["domain"]

    @property
    def synthetic(self) -> bool:
        return bool(self.metadata.get("synthetic", False))

    def subset(self, index: np.ndarray) -> EMSet:
        """Rows ``index`` (integer positions or a boolean mask) as a new set."""
        index = np.asarray(index)
        return EMSet(self.images[index], self.masks[index], self.obs.iloc[index].reset_index(drop=True),
                     dict(self.metadata))

    def split(self, name: str) -> EMSet:
        """The ``train`` or ``test`` images."""
        if name not in EM_SPLITS:
            raise ConfigError(f"unknown EM split {name!r}: expected one of {', '.join(EM_SPLITS)}")
        return self.subset(self.obs["split"].to_numpy() == name)


def tile_em(em: EMSet, size: int, *, stride: int | None = None) -> EMSet:
    """Cut every image into ``size x size`` tiles on a grid of step ``stride`` (default ``size``: no overlap).

    Tiles that would cross the right or bottom border are left out, so the tiles of an image never count a pixel
    twice (pooled IoU stays a per-pixel score). ``obs`` keeps each source row and adds ``tile_y, tile_x``.
    """
    stride = stride or size
    height, width = em.images.shape[2:]
    if size < 1 or stride < 1:
        raise ConfigError(f"tile size {size} and stride {stride}: expected positive integers")
    if size > min(height, width):
        raise ConfigError(f"tile size {size} exceeds the {height} x {width} px images")
    corners = [(y, x) for y in range(0, height - size + 1, stride) for x in range(0, width - size + 1, stride)]
    images = np.stack([em.images[:, :, y:y + size, x:x + size] for y, x in corners], axis=1)  # (N, T, 1, s, s)
    masks = np.stack([em.masks[:, y:y + size, x:x + size] for y, x in corners], axis=1)  # (N, T, s, s)
    obs = em.obs.loc[em.obs.index.repeat(len(corners))].reset_index(drop=True)
    obs["tile_y"] = np.tile([y for y, _ in corners], len(em))
    obs["tile_x"] = np.tile([x for _, x in corners], len(em))
    obs["image_id"] = [f"{i}_y{y}_x{x}" for i, y, x in zip(obs["image_id"], obs["tile_y"], obs["tile_x"])]
    return EMSet(images.reshape(-1, 1, size, size), masks.reshape(-1, size, size), obs,
                 {**em.metadata, "tile_size": size, "tile_stride": stride})


def save_em_set(em: EMSet, folder: str | os.PathLike) -> None:
    """Write ``em`` into ``folder`` as plain files (``images.npy``, ``masks.npy``, ``obs.csv``, ``meta.json``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", np.ascontiguousarray(em.images))
    np.save(folder / "masks.npy", np.ascontiguousarray(em.masks))
    em.obs.to_csv(folder / "obs.csv", index=False)
    (folder / "meta.json").write_text(json.dumps(em.metadata, indent=2))


def load_em_set(folder: str | os.PathLike) -> EMSet:
    """Read a folder written by :func:`save_em_set`."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        raise DataError(f"{folder}: not an EM set folder (no meta.json)")
    metadata = json.loads((folder / "meta.json").read_text())
    obs = pd.read_csv(folder / "obs.csv", dtype={"image_id": str, "stack": str})
    return EMSet(np.load(folder / "images.npy"), np.load(folder / "masks.npy"), obs, metadata)


# --------------------------------------------------------------------------------------------------------------
# Readers of the published layouts


def read_lucchi_pp(root: str | os.PathLike) -> EMSet:
    """Read Lucchi++ as published (``lucchi_pp.zip``, see ``data_manifests/lucchi_pp.yaml``).

    Layout::

        root/Lucchi++/Train_In/mask0000.png ...   raw 8-bit slices (named "mask" in the release)
        root/Lucchi++/Train_Out/0.png ...         masks: white (255, or white RGBA) on mitochondria
        root/Lucchi++/Test_In/..., Test_Out/...   the testing volume, same naming

    ``root`` may also be the ``Lucchi++`` folder itself, or the zip file (unpacked once beside it into
    ``<zip>.unzip/``, as pooch's ``Unzip`` does). Slices are paired by the number in their file names, in
    numeric order (``10.png`` after ``9.png``).

    Returns
    -------
    EMSet
        Domain ``lucchi``; ``stack`` is ``train`` or ``test`` (the release's two volumes), ``split`` the same.
    """
    folder = _lucchi_folder(_unpacked(Path(root)))
    parts = []
    for split, (inputs, outputs) in {"train": ("Train_In", "Train_Out"), "test": ("Test_In", "Test_Out")}.items():
        images = _numbered(folder / inputs, "png")
        masks = _numbered(folder / outputs, "png")
        if sorted(images) != sorted(masks):
            raise DataError(f"{folder / inputs} has slices {_span(images)} but {folder / outputs} has "
                            f"{_span(masks)}; expected one mask per slice")
        order = sorted(images)
        parts.append(_read_pairs([images[k] for k in order], [masks[k] for k in order], stack=split, split=split,
                                 slices=order, domain="lucchi"))
    metadata = {
        "domain": "lucchi", "synthetic": False, "voxel_size_nm": LUCCHI_VOXEL_NM, "source": str(folder),
        "dataset": "Lucchi++ (Casser et al. 2020): mouse hippocampus CA1, FIB-SEM",
    }
    return _concat(parts, metadata)


def read_vnc(root: str | os.PathLike, *, test_sections: int = VNC_TEST_SECTIONS) -> EMSet:
    """Read the annotated VNC stack (``groundtruth-drosophila-vnc``, see ``data_manifests/vnc.yaml``).

    Layout::

        root/stack1/raw/00.tif ... 19.tif          8-bit sections, 1024 x 1024 px
        root/stack1/mitochondria/00.png ... 19.png  masks: non-zero on mitochondria

    ``root`` may also be the GitHub archive's ``groundtruth-drosophila-vnc-master`` parent or the zip itself.
    Stack 2 has no masks and is not read.

    Parameters
    ----------
    test_sections
        The last this many sections are the ``test`` split (default 4 of 20: the README's 80/20 proposal); a
        section is never split, since neighbouring pixels of one section are not independent.
    """
    folder = _vnc_folder(_unpacked(Path(root)))
    images = _numbered(folder / "raw", "tif")
    masks = _numbered(folder / "mitochondria", "png")
    if sorted(images) != sorted(masks):
        raise DataError(f"{folder / 'raw'} has sections {_span(images)} but {folder / 'mitochondria'} has "
                        f"{_span(masks)}; expected one mask per section")
    order = sorted(images)
    if not 0 < test_sections < len(order):
        raise ConfigError(f"test_sections = {test_sections}: expected between 1 and {len(order) - 1} "
                          f"({len(order)} sections)")
    splits = ["train"] * (len(order) - test_sections) + ["test"] * test_sections
    em = _read_pairs([images[k] for k in order], [masks[k] for k in order], stack="stack1", split=splits,
                     slices=order, domain="vnc")
    em.metadata.update({
        "domain": "vnc", "synthetic": False, "voxel_size_nm": VNC_VOXEL_NM, "source": str(folder),
        "dataset": "VNC (Gerhard et al. 2013): Drosophila larval ventral nerve cord, ssTEM",
    })
    return em


def _unpacked(root: Path) -> Path:
    """A folder: ``root`` itself, or the zip ``root`` unpacked beside it (once)."""
    if root.is_dir():
        return root
    if root.is_file() and root.suffix == ".zip":
        target = root.with_name(root.name + ".unzip")
        if not target.is_dir():  # unpack beside, then rename: an interrupted unpacking is never trusted
            partial = root.with_name(root.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            try:
                with zipfile.ZipFile(root) as archive:
                    archive.extractall(partial)  # zipfile drops absolute paths and ".." components
            except zipfile.BadZipFile as exc:
                raise DataError(f"{root}: not a readable zip file ({exc}); download it again") from exc
            partial.rename(target)
        return target
    raise DataError(f"{root}: not found; expected the dataset folder or its zip file")


def _lucchi_folder(root: Path) -> Path:
    for folder in (root, root / "Lucchi++"):
        if all((folder / name).is_dir() for name in ("Train_In", "Train_Out", "Test_In", "Test_Out")):
            return folder
    raise DataError(f"{root}: no Lucchi++ layout; expected Train_In, Train_Out, Test_In, Test_Out folders in it or "
                    f"in {root / 'Lucchi++'}")


def _vnc_folder(root: Path) -> Path:
    for folder in (root, root / "stack1", root / "groundtruth-drosophila-vnc-master" / "stack1"):
        if (folder / "raw").is_dir() and (folder / "mitochondria").is_dir():
            return folder
    raise DataError(f"{root}: no VNC layout; expected stack1/raw and stack1/mitochondria folders")


def _numbered(folder: Path, suffix: str) -> dict[int, Path]:
    """Files ``*<number>.<suffix>`` of ``folder`` by their number."""
    found: dict[int, Path] = {}
    for path in folder.glob(f"*.{suffix}"):
        match = re.search(r"(\d+)$", path.stem)
        if match is None:
            raise DataError(f"{path}: no slice number in the file name; expected e.g. 0007.{suffix}")
        number = int(match.group(1))
        if number in found:
            raise DataError(f"{path} and {found[number]} both claim slice {number}")
        found[number] = path
    if not found:
        raise DataError(f"{folder}: no .{suffix} files")
    return found


def _span(numbered: dict[int, Path]) -> str:
    keys = sorted(numbered)
    return f"{len(keys)} ({keys[0]}-{keys[-1]})"


def _read_pairs(image_files: list[Path], mask_files: list[Path], *, stack: str, split: str | list[str],
                slices: list[int], domain: str) -> EMSet:
    images, masks = [], []
    for image_file, mask_file in zip(image_files, mask_files):
        image, mask = _greyscale(image_file), _binary_mask(mask_file)
        if mask.shape != image.shape:
            raise DataError(f"{mask_file}: mask is {mask.shape[0]}x{mask.shape[1]} px, its slice "
                            f"{image.shape[0]}x{image.shape[1]}; expected equal sizes")
        if images and image.shape != images[0].shape:
            raise DataError(f"{image_file} is {image.shape[0]}x{image.shape[1]} px but {image_files[0]} "
                            f"{images[0].shape[0]}x{images[0].shape[1]}; expected one slice size per stack")
        images.append(image)
        masks.append(mask)
    obs = pd.DataFrame({"image_id": [f"{domain}_{stack}_{k:04d}" for k in slices], "domain": domain,
                        "stack": stack, "slice": slices, "split": split})
    return EMSet(np.stack(images)[:, None], np.stack(masks), obs, {"domain": domain})


def _greyscale(path: Path) -> np.ndarray:
    """One 8-bit slice ``(H, W)``; an RGB(A) file is accepted when its colour channels are equal."""
    image = read_image(path, channel_axis=-1)  # a 2-D file is one plane; a 3-D one (H, W, colours)
    if image.shape[0] > 1:
        if not (image[1:3] == image[0]).all():
            raise DataError(f"{path}: a colour image with unequal channels; expected a greyscale EM slice")
    if image.dtype != np.uint8:
        raise DataError(f"{path}: {image.dtype} pixels; expected 8-bit greyscale as published")
    return image[0]


def _binary_mask(path: Path) -> np.ndarray:
    """``(H, W)`` bool: non-zero pixels (grey masks), or white ones (RGB(A) masks) are mitochondria.

    The VNC masks carry a few anti-aliased grey values at object borders; "non-zero" keeps them, which matches the
    mitochondria label (191) of the same release's merged label images best.
    """
    mask = read_image(path, channel_axis=-1)
    if mask.shape[0] == 1:
        return mask[0] > 0
    colour = mask[:3]
    return (colour == np.iinfo(mask.dtype).max).all(axis=0) if mask.dtype.kind == "u" else (colour > 0).all(axis=0)


def _concat(parts: list[EMSet], metadata: dict) -> EMSet:
    shapes = {p.images.shape[2:] for p in parts}
    if len(shapes) > 1:
        raise DataError(f"{metadata['source']}: volumes of different slice sizes {sorted(shapes)}; expected one")
    obs = pd.concat([p.obs for p in parts], ignore_index=True)
    return EMSet(np.concatenate([p.images for p in parts]), np.concatenate([p.masks for p in parts]), obs, metadata)


# --------------------------------------------------------------------------------------------------------------
# Synthetic stand-ins: one tissue model, two ways of imaging it

# Mitochondria, shared by both domains (nm): capsules whose radius is lognormal and whose axis length is uniform,
# filling this fraction of the tissue volume.
MITO_RADIUS_NM = (110.0, 0.25)  # median, sigma of log
MITO_LENGTH_NM = (150.0, 1200.0)
MITO_VOLUME_FRACTION = 0.07
CRISTAE_PERIOD_NM = 70.0
VESICLE_RADIUS_NM = 20.0
NEURITE_STRETCH = 3.0  # neurites run along one direction per stack: cells this much longer than wide


@dataclass(frozen=True)
class EMLook:
    """How one modality images the shared tissue model: sampling along z, tissue packing, appearance, noise.

    Intensities are fractions of the 8-bit range before contrast and noise.
    """

    emulates: str
    z_step_nm: float  # distance between consecutive slices
    thickness_nm: float  # tissue depth integrated into one slice
    neurite_spacing_nm: float  # mean distance between neighbouring cells across their long axis
    membrane_nm: float  # membrane thickness
    texture_nm: float  # grain size of the cytoplasm texture
    texture: float  # its amplitude
    cytoplasm: float
    membrane: float
    mitochondrion: float  # matrix intensity
    cristae: float  # amplitude of the cristae stripes
    vesicles_per_um3: float
    contrast: float  # gain around mid-grey
    blur_px: float  # point-spread blur
    noise: float  # Gaussian noise sd


LUCCHI_LOOK = EMLook(
    emulates="Lucchi++ (Casser et al. 2020): mouse hippocampus CA1, FIB-SEM, isotropic voxels",
    z_step_nm=0.0,  # 0: one lateral pixel, i.e. isotropic
    thickness_nm=0.0,
    neurite_spacing_nm=420.0, membrane_nm=14.0, texture_nm=45.0, texture=0.04,
    cytoplasm=0.60, membrane=0.30, mitochondrion=0.42, cristae=0.05, vesicles_per_um3=40.0,
    contrast=0.8, blur_px=0.8, noise=0.035,
)
VNC_LOOK = EMLook(
    emulates="VNC (Gerhard et al. 2013): Drosophila larval ventral nerve cord, ssTEM, 50 nm sections",
    z_step_nm=50.0,
    thickness_nm=50.0,
    neurite_spacing_nm=190.0, membrane_nm=14.0, texture_nm=18.0, texture=0.07,
    cytoplasm=0.66, membrane=0.25, mitochondrion=0.36, cristae=0.12, vesicles_per_um3=150.0,
    contrast=1.25, blur_px=0.5, noise=0.075,
)
LOOKS: dict[str, EMLook] = {"lucchi": LUCCHI_LOOK, "vnc": VNC_LOOK}


def make_lucchi_like(*, n_stacks: int = 10, n_slices: int = 16, size: int = 64, pixel_nm: float = 10.0,
                     test_stacks: int = 2, seed: int = 0) -> EMSet:
    """Lucchi++-like patches: isotropic FIB-SEM sampling of the shared tissue model (module docstring).

    Parameters
    ----------
    n_stacks, n_slices
        Independent tissue blocks, and consecutive slices cut from each (the images: ``n_stacks * n_slices``).
    size
        Patch side in pixels.
    pixel_nm
        Lateral pixel size; both stand-ins use the same, as the real pair nearly does (5 vs 4.6 nm). 10 nm is the
        real data downsampled twice, so a 64 px patch holds a few whole mitochondria.
    test_stacks
        The last this many stacks are the ``test`` split (whole blocks, so no test slice has a training neighbour).
    seed
        Same seed, same arrays.
    """
    return _make_em_like("lucchi", n_stacks=n_stacks, n_slices=n_slices, size=size, pixel_nm=pixel_nm,
                         test_stacks=test_stacks, seed=seed)


def make_vnc_like(*, n_stacks: int = 10, n_slices: int = 16, size: int = 64, pixel_nm: float = 10.0,
                  test_stacks: int = 2, seed: int = 0) -> EMSet:
    """VNC-like patches: 50 nm ssTEM sections of the shared tissue model; parameters as :func:`make_lucchi_like`."""
    return _make_em_like("vnc", n_stacks=n_stacks, n_slices=n_slices, size=size, pixel_nm=pixel_nm,
                         test_stacks=test_stacks, seed=seed)


def _make_em_like(domain: str, *, n_stacks: int, n_slices: int, size: int, pixel_nm: float, test_stacks: int,
                  seed: int) -> EMSet:
    if n_stacks < 1 or n_slices < 1 or size < 8 or pixel_nm <= 0:
        raise ConfigError(f"synthetic EM: n_stacks={n_stacks}, n_slices={n_slices}, size={size}, "
                          f"pixel_nm={pixel_nm}: expected >= 1, >= 1, >= 8 and > 0")
    if not 0 <= test_stacks < n_stacks:
        raise ConfigError(f"test_stacks = {test_stacks}: expected between 0 and n_stacks - 1 = {n_stacks - 1}")
    look = LOOKS[domain]
    z_step = look.z_step_nm or pixel_nm
    thickness = look.thickness_nm or pixel_nm
    # the same seed drives both domains' content streams apart, so the pair is not the same tissue twice
    content = np.random.default_rng([seed, EM_DOMAINS.index(domain), 0])
    camera = np.random.default_rng([seed, EM_DOMAINS.index(domain), 1])
    images = np.empty((n_stacks * n_slices, 1, size, size), np.uint8)
    masks = np.empty((n_stacks * n_slices, size, size), bool)
    membrane_fraction = np.empty(n_stacks * n_slices)
    z_nm = np.empty(n_stacks * n_slices)
    width = size * pixel_nm
    depth = (n_slices - 1) * z_step + thickness
    for s in range(n_stacks):
        tissue = _Tissue.draw(content, look, width=width, depth=depth)
        for k in range(n_slices):
            i = s * n_slices + k
            z_nm[i] = k * z_step + thickness / 2
            signal, masks[i], membrane_fraction[i] = tissue.section(z_nm[i], thickness, size=size,
                                                                    pixel_nm=pixel_nm)
            images[i, 0] = _image(camera, signal, look)
    stack = np.repeat(np.arange(n_stacks), n_slices)
    obs = pd.DataFrame({
        "image_id": [f"{domain}_s{s:02d}_{k:03d}" for s, k in zip(stack, np.tile(np.arange(n_slices), n_stacks))],
        "domain": domain,
        "stack": [f"s{s:02d}" for s in stack],
        "slice": np.tile(np.arange(n_slices), n_stacks),
        "split": np.where(stack >= n_stacks - test_stacks, "test", "train"),
        "z_nm": z_nm,
        "membrane_fraction": membrane_fraction,
    })
    metadata = {
        "domain": domain, "synthetic": True, "voxel_size_nm": (z_step, pixel_nm, pixel_nm),
        "section_thickness_nm": thickness, "emulates": look.emulates, "source": f"synthetic, seed {seed}",
    }
    return EMSet(images, masks, obs, metadata)


def _image(camera: np.random.Generator, signal: np.ndarray, look: EMLook) -> np.ndarray:
    """Point-spread blur, contrast around mid-grey, Gaussian noise, 8-bit."""
    blurred = gaussian_filter(signal, look.blur_px)
    noisy = 0.5 + look.contrast * (blurred - 0.5) + camera.normal(0, look.noise, signal.shape)
    return np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)


@dataclass
class _Tissue:
    """One block of neuropil (nm): membranes of elongated cells (anisotropic Voronoi), mitochondria, vesicles."""

    look: EMLook
    seeds: np.ndarray  # (S, 3) cell seeds, in the space where cells are isotropic
    stretch: np.ndarray  # (3, 3) maps tissue coordinates into that space
    mito_a: np.ndarray  # (M, 3) capsule axis start
    mito_b: np.ndarray  # (M, 3) capsule axis end
    mito_r: np.ndarray  # (M,) radius
    cristae_phase: np.ndarray  # (M,)
    vesicles: np.ndarray  # (V, 3)
    waves: np.ndarray  # (K, 3) texture wave vectors (rad / nm)
    wave_phase: np.ndarray  # (K,)

    def __post_init__(self) -> None:
        self.seed_tree = cKDTree(self.seeds)
        self.vesicle_tree = cKDTree(self.vesicles) if len(self.vesicles) else None

    @classmethod
    def draw(cls, rng: np.random.Generator, look: EMLook, *, width: float, depth: float) -> _Tissue:
        axis = _unit(rng.normal(size=3))
        # compress the neurites' long axis, so the Voronoi cells of isotropic seeds become elongated tubes
        stretch = np.eye(3) - (1 - 1 / NEURITE_STRETCH) * np.outer(axis, axis)
        margin = 2 * look.neurite_spacing_nm
        lo, hi = np.array([-margin, -margin, -margin]), np.array([width + margin, width + margin, depth + margin])
        volume_um3 = np.prod((hi - lo) / 1000)
        n_seeds = rng.poisson(volume_um3 / (look.neurite_spacing_nm / 1000) ** 3 / NEURITE_STRETCH) + 2
        seeds = rng.uniform(lo, hi, size=(n_seeds, 3)) @ stretch.T

        # capsules whose centre lies within reach of the block can show in it
        reach = MITO_LENGTH_NM[1] / 2 + MITO_RADIUS_NM[0] * 2
        m_lo, m_hi = np.full(3, -reach), np.array([width, width, depth]) + reach
        (median, sigma), length = MITO_RADIUS_NM, np.mean(MITO_LENGTH_NM)
        mean_volume = np.pi * median**2 * np.exp(2 * sigma**2) * length + 4 / 3 * np.pi * median**3 * np.exp(
            4.5 * sigma**2)  # E[cylinder + two half-spheres] under the lognormal radius
        n_mito = rng.poisson(MITO_VOLUME_FRACTION * np.prod(m_hi - m_lo) / mean_volume)
        centre = rng.uniform(m_lo, m_hi, size=(n_mito, 3))
        half = (rng.uniform(*MITO_LENGTH_NM, n_mito) / 2)[:, None] * _unit(rng.normal(size=(n_mito, 3)))
        mito_r = MITO_RADIUS_NM[0] * np.exp(MITO_RADIUS_NM[1] * rng.standard_normal(n_mito))

        n_vesicles = rng.poisson(look.vesicles_per_um3 * volume_um3)
        vesicles = rng.uniform(lo, hi, size=(n_vesicles, 3))
        waves = _unit(rng.normal(size=(12, 3))) * (2 * np.pi / look.texture_nm) * rng.uniform(0.7, 1.4, (12, 1))
        return cls(look, seeds, stretch, centre - half, centre + half, mito_r, rng.uniform(0, 2 * np.pi, n_mito),
                   vesicles, waves, rng.uniform(0, 2 * np.pi, 12))

    def section(self, z: float, thickness: float, *, size: int, pixel_nm: float
                ) -> tuple[np.ndarray, np.ndarray, float]:
        """Signal ``(size, size)`` in [0, 1] of the section centred at depth ``z``, its mask (mitochondrion in at
        least half of the depth) and its membrane pixel fraction.

        A thick section is the mean of planes 12.5 nm apart through its depth, so tilted structures smear."""
        n_planes = max(1, int(round(thickness / 12.5)))
        offsets = (np.arange(n_planes) + 0.5) / n_planes * thickness - thickness / 2
        yy, xx = (np.mgrid[0:size, 0:size].reshape(2, -1) + 0.5) * pixel_nm
        signal = np.zeros(size * size)
        inside = np.zeros(size * size)
        membrane = np.zeros(size * size)
        for dz in offsets:
            points = np.column_stack([xx, yy, np.full(size * size, z + dz)])  # (P, 3)
            value, in_mito, on_membrane = self._plane(points, pixel_nm)
            signal += value / n_planes
            inside += in_mito / n_planes
            membrane += on_membrane / n_planes
        return (signal.reshape(size, size).astype(np.float32), (inside >= 0.5).reshape(size, size),
                float((membrane >= 0.5).mean()))

    def _plane(self, points: np.ndarray, pixel_nm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Intensity, mitochondrion weight and membrane weight (each ``(P,)``, soft at one-pixel edges)."""
        look = self.look
        texture = np.cos(points @ self.waves.T + self.wave_phase).sum(1) / np.sqrt(len(self.waves) / 2)  # (P,)
        value = look.cytoplasm + look.texture * texture

        # cell membranes: distance to the bisector of the two nearest seeds, in the cells' isotropic space
        (d_first, d_second), nearest = (a.T for a in self.seed_tree.query(points @ self.stretch.T, k=2))
        s1, s2 = self.seeds[nearest[0]], self.seeds[nearest[1]]
        to_bisector = (d_second**2 - d_first**2) / (2 * np.linalg.norm(s2 - s1, axis=1) + 1e-9)
        on_membrane = _soft_inside(look.membrane_nm / 2 - to_bisector, pixel_nm)
        value += (look.membrane - value) * on_membrane

        if self.vesicle_tree is not None:
            d_vesicle, _ = self.vesicle_tree.query(points, distance_upper_bound=VESICLE_RADIUS_NM + pixel_nm)
            value += (look.membrane - value) * 0.8 * _soft_inside(VESICLE_RADIUS_NM - d_vesicle, pixel_nm)

        in_mito = np.zeros(len(points))
        near = np.abs(self._axis_z_distance(points[0, 2])) <= self.mito_r
        if near.any():
            a, r = self.mito_a[near], self.mito_r[near]
            ab = self.mito_b[near] - a  # (M, 3)
            length2 = (ab**2).sum(1)  # (M,)
            along_ab = points @ ab.T - (a * ab).sum(1)  # (P, M): (p - a) . ab
            t = np.clip(along_ab / length2, 0, 1)  # nearest axis point a + t ab
            to_a2 = (points**2).sum(1)[:, None] - 2 * points @ a.T + (a**2).sum(1)  # (P, M): |p - a|^2
            to_axis2 = np.maximum(to_a2 - 2 * t * along_ab + t**2 * length2, 0)
            depth = r - np.sqrt(to_axis2)  # (P, M), > 0 inside
            m = depth.argmax(1)  # the capsule each point is deepest in
            rows = np.arange(len(points))
            depth = depth[rows, m]
            along = t[rows, m] * np.sqrt(length2[m])  # nm along the axis
            stripes = np.cos(2 * np.pi * along / CRISTAE_PERIOD_NM + self.cristae_phase[near][m])
            matrix = look.mitochondrion + look.cristae * stripes + 0.5 * look.texture * texture
            in_mito = _soft_inside(depth, pixel_nm)
            outer = _soft_inside(look.membrane_nm - depth, pixel_nm) * in_mito  # the dark outer membrane
            value = value * (1 - in_mito) + matrix * in_mito
            value += (look.membrane - value) * outer
            on_membrane = on_membrane * (1 - in_mito)
        return value, in_mito, on_membrane

    def _axis_z_distance(self, z: float) -> np.ndarray:
        """``(M,)`` z-distance from the plane to each capsule's axis segment (0 where the segment crosses it)."""
        lo = np.minimum(self.mito_a[:, 2], self.mito_b[:, 2])
        hi = np.maximum(self.mito_a[:, 2], self.mito_b[:, 2])
        return np.maximum(0, np.maximum(lo - z, z - hi))


def _soft_inside(depth: np.ndarray, pixel_nm: float) -> np.ndarray:
    """1 well inside (depth > half a pixel), 0 well outside, linear across the pixel at the border."""
    return np.clip(depth / pixel_nm + 0.5, 0, 1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------------------------
# The pair as the study uses it


def load_em_pair(config: EMDataConfig, *, seed: int) -> dict[str, EMSet]:
    """``{"lucchi": ..., "vnc": ...}`` as patches of ``config.patch_size``: the stand-ins, or the real pair tiled."""
    config.validate("data.em")
    if config.source == "synthetic":
        options = dict(n_stacks=config.n_stacks, n_slices=config.n_slices, size=config.patch_size,
                       pixel_nm=config.pixel_nm, test_stacks=config.test_stacks, seed=seed)
        return {"lucchi": make_lucchi_like(**options), "vnc": make_vnc_like(**options)}
    return {"lucchi": tile_em(read_lucchi_pp(config.lucchi_path), config.patch_size),
            "vnc": tile_em(read_vnc(config.vnc_path, test_sections=config.vnc_test_sections), config.patch_size)}
