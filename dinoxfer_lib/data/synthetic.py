"""Embedded synthetic stand-ins for the three domains of the study (DESIGN.md "Data layer").

The real data (OpenCell, Cho et al. 2022 *Science*; the HPA Kaggle challenge, Ouyang et al. 2019 *Nat Methods*;
ImageNet) cannot be downloaded everywhere, so the default profiles run on procedural images that keep what the
study depends on:

- fields of view with several touching cells (cytoplasm + nucleus + nucleoli), a nucleus channel, and a protein
  channel whose pattern follows the image's localisation labels, one renderer per compartment;
- labels that belong to proteins (all images of a protein share them), 1-3 per protein with grades 3/2/1 setting
  the pattern's strength, imbalanced classes and realistic co-occurrence;
- look-alike compartments (nucleoplasm vs chromatin, golgi vs centrosome, vesicles vs punctae vs mitochondrial
  fragments), weak grade-1 labels and noise, so the classes are learnable but not trivially separable;
- imaging: PSF blur, background, Poisson-Gaussian noise, 16-bit counts, and per-plate illumination gradient, gain,
  offset and noise level, so batch correction has something to correct.

Generation is deterministic per seed. Everything is rendered at the profile's image size; cell sizes scale with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from dinoxfer_lib.config import DomainConfig
from dinoxfer_lib.data.classes import (
    HPA_CHANNELS,
    HPA_CLASSES,
    NATURAL_CHANNELS,
    OPENCELL_CHANNELS,
    OPENCELL_CLASSES,
)
from dinoxfer_lib.data.dataset import ImageSet

# --------------------------------------------------------------------------------------------------------------
# Class statistics (data). OpenCell-like prevalence of each class as a protein's first label, and the classes
# that tend to come with it (co-occurrence), loosely following the OpenCell annotation statistics.
# --------------------------------------------------------------------------------------------------------------
OPENCELL_PRIOR: dict[str, float] = {
    "nucleoplasm": 0.20, "cytoplasmic": 0.20, "vesicles": 0.08, "er": 0.07, "chromatin": 0.05,
    "mitochondria": 0.05, "membrane": 0.05, "nuclear_punctae": 0.045, "golgi": 0.04, "nucleolus_gc": 0.035,
    "cytoskeleton": 0.03, "nuclear_membrane": 0.03, "centrosome": 0.025, "nucleolus_fc_dfc": 0.025,
    "cell_contact": 0.02, "big_aggregates": 0.015, "focal_adhesions": 0.015,
}
COMPANIONS: dict[str, tuple[str, ...]] = {
    "nucleoplasm": ("cytoplasmic", "nuclear_punctae", "nucleolus_gc", "chromatin"),
    "cytoplasmic": ("nucleoplasm", "membrane", "vesicles"),
    "vesicles": ("cytoplasmic", "golgi", "er"),
    "er": ("nuclear_membrane", "vesicles", "cytoplasmic"),
    "chromatin": ("nucleoplasm", "nuclear_punctae"),
    "mitochondria": ("cytoplasmic",),
    "membrane": ("cell_contact", "cytoplasmic", "vesicles"),
    "nuclear_punctae": ("nucleoplasm",),
    "golgi": ("vesicles", "cytoplasmic"),
    "nucleolus_gc": ("nucleoplasm", "nucleolus_fc_dfc"),
    "cytoskeleton": ("cytoplasmic", "focal_adhesions"),
    "nuclear_membrane": ("er", "nucleoplasm"),
    "centrosome": ("cytoplasmic", "nucleoplasm"),
    "nucleolus_fc_dfc": ("nucleolus_gc", "nucleoplasm"),
    "cell_contact": ("membrane",),
    "big_aggregates": ("cytoplasmic",),
    "focal_adhesions": ("cytoskeleton", "membrane"),
}
# Relative pattern strength of a label by its grade (3 prominent, 2 less pronounced, 1 weak).
GRADE_STRENGTH = {3: 1.0, 2: 0.5, 1: 0.22}

# HPA classes drawn with the same renderers: (renderer, variant parameters), and their prevalence.
HPA_RENDERERS: dict[str, tuple[str, dict]] = {
    "Nucleoplasm": ("nucleoplasm", {}),
    "Nuclear membrane": ("nuclear_membrane", {}),
    "Nucleoli": ("nucleolus_gc", {}),
    "Nucleoli fibrillar center": ("nucleolus_fc_dfc", {}),
    "Nuclear speckles": ("nuclear_punctae", {"count": 10, "sigma": 0.9}),
    "Nuclear bodies": ("nuclear_punctae", {"count": 3, "sigma": 0.7}),
    "Endoplasmic reticulum": ("er", {}),
    "Golgi apparatus": ("golgi", {}),
    "Peroxisomes": ("vesicles", {"count": 40, "sigma": 0.5}),
    "Endosomes": ("vesicles", {"count": 20, "sigma": 0.8}),
    "Lysosomes": ("vesicles", {"count": 14, "sigma": 1.0}),
    "Intermediate filaments": ("cytoskeleton", {"curvy": 1.0}),
    "Actin filaments": ("cytoskeleton", {"curvy": 0.0, "cortical": 1.0}),
    "Focal adhesion sites": ("focal_adhesions", {}),
    "Microtubules": ("cytoskeleton", {"radial": 1.0}),
    "Microtubule ends": ("focal_adhesions", {"count": 18, "sigma": 0.5}),
    "Cytokinetic bridge": ("cell_contact", {"width": 0.6}),
    "Mitotic spindle": ("centrosome", {"count": 2, "sigma": 1.6}),
    "Microtubule organizing center": ("centrosome", {"count": 1, "sigma": 1.0}),
    "Centrosome": ("centrosome", {"count": 2, "sigma": 0.6}),
    "Lipid droplets": ("vesicles", {"count": 6, "sigma": 1.3}),
    "Plasma membrane": ("membrane", {}),
    "Cell junctions": ("cell_contact", {}),
    "Mitochondria": ("mitochondria", {}),
    "Aggresome": ("big_aggregates", {"count": 1}),
    "Cytosol": ("cytoplasmic", {}),
    "Cytoplasmic bodies": ("big_aggregates", {"count": 3, "size": 0.6}),
    "Rods & rings": ("mitochondria", {"count": 3, "length": 2.0}),
}
HPA_PRIOR: dict[str, float] = dict(zip(HPA_CLASSES, (
    0.30, 0.02, 0.06, 0.03, 0.03, 0.04, 0.03, 0.04, 0.01, 0.01, 0.01, 0.02, 0.02, 0.01,
    0.02, 0.005, 0.008, 0.008, 0.02, 0.02, 0.01, 0.06, 0.02, 0.05, 0.01, 0.15, 0.02, 0.004,
)))

NATURAL_PHOTOS: tuple[str, ...] = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "camera",
    "coins", "brick", "grass", "gravel", "moon", "clock",
)


# --------------------------------------------------------------------------------------------------------------
# Geometry of one field of view
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Field:
    """Masks and distance maps of one field of view; renderers draw into it."""

    size: int
    owner: np.ndarray  # (S, S) int: cell index per pixel, -1 = background
    cell_d: np.ndarray  # (S, S) normalised distance to the owning cell's outline (1 = boundary)
    nuc_d: np.ndarray  # (S, S) normalised distance to the owning nucleus' outline
    contact: np.ndarray  # (S, S) bool: pixels where two cells touch
    nucleoli: np.ndarray  # (S, S) float in [0, 1]
    dna: np.ndarray  # (S, S) chromatin texture in [0, 1]
    centres: np.ndarray  # (K, 2) nucleus centres (y, x)
    nuc_radius: np.ndarray  # (K,) nucleus radius in pixels
    cell_radius: np.ndarray  # (K,)

    @property
    def nucleus(self) -> np.ndarray:
        return (self.nuc_d < 1) & (self.owner >= 0)

    @property
    def cytoplasm(self) -> np.ndarray:
        return (self.owner >= 0) & (self.nuc_d >= 1)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Band-limited noise scaled to [0, 1]."""
    field = gaussian_filter(rng.standard_normal((size, size)), sigma)
    lo, hi = field.min(), field.max()
    return (field - lo) / (hi - lo + 1e-9)


def make_field(rng: np.random.Generator, size: int, *, n_cells: int, radius: float, aspect: float,
               nucleus_ratio: float) -> Field:
    """Cells as rotated ellipses around jittered centres; overlapping cells split where they meet."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centres = rng.uniform(0.12 * size, 0.88 * size, (n_cells, 2))
    radii = radius * rng.uniform(0.85, 1.15, n_cells)
    ratios = rng.uniform(1.0, aspect, n_cells)
    angles = rng.uniform(0, np.pi, n_cells)
    dy, dx = yy[None] - centres[:, 0, None, None], xx[None] - centres[:, 1, None, None]  # (K, S, S)
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    d = np.sqrt((u / (radii[:, None, None] * ratios[:, None, None])) ** 2 + (v / radii[:, None, None]) ** 2)
    order = np.argsort(d, axis=0)
    nearest = np.take_along_axis(d, order[:1], 0)[0]
    second = np.take_along_axis(d, order[1:2], 0)[0] if n_cells > 1 else np.full((size, size), 9.0)
    owner = np.where(nearest < 1, order[0], -1)
    contact = (nearest < 1.05) & (second < 1.05) & (np.abs(nearest - second) < 0.22)
    # nucleus: smaller ellipse, shifted off-centre
    shift = rng.uniform(-0.2, 0.2, (n_cells, 2)) * radii[:, None]
    nuc_centres = centres + shift
    nuc_radii = radii * nucleus_ratio * rng.uniform(0.9, 1.1, n_cells)
    ny, nx = yy[None] - nuc_centres[:, 0, None, None], xx[None] - nuc_centres[:, 1, None, None]
    nd_all = np.sqrt((nx / (nuc_radii[:, None, None] * 1.15)) ** 2 + (ny / nuc_radii[:, None, None]) ** 2)
    safe_owner = np.maximum(owner, 0)
    nuc_d = np.where(owner >= 0, np.take_along_axis(nd_all, safe_owner[None], 0)[0], 9.0)
    # nucleoli: 1-3 blobs inside each nucleus
    nucleoli = np.zeros((size, size), np.float32)
    for k in range(n_cells):
        for _ in range(rng.integers(1, 4)):
            r = nuc_radii[k] * rng.uniform(0.0, 0.5)
            a = rng.uniform(0, 2 * np.pi)
            cy, cx = nuc_centres[k] + r * np.array([np.sin(a), np.cos(a)])
            rad = max(0.9, nuc_radii[k] * rng.uniform(0.18, 0.3))
            nucleoli = np.maximum(nucleoli, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rad**2)))
    nucleoli = np.where(nuc_d < 0.9, nucleoli, 0)
    dna = _smooth_noise(rng, size, 0.8)
    return Field(size, owner, np.where(owner >= 0, nearest, 9.0), nuc_d, contact, nucleoli, dna,
                 nuc_centres, nuc_radii, radii)


# --------------------------------------------------------------------------------------------------------------
# Protein-pattern renderers: one per compartment. Each returns an (S, S) map with values around 0-1.
# --------------------------------------------------------------------------------------------------------------
def _spots(size: int, points: np.ndarray, sigma: float, weights: np.ndarray | None = None) -> np.ndarray:
    canvas = np.zeros((size, size), np.float32)
    if len(points):
        pts = np.clip(np.round(points).astype(int), 0, size - 1)
        np.add.at(canvas, (pts[:, 0], pts[:, 1]), 1.0 if weights is None else weights)
    out = gaussian_filter(canvas, sigma)
    return out / (out.max() + 1e-9)


def _sample_pixels(rng: np.random.Generator, mask: np.ndarray, n: int) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros((0, 2))
    pick = rng.integers(0, len(ys), n)
    return np.stack([ys[pick], xs[pick]], 1) + rng.uniform(-0.5, 0.5, (n, 2))


def _segments(rng, starts: np.ndarray, angles: np.ndarray, length: float, curvy: float, steps: int = 12) -> np.ndarray:
    """Points along short random-walk segments (filaments), (n·steps, 2)."""
    theta = angles[:, None] + np.cumsum(rng.normal(0, 0.25 * curvy, (len(starts), steps)), axis=1)
    step = length / steps
    path = starts[:, None, :] + np.cumsum(step * np.stack([np.sin(theta), np.cos(theta)], -1), axis=1)
    return path.reshape(-1, 2)


def render_nucleoplasm(f: Field, rng, **_) -> np.ndarray:
    return f.nucleus * (1 - 0.9 * f.nucleoli) * (0.75 + 0.25 * _smooth_noise(rng, f.size, 2.0))


def render_chromatin(f: Field, rng, **_) -> np.ndarray:
    return f.nucleus * (1 - 0.7 * f.nucleoli) * np.clip(1.6 * f.dna - 0.3, 0.05, 1)


def render_nuclear_punctae(f: Field, rng, count: int = 5, sigma: float = 0.7, **_) -> np.ndarray:
    pts = _sample_pixels(rng, f.nucleus & (f.nucleoli < 0.3), count * len(f.centres))
    return _spots(f.size, pts, sigma) + 0.12 * render_nucleoplasm(f, rng)


def render_nucleolus_gc(f: Field, rng, **_) -> np.ndarray:
    return f.nucleus * f.nucleoli


def render_nucleolus_fc_dfc(f: Field, rng, **_) -> np.ndarray:
    pts = _sample_pixels(rng, f.nucleoli > 0.5, 4 * len(f.centres))
    return _spots(f.size, pts, 0.5) * (f.nucleoli > 0.2)


def render_nuclear_membrane(f: Field, rng, **_) -> np.ndarray:
    return np.exp(-((f.nuc_d - 1) ** 2) / 0.02) * (f.owner >= 0)


def render_cytoplasmic(f: Field, rng, **_) -> np.ndarray:
    return f.cytoplasm * (0.7 + 0.3 * _smooth_noise(rng, f.size, 2.5))


def render_er(f: Field, rng, **_) -> np.ndarray:
    lattice = np.abs(_smooth_noise(rng, f.size, 1.0) - 0.5) < 0.08  # reticular network
    near_nucleus = np.clip(1.6 - 0.5 * f.nuc_d, 0.2, 1)
    return f.cytoplasm * gaussian_filter(lattice.astype(np.float32), 0.6) * near_nucleus * 2.0


def _perinuclear_points(f: Field, rng, per_cell: int, spread: float, offset: float) -> np.ndarray:
    pts = []
    for k in range(len(f.centres)):
        a = rng.uniform(0, 2 * np.pi)
        r = f.nuc_radius[k] * (1 + offset)
        centre = f.centres[k] + r * np.array([np.sin(a), np.cos(a)])
        pts.append(centre + rng.normal(0, spread * f.nuc_radius[k], (per_cell, 2)))
    return np.concatenate(pts)


def render_golgi(f: Field, rng, **_) -> np.ndarray:
    return _spots(f.size, _perinuclear_points(f, rng, 7, 0.25, 0.35), 0.8) * (f.owner >= 0)


def render_centrosome(f: Field, rng, count: int = 2, sigma: float = 0.6, **_) -> np.ndarray:
    return _spots(f.size, _perinuclear_points(f, rng, count, 0.08, 0.3), sigma) * (f.owner >= 0)


def render_mitochondria(f: Field, rng, count: int = 9, length: float = 1.0, **_) -> np.ndarray:
    n = count * len(f.centres)
    starts = _sample_pixels(rng, f.cytoplasm, n)
    pts = _segments(rng, starts, rng.uniform(0, 2 * np.pi, n), length * 0.09 * f.size, curvy=1.0, steps=6)
    return _spots(f.size, pts, 0.55) * f.cytoplasm


def render_vesicles(f: Field, rng, count: int = 16, sigma: float = 0.6, **_) -> np.ndarray:
    return _spots(f.size, _sample_pixels(rng, f.cytoplasm, count * len(f.centres)), sigma)


def render_big_aggregates(f: Field, rng, count: int = 2, size: float = 1.0, **_) -> np.ndarray:
    pts = _sample_pixels(rng, f.cytoplasm & (f.cell_d < 0.8), count)
    return _spots(f.size, pts, size * 0.045 * f.size) + 0.1 * render_cytoplasmic(f, rng)


def render_cytoskeleton(f: Field, rng, curvy: float = 0.3, radial: float = 0.0, cortical: float = 0.0, **_) -> np.ndarray:
    n = 10 * len(f.centres)
    starts = _sample_pixels(rng, f.cytoplasm, n)
    cell_angle = rng.uniform(0, np.pi, len(f.centres))
    owner = f.owner[np.clip(starts[:, 0].astype(int), 0, f.size - 1), np.clip(starts[:, 1].astype(int), 0, f.size - 1)]
    angles = cell_angle[np.maximum(owner, 0)] + rng.normal(0, 0.15, n)
    if radial:
        centre = f.centres[np.maximum(owner, 0)]
        angles = np.arctan2(starts[:, 0] - centre[:, 0], starts[:, 1] - centre[:, 1])
    pts = _segments(rng, starts, angles, 0.25 * f.size, curvy=curvy, steps=16)
    fibres = _spots(f.size, pts, 0.5) * f.cytoplasm
    if cortical:
        fibres = fibres + 0.6 * render_membrane(f, rng)
    return fibres


def render_membrane(f: Field, rng, **_) -> np.ndarray:
    return np.exp(-((f.cell_d - 0.95) ** 2) / 0.006) * (f.owner >= 0)


def render_cell_contact(f: Field, rng, width: float = 1.0, **_) -> np.ndarray:
    return gaussian_filter(f.contact.astype(np.float32), 0.6 * width) * 2.5 * (f.cell_d < 1.1)


def render_focal_adhesions(f: Field, rng, count: int = 8, sigma: float = 0.6, **_) -> np.ndarray:
    n = count * len(f.centres)
    starts = _sample_pixels(rng, (f.cell_d > 0.72) & (f.cell_d < 0.95), n)
    owner = f.owner[np.clip(starts[:, 0].astype(int), 0, f.size - 1), np.clip(starts[:, 1].astype(int), 0, f.size - 1)]
    centre = f.centres[np.maximum(owner, 0)]
    radial = np.arctan2(starts[:, 0] - centre[:, 0], starts[:, 1] - centre[:, 1])
    return _spots(f.size, _segments(rng, starts, radial, 0.05 * f.size, curvy=0.0, steps=4), sigma)


RENDERERS: dict[str, Callable[..., np.ndarray]] = {
    "big_aggregates": render_big_aggregates,
    "cell_contact": render_cell_contact,
    "centrosome": render_centrosome,
    "chromatin": render_chromatin,
    "cytoplasmic": render_cytoplasmic,
    "cytoskeleton": render_cytoskeleton,
    "er": render_er,
    "focal_adhesions": render_focal_adhesions,
    "golgi": render_golgi,
    "membrane": render_membrane,
    "mitochondria": render_mitochondria,
    "nuclear_membrane": render_nuclear_membrane,
    "nuclear_punctae": render_nuclear_punctae,
    "nucleolus_fc_dfc": render_nucleolus_fc_dfc,
    "nucleolus_gc": render_nucleolus_gc,
    "nucleoplasm": render_nucleoplasm,
    "vesicles": render_vesicles,
}


# --------------------------------------------------------------------------------------------------------------
# Labels, plates, imaging
# --------------------------------------------------------------------------------------------------------------
def draw_label_sets(rng: np.random.Generator, n_groups: int, prior: dict[str, float], *, max_labels: int,
                    companions: dict[str, tuple[str, ...]] | None = None) -> list[list[tuple[str, int]]]:
    """Per group: 1..max_labels (class, grade) pairs; the first grade 3, the others grade 2 or 1."""
    names = list(prior)
    p = np.array([prior[n] for n in names])
    p /= p.sum()
    # every class gets at least a few groups, so rare classes exist at small sizes too
    firsts = list(rng.permutation(names)[: min(len(names), n_groups)])
    firsts += list(rng.choice(names, size=max(0, n_groups - len(firsts)), p=p))
    firsts = list(rng.permutation(firsts))
    sizes = rng.choice(np.arange(1, max_labels + 1), size=n_groups, p=_cardinality(max_labels))
    label_sets = []
    for first, n in zip(firsts, sizes):
        chosen = [first]
        while len(chosen) < n:
            pool = [c for c in (companions or {}).get(chosen[0], ()) if c not in chosen]
            if pool and rng.random() < 0.7:
                nxt = pool[rng.integers(len(pool))]
            else:
                rest = [c for c in names if c not in chosen]
                w = np.array([prior[c] for c in rest])
                nxt = rest[rng.choice(len(rest), p=w / w.sum())]
            chosen.append(nxt)
        label_sets.append([(c, 3 if i == 0 else int(rng.choice([2, 1], p=[0.6, 0.4]))) for i, c in enumerate(chosen)])
    return label_sets


def _cardinality(max_labels: int) -> np.ndarray:
    p = np.array([0.5, 0.35, 0.12, 0.03][:max_labels])
    return p / p.sum()


@dataclass(frozen=True)
class Plate:
    """Technical signature of one plate: illumination tilt, gain, offset, read noise."""

    tilt: float
    angle: float
    gain: float
    offset: float
    noise: float


def draw_plates(rng: np.random.Generator, n: int, strength: float) -> list[Plate]:
    return [
        Plate(
            tilt=strength * rng.uniform(0.15, 0.45),
            angle=rng.uniform(0, 2 * np.pi),
            gain=float(np.clip(1 + strength * rng.normal(0, 0.3), 0.4, 2.0)),
            offset=300 + strength * rng.uniform(-150, 250),
            noise=12 * (1 + strength * rng.uniform(0, 2.0)),
        )
        for _ in range(n)
    ]


def assign_images(rng: np.random.Generator, n_images: int, n_groups: int, n_batches: int) -> tuple[np.ndarray, np.ndarray]:
    """Group of each image (every group at least once) and its plate (a group mostly on its home plate)."""
    weights = rng.lognormal(0, 0.5, n_groups)
    group = np.concatenate([np.arange(n_groups), rng.choice(n_groups, n_images - n_groups, p=weights / weights.sum())])
    group = rng.permutation(group)
    home = rng.integers(0, n_batches, n_groups)
    plate = np.where(rng.random(n_images) < 0.85, home[group], rng.integers(0, n_batches, n_images))
    return group, plate


def acquire(rng: np.random.Generator, signal: np.ndarray, plate: Plate, *, peak: float) -> np.ndarray:
    """Signal (C, S, S) in ~[0, 1] → 16-bit counts: PSF, illumination, gain, offset, Poisson + read noise."""
    size = signal.shape[-1]
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    illumination = 1 + plate.tilt * (np.cos(plate.angle) * xx + np.sin(plate.angle) * yy) * 2
    blurred = gaussian_filter(signal, (0, 0.7, 0.7))
    photons = rng.poisson(np.clip(blurred, 0, None) * peak * illumination * plate.gain + 40).astype(np.float32)
    counts = photons + plate.offset + rng.normal(0, plate.noise, photons.shape)
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


# --------------------------------------------------------------------------------------------------------------
# Domains
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellStyle:
    """How cells of a domain (or an HPA cell line) look at a given image size."""

    n_cells: tuple[int, int]
    radius: float  # fraction of the image side
    aspect: float
    nucleus_ratio: float


OPENCELL_STYLE = CellStyle(n_cells=(3, 6), radius=0.17, aspect=1.3, nucleus_ratio=0.58)
HPA_LINE_STYLES = (
    CellStyle(n_cells=(2, 3), radius=0.27, aspect=1.6, nucleus_ratio=0.42),
    CellStyle(n_cells=(1, 3), radius=0.32, aspect=1.3, nucleus_ratio=0.38),
    CellStyle(n_cells=(2, 4), radius=0.23, aspect=2.0, nucleus_ratio=0.45),
    CellStyle(n_cells=(1, 2), radius=0.36, aspect=1.2, nucleus_ratio=0.35),
)


def _field(rng, size: int, style: CellStyle) -> Field:
    n = int(rng.integers(style.n_cells[0], style.n_cells[1] + 1))
    return make_field(rng, size, n_cells=n, radius=style.radius * size, aspect=style.aspect,
                      nucleus_ratio=style.nucleus_ratio)


def _protein_signal(f: Field, rng, labels: list[tuple[str, int]], renderers: dict[str, tuple[str, dict]],
                    expression: float) -> np.ndarray:
    signal = 0.03 * (f.owner >= 0)  # faint autofluorescence of every cell
    for name, grade in labels:
        renderer, params = renderers[name]
        pattern = RENDERERS[renderer](f, rng, **params)
        signal = signal + GRADE_STRENGTH[grade] * pattern * rng.uniform(0.8, 1.2)
    return signal * expression


def _nucleus_signal(f: Field) -> np.ndarray:
    return f.nucleus * (0.6 + 0.4 * f.dna) * (1 - 0.5 * f.nucleoli)


def _labels_matrix(label_sets, group, class_names) -> tuple[np.ndarray, np.ndarray]:
    index = {c: j for j, c in enumerate(class_names)}
    per_group = np.zeros((len(label_sets), len(class_names)), np.int8)
    for g, labels in enumerate(label_sets):
        for name, grade in labels:
            per_group[g, index[name]] = grade
    grades = per_group[group]
    return grades > 0, grades


def make_opencell_like(config: DomainConfig, *, seed: int) -> ImageSet:
    """OpenCell-like fields of view: 2 channels (protein, nucleus), 17 classes, graded labels per protein."""
    rng = np.random.default_rng([seed, 1])
    size = config.image_size or 64
    label_sets = draw_label_sets(rng, config.n_groups, OPENCELL_PRIOR, max_labels=3, companions=COMPANIONS)
    group, plate = assign_images(rng, config.n_images, config.n_groups, config.n_batches)
    plates = draw_plates(rng, config.n_batches, config.batch_effect)
    expression = rng.lognormal(0, 0.35, config.n_groups)
    renderers = {c: (c, {}) for c in OPENCELL_CLASSES}
    images = np.empty((config.n_images, 2, size, size), np.uint16)
    n_cells = np.empty(config.n_images, int)
    for i in tqdm(range(config.n_images), desc="OpenCell-like images", disable=None, leave=False):
        f = _field(rng, size, OPENCELL_STYLE)
        protein = _protein_signal(f, rng, label_sets[group[i]], renderers, expression[group[i]])
        images[i] = acquire(rng, np.stack([protein, _nucleus_signal(f)]), plates[plate[i]], peak=2500)
        n_cells[i] = len(f.centres)
    labels, grades = _labels_matrix(label_sets, group, OPENCELL_CLASSES)
    obs = pd.DataFrame({
        "image_id": [f"oc_{i:06d}" for i in range(config.n_images)],
        "group": [f"P{g + 1:04d}" for g in group],
        "batch": [f"plate{p + 1:02d}" for p in plate],
        "domain": "opencell",
        "n_cells": n_cells,
    })
    field_um = 600 * 0.102  # the paper's 600 px crops at 0.102 µm
    return ImageSet(images, labels, grades, obs, OPENCELL_CLASSES, OPENCELL_CHANNELS, "opencell",
                    pixel_size_um=0.102, synthetic=True,
                    extra={"effective_pixel_size_um": round(field_um / size, 4), "field_of_view_um": field_um})


def _hpa_reference_channels(f: Field, rng) -> tuple[np.ndarray, np.ndarray]:
    microtubules = render_cytoskeleton(f, rng, curvy=0.6, radial=1.0)
    er = render_er(f, rng)
    return 0.6 * microtubules + 0.05 * (f.owner >= 0), 0.6 * er + 0.05 * f.cytoplasm


def make_hpa_like(config: DomainConfig, *, seed: int) -> ImageSet:
    """HPA-like fields of view: 4 channels (protein, microtubules, nucleus, ER), 28 HPA classes, cell lines."""
    rng = np.random.default_rng([seed, 2])
    size = config.image_size or 64
    label_sets = draw_label_sets(rng, config.n_groups, HPA_PRIOR, max_labels=4)
    group, plate = assign_images(rng, config.n_images, config.n_groups, config.n_batches)
    plates = draw_plates(rng, config.n_batches, config.batch_effect)
    expression = rng.lognormal(0, 0.35, config.n_groups)
    line = rng.integers(0, config.n_cell_lines, config.n_images)
    images = np.empty((config.n_images, 4, size, size), np.uint16)
    for i in tqdm(range(config.n_images), desc="HPA-like images", disable=None, leave=False):
        f = _field(rng, size, HPA_LINE_STYLES[line[i] % len(HPA_LINE_STYLES)])
        protein = _protein_signal(f, rng, label_sets[group[i]], HPA_RENDERERS, expression[group[i]])
        microtubules, er = _hpa_reference_channels(f, rng)
        images[i] = acquire(rng, np.stack([protein, microtubules, _nucleus_signal(f), er]), plates[plate[i]], peak=2000)
    labels, grades = _labels_matrix(label_sets, group, HPA_CLASSES)
    grades = np.where(labels, 3, 0).astype(np.int8)  # HPA labels carry no grade
    obs = pd.DataFrame({
        "image_id": [f"hpa_{i:06d}" for i in range(config.n_images)],
        "group": [f"A{g + 1:04d}" for g in group],
        "batch": [f"plate{p + 1:02d}" for p in plate],
        "domain": "hpa",
        "cell_line": [f"line_{chr(65 + k)}" for k in line],
    })
    return ImageSet(images, labels, grades, obs, HPA_CLASSES, HPA_CHANNELS, "hpa", pixel_size_um=0.08,
                    synthetic=True, extra={"effective_pixel_size_um": round(2048 * 0.08 / size, 4)})


def _load_photo(name: str) -> np.ndarray:
    import skimage.data

    photo = np.asarray(getattr(skimage.data, name)())
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=-1)
    return photo[..., :3].astype(np.uint8)


def make_natural(config: DomainConfig, *, seed: int) -> ImageSet:
    """Random crops of the photographs scikit-image ships: the stand-in for ImageNet, one class per photograph."""
    from skimage.transform import resize

    rng = np.random.default_rng([seed, 3])
    size = config.image_size or 64
    names = NATURAL_PHOTOS[: min(config.n_groups, len(NATURAL_PHOTOS))]
    photos = [_load_photo(n) for n in names]
    source = np.concatenate([np.arange(len(names)), rng.integers(0, len(names), config.n_images - len(names))])
    source = rng.permutation(source[: config.n_images])
    images = np.empty((config.n_images, 3, size, size), np.uint8)
    for i, k in enumerate(tqdm(source, desc="natural crops", disable=None, leave=False)):
        photo = photos[k]
        side = int(min(photo.shape[:2]) * rng.uniform(0.25, 0.8))
        y, x = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
        crop = photo[y : y + side, x : x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = resize(crop, (size, size), anti_aliasing=True, preserve_range=True)
        images[i] = np.round(crop).astype(np.uint8).transpose(2, 0, 1)
    labels = np.eye(len(names), dtype=bool)[source]
    obs = pd.DataFrame({
        "image_id": [f"nat_{i:06d}" for i in range(config.n_images)],
        "group": [names[k] for k in source],
        "batch": "none",
        "domain": "natural",
    })
    return ImageSet(images, labels, labels.astype(np.int8) * 3, obs, names, NATURAL_CHANNELS, "natural",
                    pixel_size_um=None, synthetic=True)


SYNTHETIC_DOMAINS: dict[str, Callable[..., ImageSet]] = {
    "opencell": make_opencell_like,
    "hpa": make_hpa_like,
    "natural": make_natural,
}
