"""Embedded synthetic stand-ins for the three domains of the study (DESIGN.md "Data layer").

The real data cannot be downloaded everywhere, so the default profiles run on a procedural world built so that
the paper's questions have answers, with its effects planted on purpose and listed by :func:`planted_effects`
(the datasets chapter prints that table; this docstring only sketches it):

- **OpenCell-like** (emulates OpenCell, Cho et al. 2022, *Science*): 2-channel (protein, Hoechst) 16-bit fields of
  HEK293T-like small round cells in clumps, imaged live on a spinning disk (:data:`OPENCELL_OPTICS`); 17
  localisation classes; labels belong to proteins (every image of a protein shares its labels, grades, expression
  and pattern style), 1-3 per protein with grades 3/2/1 setting how strong each pattern is; imbalanced classes
  with realistic co-occurrence. The target of every probe.
- **HPA-like** (emulates the HPA Kaggle 2018 challenge, Ouyang et al. 2019, *Nat Methods*): a pretraining corpus
  several times larger than the target, with its own stains (antibodies with off-target background, fixed cells),
  optics (point-scanning confocal: sharper, less haze, photomultiplier noise; :data:`HPA_OPTICS`), cell lines
  (larger, flatter, each its own shape) and pattern variants (the 28 HPA classes drawn by the same compartment
  renderers with other parameters, :data:`HPA_RENDERERS`), 1-4 labels an image, antibodies as groups, 4 channels
  (protein, microtubules, nucleus, ER). Each image is one field of 2-4 whole cells, as the OpenCell-like fields
  are (fields of 6-14 cells cut into tiles taught DINO less of the protein patterns: ``book/deviations.md``).
- **Natural** (stands in for ImageNet): random crops (position, scale, mirroring, quarter turns) of the
  photographs scikit-image ships. No cells and no compartments: what a backbone learns there is generic.

The shared compartment vocabulary is the planted transfer effect: HPA-like pretraining sees the same protein
patterns as the target under another microscope, natural-image pretraining sees none of them. Microscopy is
"imaged" with PSF blur, out-of-focus haze, background, shot and read noise and 16-bit counts; each plate has its
own illumination (vignetting + tilt), gain, offset, read noise, background and focus, scaled by ``batch_effect``,
so batch correction has something to correct. Look-alike compartments (:data:`LOOK_ALIKES`), weak grade-1 labels
and per-protein variation keep the classes learnable but not trivially separable. Generation is deterministic
per seed; the patterns themselves live in :mod:`dinoxfer_lib.data.patterns`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from dinoxfer_lib.config import Config, DomainConfig
from dinoxfer_lib.data.classes import (
    HPA_CHANNELS,
    HPA_CLASSES,
    NATURAL_CHANNELS,
    OPENCELL_CHANNELS,
    OPENCELL_CLASSES,
)
from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.data.patterns import (
    REFERENCE_SIZE,
    RENDERERS,
    CellStyle,
    Field,
    hoechst,
    make_field,
    render_cytoskeleton,
    render_er,
    smooth_noise,
)
from dinoxfer_lib.progress import progress_bar

DEFAULT_SIZE = 64

# ----------------------------------------------------------------------------------------------------------------
# OpenCell-like label statistics (data). Prevalence of each class as a protein's first (grade-3) label, loosely
# following the OpenCell annotation counts, and the classes that tend to come with it.
# ----------------------------------------------------------------------------------------------------------------
OPENCELL_PRIOR: dict[str, float] = {
    "nucleoplasm": 0.20, "cytoplasmic": 0.19, "vesicles": 0.08, "er": 0.07, "chromatin": 0.05,
    "mitochondria": 0.05, "membrane": 0.05, "nuclear_punctae": 0.045, "golgi": 0.045, "nucleolus_gc": 0.04,
    "cytoskeleton": 0.03, "nuclear_membrane": 0.03, "centrosome": 0.025, "nucleolus_fc_dfc": 0.025,
    "cell_contact": 0.015, "big_aggregates": 0.015, "focal_adhesions": 0.015,
}
OPENCELL_COMPANIONS: dict[str, tuple[str, ...]] = {
    "nucleoplasm": ("cytoplasmic", "cytoplasmic", "nuclear_punctae", "nucleolus_gc", "chromatin"),
    "cytoplasmic": ("nucleoplasm", "nucleoplasm", "membrane", "vesicles", "centrosome"),
    "vesicles": ("cytoplasmic", "golgi", "er"),
    "er": ("nuclear_membrane", "vesicles", "cytoplasmic"),
    "chromatin": ("nucleoplasm", "nuclear_punctae"),
    "mitochondria": ("cytoplasmic",),
    "membrane": ("cell_contact", "cytoplasmic", "vesicles"),
    "nuclear_punctae": ("nucleoplasm",),
    "golgi": ("vesicles", "cytoplasmic"),
    "nucleolus_gc": ("nucleoplasm", "nucleolus_fc_dfc"),
    "cytoskeleton": ("cytoplasmic", "focal_adhesions", "membrane"),
    "nuclear_membrane": ("er", "nucleoplasm"),
    "centrosome": ("cytoplasmic", "nucleoplasm"),
    "nucleolus_fc_dfc": ("nucleolus_gc", "nucleoplasm"),
    "cell_contact": ("membrane", "cytoplasmic"),
    "big_aggregates": ("cytoplasmic",),
    "focal_adhesions": ("cytoskeleton", "membrane"),
}
OPENCELL_CARDINALITY = (0.45, 0.38, 0.17)  # P(1, 2, 3 labels)

# Signal strength of a label by grade (3 prominent, 2 less pronounced, 1 weak) and P(grade 2) for later labels.
GRADE_STRENGTH: dict[int, float] = {3: 1.0, 2: 0.6, 1: 0.35}
P_SECOND_GRADE_2 = 0.6

# Which world a seed draws: bumped whenever a change alters the images or labels, so that a store regenerates its
# synthetic datasets (and everything downstream) instead of reusing another world's, and frontier records say which
# world they measured. 2: HPA-like images are whole fields of 2-4 cells (1: quarters of fields of 6-14 cells).
WORLD_VERSION = 2

# Compartments drawn alike on purpose (the renderers say how each pair differs); a probe's errors should gather here.
LOOK_ALIKES: tuple[tuple[str, str], ...] = (
    ("nucleoplasm", "chromatin"),
    ("nucleolus_gc", "nucleolus_fc_dfc"),
    ("golgi", "centrosome"),
    ("vesicles", "mitochondria"),
    ("vesicles", "nuclear_punctae"),
    ("membrane", "cell_contact"),
    ("er", "nuclear_membrane"),
)

# HEK293T cells: small, round, large nucleus, in clumps. Cell diameter sets the physical field width.
OPENCELL_STYLE = CellStyle(n_cells=(2, 4), radius=0.23, aspect=1.35, nucleus_ratio=0.58)
# OpenCell-like fields are seen at higher magnification than HPA-like ones: fewer, larger cells and every
# structure drawn this much larger than at the reference scale (at 64 px the smallest patterns stay resolvable).
OPENCELL_ZOOM = 1.25
HEK_CELL_DIAMETER_UM = 13.0
OPENCELL_PIXEL_UM = 0.102
# The stains. OpenCell tags the endogenous protein (mNeonGreen2) in live cells: a faint autofluorescence floor
# in every cell and a large cell-to-cell spread of expression. HPA stains fixed cells with antibodies: a more
# even stain, over an off-target floor whose level differs between antibodies (median below, log-sd 0.5).
AUTOFLUORESCENCE = 0.02
OPENCELL_CELL_SD = 0.3
HPA_CELL_SD = 0.15
HPA_OFF_TARGET = 0.06

# ----------------------------------------------------------------------------------------------------------------
# HPA-like classes drawn with the OpenCell renderers: class -> (renderer, variant keywords). A table, so the
# mapping is reviewable at a glance; prevalence from the Kaggle 2018 training counts (31,072 images).
# ----------------------------------------------------------------------------------------------------------------
HPA_RENDERERS: dict[str, tuple[str, dict]] = {
    "Nucleoplasm": ("nucleoplasm", {}),
    "Nuclear membrane": ("nuclear_membrane", {}),
    "Nucleoli": ("nucleolus_gc", {}),
    "Nucleoli fibrillar center": ("nucleolus_fc_dfc", {}),
    "Nuclear speckles": ("nuclear_punctae", {"count": 12, "sigma": 0.8}),
    "Nuclear bodies": ("nuclear_punctae", {"count": 3, "sigma": 0.6}),
    "Endoplasmic reticulum": ("er", {}),
    "Golgi apparatus": ("golgi", {"count": 14}),
    "Peroxisomes": ("vesicles", {"count": 30, "sigma": 0.4}),
    "Endosomes": ("vesicles", {"count": 18, "sigma": 0.6}),
    "Lysosomes": ("vesicles", {"count": 12, "sigma": 0.8}),
    "Intermediate filaments": ("cytoskeleton", {"count": 14, "length": 1.2, "curvy": 0.35}),
    "Actin filaments": ("cytoskeleton", {"count": 10, "length": 1.6, "curvy": 0.03, "cortical": 0.6}),
    "Focal adhesion sites": ("focal_adhesions", {}),
    "Microtubules": ("cytoskeleton", {"count": 22, "length": 1.0, "curvy": 0.25, "radial": True}),
    "Microtubule ends": ("focal_adhesions", {"count": 16, "length": 1.0, "band": (0.3, 0.95)}),
    "Cytokinetic bridge": ("cell_contact", {"width": 0.5}),
    "Mitotic spindle": ("cytoskeleton", {"count": 8, "length": 0.35, "curvy": 0.1, "radial": True, "reach": 0.15}),
    "Microtubule organizing center": ("centrosome", {"count": 1, "sigma": 0.9}),
    "Centrosome": ("centrosome", {"count": 2, "sigma": 0.5}),
    "Lipid droplets": ("vesicles", {"count": 6, "sigma": 1.1}),
    "Plasma membrane": ("membrane", {}),
    "Cell junctions": ("cell_contact", {}),
    "Mitochondria": ("mitochondria", {"count": 16, "length": 4.5}),
    "Aggresome": ("big_aggregates", {"count": 1, "size": 1.8}),
    "Cytosol": ("cytoplasmic", {}),
    "Cytoplasmic bodies": ("big_aggregates", {"count": 3, "size": 0.8}),
    "Rods & rings": ("mitochondria", {"count": 2, "length": 6.0}),
}
HPA_COUNTS: dict[str, int] = {
    "Nucleoplasm": 12885, "Nuclear membrane": 1254, "Nucleoli": 3621, "Nucleoli fibrillar center": 1561,
    "Nuclear speckles": 1858, "Nuclear bodies": 2513, "Endoplasmic reticulum": 1008, "Golgi apparatus": 2822,
    "Peroxisomes": 53, "Endosomes": 45, "Lysosomes": 28, "Intermediate filaments": 1093, "Actin filaments": 688,
    "Focal adhesion sites": 537, "Microtubules": 1066, "Microtubule ends": 21, "Cytokinetic bridge": 530,
    "Mitotic spindle": 210, "Microtubule organizing center": 902, "Centrosome": 1482, "Lipid droplets": 172,
    "Plasma membrane": 3777, "Cell junctions": 802, "Mitochondria": 2965, "Aggresome": 322, "Cytosol": 8228,
    "Cytoplasmic bodies": 328, "Rods & rings": 11,
}
HPA_COMPANIONS: dict[str, tuple[str, ...]] = {
    "Nucleoplasm": ("Cytosol", "Cytosol", "Nucleoli", "Nuclear bodies", "Nuclear speckles", "Plasma membrane"),
    "Cytosol": ("Nucleoplasm", "Nucleoplasm", "Plasma membrane", "Centrosome"),
    "Plasma membrane": ("Cell junctions", "Cytosol", "Nucleoplasm"),
    "Nucleoli": ("Nucleoplasm", "Nucleoli fibrillar center"),
    "Centrosome": ("Microtubule organizing center", "Cytosol", "Nucleoplasm"),
    "Microtubule organizing center": ("Centrosome", "Cytosol"),
    "Microtubules": ("Mitotic spindle", "Cytokinetic bridge", "Cytosol"),
    "Mitotic spindle": ("Microtubules", "Cytokinetic bridge"),
    "Actin filaments": ("Focal adhesion sites", "Plasma membrane"),
    "Focal adhesion sites": ("Actin filaments",),
    "Golgi apparatus": ("Cytosol", "Nucleoplasm", "Endosomes"),
    "Endoplasmic reticulum": ("Nuclear membrane",),
    "Nuclear membrane": ("Endoplasmic reticulum", "Nucleoplasm"),
}
HPA_CARDINALITY = (0.49, 0.40, 0.10, 0.01)
HPA_CELL_DIAMETER_UM = 35.0
HPA_PIXEL_UM = 0.08

# Photographs scikit-image ships inside its wheel (loadable offline; checked with scikit-image 0.26), colour ones
# first. ``cat`` duplicates ``chelsea``; the microscopy/medical samples would not stand in for ImageNet.
NATURAL_PHOTOS: dict[str, Callable[[ModuleType], np.ndarray]] = {  # name -> loader(skimage.data)
    "astronaut": lambda data: data.astronaut(),
    "chelsea": lambda data: data.chelsea(),
    "coffee": lambda data: data.coffee(),
    "rocket": lambda data: data.rocket(),
    "motorcycle": lambda data: data.stereo_motorcycle()[0],
    "hubble_deep_field": lambda data: data.hubble_deep_field(),
    "camera": lambda data: data.camera(),
    "coins": lambda data: data.coins(),
    "moon": lambda data: data.moon(),
    "clock": lambda data: data.clock(),
    "brick": lambda data: data.brick(),
    "gravel": lambda data: data.gravel(),
    "grass": lambda data: data.grass(),
    "page": lambda data: data.page(),
}
MIN_CROP_STD = 12.0  # grey levels: below this a crop is a featureless patch
MAX_CROP_TRIES = 6


# ----------------------------------------------------------------------------------------------------------------
# Labels and groups
# ----------------------------------------------------------------------------------------------------------------
def draw_label_sets(rng: np.random.Generator, n_groups: int, prior: dict[str, float], *,
                    companions: dict[str, tuple[str, ...]], cardinality: tuple[float, ...]
                    ) -> list[list[tuple[str, int]]]:
    """Labels of each group (protein / antibody): a list of (class, grade), the first grade 3, others 2 or 1.

    Every class leads at least one group (one per 100 groups) when there are enough groups, so rare classes
    exist in small sets too; the rest follow ``prior``. Further labels come from the first label's
    ``companions`` (co-occurrence) 70 % of the time, else from the prior.
    """
    names = list(prior)
    p = np.array([prior[c] for c in names], float)
    p /= p.sum()
    if n_groups < len(names):
        firsts = list(rng.choice(names, size=n_groups, replace=False, p=p))
    else:
        floor = max(1, min(n_groups // len(names), n_groups // 50))
        firsts = [c for c in names for _ in range(floor)]
        firsts = list(rng.permutation(firsts + list(rng.choice(names, size=n_groups - len(firsts), p=p))))
    sizes = rng.choice(np.arange(1, len(cardinality) + 1), size=n_groups, p=np.asarray(cardinality))
    label_sets = []
    for first, size in zip(firsts, sizes):
        chosen = [first]
        while len(chosen) < size:
            pool = [c for c in companions.get(first, ()) if c not in chosen]
            if pool and rng.random() < 0.7:
                chosen.append(pool[rng.integers(len(pool))])
            else:
                rest = [c for c in names if c not in chosen]
                w = np.array([prior[c] for c in rest])
                chosen.append(rest[rng.choice(len(rest), p=w / w.sum())])
        later = rng.choice([2, 1], size=len(chosen) - 1, p=[P_SECOND_GRADE_2, 1 - P_SECOND_GRADE_2])
        label_sets.append([(chosen[0], 3)] + [(c, int(g)) for c, g in zip(chosen[1:], later)])
    return label_sets


def assign_images(rng: np.random.Generator, n_images: int, n_groups: int, n_batches: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Group of each image (every group at least once, uneven counts) and its plate.

    As in a real screen, a protein is imaged mostly on its home plate (85 %), now and then on another.
    """
    weights = rng.lognormal(0, 0.5, n_groups)
    extra = rng.choice(n_groups, n_images - n_groups, p=weights / weights.sum())
    group = rng.permutation(np.concatenate([np.arange(n_groups), extra]))
    home = rng.integers(0, n_batches, n_groups)
    away = rng.integers(0, n_batches, n_images)
    plate = np.where(rng.random(n_images) < 0.85, home[group], away)
    return group, plate


def _label_matrices(label_sets: list[list[tuple[str, int]]], group: np.ndarray, class_names: tuple[str, ...]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (labels, grades) from per-group label sets."""
    column = {c: j for j, c in enumerate(class_names)}
    per_group = np.zeros((len(label_sets), len(class_names)), np.int8)
    for g, labels in enumerate(label_sets):
        for name, grade in labels:
            per_group[g, column[name]] = grade
    grades = per_group[group]
    return grades > 0, grades


@dataclass(frozen=True)
class ProteinStyle:
    """What all images of one protein share besides labels: how much of it there is and how it looks."""

    expression: float  # overall brightness
    density: float  # how many structures (dots, filaments) its patterns have
    scale: float  # how big its structures are


# How much proteins differ besides their labels: log-sd of expression and of structure counts, range of sizes.
EXPRESSION_SD, DENSITY_SD, STRUCTURE_SIZE = 0.45, 0.3, (0.85, 1.2)


def draw_protein_styles(rng: np.random.Generator, n: int) -> list[ProteinStyle]:
    """One style per protein: expression varies ~1.6x, structure counts ~1.35x, sizes -15 to +20 %."""
    expression = rng.lognormal(0, EXPRESSION_SD, n)
    density = rng.lognormal(0, DENSITY_SD, n)
    scale = rng.uniform(*STRUCTURE_SIZE, n)
    return [ProteinStyle(float(e), float(d), float(s)) for e, d, s in zip(expression, density, scale)]


# ----------------------------------------------------------------------------------------------------------------
# Imaging: each domain's microscope, and the plates that shift it
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Optics:
    """How one domain's microscope turns stained structures into counts, before plate effects.

    Lengths are in pixels of the 64-px reference field. The two microscopy domains differ here on purpose (a
    planted domain shift a backbone has to bridge); plates then vary around these values.
    """

    psf_sigma: float  # in-focus blur (Gaussian sd)
    haze: float  # out-of-focus light, as a fraction of the in-focus signal
    haze_sigma: float  # blur of that light
    peak_photons: tuple[float, ...]  # photons at a bright structure, per channel (stain and detector efficiency)
    background: float  # photons per pixel from medium, coverslip and unbound dye
    offset: float  # detector counts at zero light
    read_noise: float  # Gaussian detector noise, counts
    excess_noise: float  # variance of the detected signal per photon: 1 for a camera, ~2 for a photomultiplier


# OpenCell: live HEK293T on a spinning-disk confocal with an sCMOS camera. Pinhole crosstalk lets through more
# out-of-focus haze than a point scanner; the camera adds an offset and read noise but no gain noise.
OPENCELL_OPTICS = Optics(psf_sigma=0.9, haze=0.15, haze_sigma=5.0, peak_photons=(2500.0, 3000.0), background=150.0,
                         offset=100.0, read_noise=6.0, excess_noise=1.0)
# HPA: fixed, immunostained cells on a point-scanning confocal (Leica SP5) with photomultipliers: a slightly
# sharper PSF and no out-of-focus haze to speak of (the pinhole rejects it), a dark background, and the
# photomultiplier's gain noise instead of read noise.
HPA_OPTICS = Optics(psf_sigma=0.7, haze=0.0, haze_sigma=5.0, peak_photons=(1500.0, 1400.0, 2200.0, 1300.0),
                    background=40.0, offset=30.0, read_noise=2.0, excess_noise=2.0)


@dataclass(frozen=True)
class Plate:
    """Technical signature of one plate; ``batch_effect`` = 0 makes every plate its domain's nominal one."""

    gain: tuple[float, ...]  # detector counts per photon, per channel (includes staining efficiency)
    offset: float  # detector offset, counts
    read_noise: float  # Gaussian read noise, counts
    background: float  # out-of-focus / medium background, photons
    psf_sigma: float  # PSF width in reference pixels (focus)
    vignetting: float  # illumination fall-off towards the corners
    tilt: float  # linear illumination gradient across the field
    tilt_angle: float

    def illumination(self, size: int) -> np.ndarray:
        """(S, S) relative illumination: vignetting times a tilted plane."""
        y, x = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
        plane = 1 + 2 * self.tilt * (np.cos(self.tilt_angle) * x + np.sin(self.tilt_angle) * y)
        return ((1 - self.vignetting * (x**2 + y**2) / 0.5) * plane).astype(np.float32)

    def summary(self) -> dict[str, float | list[float]]:
        """JSON-friendly parameters (for ``ImageSet.extra``: the book can show what it later corrects)."""
        return {k: (list(map(float, v)) if isinstance(v, tuple) else round(float(v), 4)) for k, v in vars(self).items()}


# Plate-to-plate spread at batch_effect 1: log-sd of the gain (shared by the channels, then per channel) and the
# relative ranges of offset, read noise, background and PSF width; absolute ranges of vignetting and tilt.
PLATE_GAIN_SD = (0.25, 0.12)
PLATE_OFFSET, PLATE_READ_NOISE, PLATE_BACKGROUND, PLATE_PSF = (-0.5, 2.0), (0.0, 1.5), (-0.4, 0.8), (-0.15, 0.35)
PLATE_VIGNETTING, PLATE_TILT = (0.1, 0.4), (0.05, 0.25)


def draw_plates(rng: np.random.Generator, n: int, optics: Optics, strength: float) -> list[Plate]:
    """Plates whose deviations from the domain's ``optics`` are drawn once and scaled by ``strength``.

    The same random numbers are drawn whatever ``strength`` is, so two sets that differ only in batch effect have
    identical cells and labels.
    """
    def spread(bounds: tuple[float, float], u: float) -> float:
        return bounds[0] + (bounds[1] - bounds[0]) * u

    n_channels = len(optics.peak_photons)
    plates = []
    for _ in range(n):
        common, per_channel = rng.normal(0, PLATE_GAIN_SD[0]), rng.normal(0, PLATE_GAIN_SD[1], n_channels)
        u = rng.uniform(size=6)
        plates.append(Plate(
            gain=tuple(float(np.exp(strength * (common + c))) for c in per_channel),
            offset=optics.offset * (1 + strength * spread(PLATE_OFFSET, u[0])),
            read_noise=optics.read_noise * (1 + strength * spread(PLATE_READ_NOISE, u[1])),
            background=optics.background * (1 + strength * spread(PLATE_BACKGROUND, u[2])),
            psf_sigma=optics.psf_sigma * (1 + strength * spread(PLATE_PSF, u[3])),
            vignetting=strength * spread(PLATE_VIGNETTING, u[4]),
            tilt=strength * spread(PLATE_TILT, u[5]),
            tilt_angle=float(rng.uniform(0, 2 * np.pi)),
        ))
    return plates


def acquire(rng: np.random.Generator, signal: np.ndarray, plate: Plate, illumination: np.ndarray, optics: Optics,
            *, scale: float) -> np.ndarray:
    """Image ``signal`` (C, S, S), bright structures ~1, into 16-bit counts.

    PSF blur plus out-of-focus haze, background, illumination, shot noise (with the detector's excess noise),
    per-channel gain, offset and read noise, rounded and clipped to uint16. ``scale`` is the field's pixels per
    reference pixel. Shot noise is drawn in its Gaussian limit (variance = mean photons): every pixel collects
    more than ten background photons, where the two agree closely, and one normal draw costs a fraction of a
    Poisson draw.
    """
    light = gaussian_filter(signal, (0, plate.psf_sigma * scale, plate.psf_sigma * scale))
    if optics.haze:
        light += optics.haze * gaussian_filter(signal, (0, optics.haze_sigma * scale, optics.haze_sigma * scale))
    peaks = np.asarray(optics.peak_photons, np.float32)[:, None, None]
    photons = np.maximum((light * peaks + plate.background) * illumination, 0)
    gain = np.asarray(plate.gain, np.float32)[:, None, None]
    sd = np.sqrt(gain * gain * optics.excess_noise * photons + plate.read_noise**2)  # shot and read noise
    counts = photons * gain + plate.offset + sd * rng.standard_normal(photons.shape, dtype=np.float32)
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


# ----------------------------------------------------------------------------------------------------------------
# Microscopy domains
# ----------------------------------------------------------------------------------------------------------------
def _protein_signal(field: Field, rng: np.random.Generator, labels: list[tuple[str, int]],
                    table: dict[str, tuple[str, dict]], style: ProteinStyle, *, floor: np.ndarray | float,
                    cell_sd: float) -> np.ndarray:
    """Sum of the label patterns weighted by grade, over the stain's ``floor``, times expression and per-cell
    heterogeneity (log-sd ``cell_sd``)."""
    signal = floor * field.inside.astype(np.float32)
    for name, grade in labels:
        renderer, variant = table[name]
        pattern = RENDERERS[renderer](field, rng, density=style.density, scale=style.scale, **variant)
        signal = signal + GRADE_STRENGTH[grade] * rng.uniform(0.8, 1.2) * pattern
    per_cell = rng.lognormal(0, cell_sd, field.n_cells)[np.maximum(field.owner, 0)]
    return signal * style.expression * per_cell


def _streams(seed: int, domain: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent random streams for the content (cells, labels, plates) and the detector noise.

    With one stream a change in imaging (``batch_effect``) could shift every later cell; with two, it changes
    only the pixels' noise.
    """
    return np.random.default_rng([seed, domain, 0]), np.random.default_rng([seed, domain, 1])


def _field_of_view_um(style: CellStyle, cell_diameter_um: float) -> float:
    """Physical field width implied by drawing cells of ``cell_diameter_um`` at ``style.radius`` of the field."""
    return cell_diameter_um / (2 * style.radius)


def _ids(prefix: str, n: int) -> list[str]:
    """Unique, sortable image ids: ``oc_000001``, ..."""
    return [f"{prefix}_{i + 1:06d}" for i in range(n)]


def _image_fields(draw: Callable[[int], tuple[Field, np.ndarray]], camera: np.random.Generator, *, n_images: int,
                  n_channels: int, size: int, plates: list[Plate], plate: np.ndarray, optics: Optics, scale: float,
                  desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Each image's field and signal (``draw(i)`` → ``(field, (C, S, S) signal)``) imaged on its plate: the uint16
    images and the cells in each. Content and detector noise stay on their own streams (:func:`_streams`)."""
    illumination = [p.illumination(size) for p in plates]
    images = np.empty((n_images, n_channels, size, size), np.uint16)
    n_cells = np.empty(n_images, int)
    for i in progress_bar(range(n_images), desc=desc):
        field, signal = draw(i)
        images[i] = acquire(camera, signal, plates[plate[i]], illumination[plate[i]], optics, scale=scale)
        n_cells[i] = field.n_cells
    return images, n_cells


def _acquisition(emulates: str, *, fov_um: float, size: int, optics: Optics, plates: list[Plate]) -> dict:
    """What a synthetic microscopy set records of how it was imaged (``ImageSet.extra``)."""
    return {
        "emulates": emulates,
        "field_of_view_um": round(fov_um, 3),
        "effective_pixel_size_um": round(fov_um / size, 4),
        "optics": _describe(optics),
        "plates": {f"plate{k + 1:02d}": p.summary() for k, p in enumerate(plates)},
    }


def make_opencell_like(config: DomainConfig, *, seed: int) -> ImageSet:
    """OpenCell-like set: 2 channels (protein, nucleus), 17 classes, graded labels per protein, plates.

    Parameters
    ----------
    config
        ``n_images``, ``image_size`` (None = 64), ``n_groups`` proteins, ``n_batches`` plates, ``batch_effect``.
    seed
        Same seed, same arrays (bit-identical).
    """
    rng, camera = _streams(seed, 1)
    size = config.image_size or DEFAULT_SIZE
    scale = OPENCELL_ZOOM * size / REFERENCE_SIZE
    label_sets = draw_label_sets(rng, config.n_groups, OPENCELL_PRIOR, companions=OPENCELL_COMPANIONS,
                                 cardinality=OPENCELL_CARDINALITY)
    styles = draw_protein_styles(rng, config.n_groups)
    group, plate = assign_images(rng, config.n_images, config.n_groups, config.n_batches)
    plates = draw_plates(rng, config.n_batches, OPENCELL_OPTICS, config.batch_effect)
    table = {c: (c, {}) for c in OPENCELL_CLASSES}

    def draw(i: int) -> tuple[Field, np.ndarray]:
        field = make_field(rng, size, OPENCELL_STYLE, scale=scale)
        protein = _protein_signal(field, rng, label_sets[group[i]], table, styles[group[i]],
                                  floor=AUTOFLUORESCENCE, cell_sd=OPENCELL_CELL_SD)
        return field, np.stack([protein, hoechst(field, rng)])

    images, n_cells = _image_fields(draw, camera, n_images=config.n_images, n_channels=2, size=size, plates=plates,
                                    plate=plate, optics=OPENCELL_OPTICS, scale=scale, desc="OpenCell-like images")
    labels, grades = _label_matrices(label_sets, group, OPENCELL_CLASSES)
    obs = pd.DataFrame({
        "image_id": _ids("oc", config.n_images),
        "group": [f"P{g + 1:04d}" for g in group],
        "batch": [f"plate{p + 1:02d}" for p in plate],
        "domain": "opencell",
        "n_cells": n_cells,
    })
    extra = _acquisition("OpenCell (Cho et al. 2022, Science)", size=size, optics=OPENCELL_OPTICS, plates=plates,
                         fov_um=_field_of_view_um(OPENCELL_STYLE, HEK_CELL_DIAMETER_UM))
    return ImageSet(images, labels, grades, obs, OPENCELL_CLASSES, OPENCELL_CHANNELS, "opencell",
                    pixel_size_um=OPENCELL_PIXEL_UM, synthetic=True, extra=extra)


def _describe(optics: Optics) -> dict[str, float | list[float]]:
    return {k: (list(map(float, v)) if isinstance(v, tuple) else float(v)) for k, v in vars(optics).items()}


# HPA-like cell lines: cell radius as a fraction of an image's side, and largest elongation, range over the lines;
# cells in an image, as in the OpenCell-like domain.
CELL_LINE_RADIUS, CELL_LINE_ASPECT, CELL_LINE_CELLS = (0.22, 0.32), (1.2, 2.2), (2, 4)


def draw_cell_lines(rng: np.random.Generator, n: int) -> list[CellStyle]:
    """Cell-line families of the HPA-like domain.

    Larger, flatter cells than HEK293T (:data:`CELL_LINE_RADIUS` of an image's side against
    ``OPENCELL_STYLE.radius``), each line its own size, elongation and outline, :data:`CELL_LINE_CELLS` to an
    image but scattered more loosely than HEK293T clumps.
    """
    return [
        CellStyle(
            n_cells=CELL_LINE_CELLS,
            radius=float(rng.uniform(*CELL_LINE_RADIUS)),
            aspect=float(rng.uniform(*CELL_LINE_ASPECT)),
            nucleus_ratio=float(rng.uniform(0.33, 0.45)),
            wobble=float(rng.uniform(0.06, 0.16)),
            clump=0.3,
        )
        for _ in range(n)
    ]


def _line_name(k: int) -> str:
    """line_A ... line_Z, line_AA, ... (spreadsheet-style)."""
    name = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        name = chr(65 + r) + name
    return f"line_{name}"


def _hpa_references(field: Field, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The HPA reference stains: microtubules (an aster from the MTOC) and ER (reticular network)."""
    microtubules = render_cytoskeleton(field, rng, count=20, length=1.0, curvy=0.25, radial=True)
    return 0.7 * microtubules + 0.08 * field.cytoplasm, 0.7 * render_er(field, rng)


def _antibody_floor(field: Field, rng: np.random.Generator, level: float) -> np.ndarray:
    """Off-target antibody binding: a faint, uneven stain of every cell, stronger in the cytoplasm."""
    uneven = 0.6 + 0.8 * smooth_noise(rng, field.size, 4.0 * field.scale)
    return level * uneven * (field.cytoplasm + 0.5 * field.nucleus)


def make_hpa_like(config: DomainConfig, *, seed: int) -> ImageSet:
    """HPA-like set: 4 channels (protein, microtubules, nucleus, ER), 28 HPA classes, cell lines, plates.

    Each image is one field of view of one antibody, cell line and plate; ``n_groups`` is capped at
    ``n_images``. HPA labels have no grades, so every present label is exported as grade 3; internally later
    labels are still drawn weaker, as in the atlas.

    Parameters
    ----------
    config
        ``n_images``, ``image_size`` (None = 64), ``n_groups`` antibodies, ``n_batches`` plates,
        ``n_cell_lines`` cell-line families (``obs["cell_line"]``), ``batch_effect``.
    seed
        Same seed, same arrays (bit-identical).
    """
    rng, camera = _streams(seed, 2)
    size = config.image_size or DEFAULT_SIZE
    scale = size / REFERENCE_SIZE
    n_antibodies = min(config.n_groups, config.n_images)
    prior = {c: HPA_COUNTS[c] / sum(HPA_COUNTS.values()) for c in HPA_CLASSES}
    label_sets = draw_label_sets(rng, n_antibodies, prior, companions=HPA_COMPANIONS, cardinality=HPA_CARDINALITY)
    styles = draw_protein_styles(rng, n_antibodies)
    floors = rng.lognormal(np.log(HPA_OFF_TARGET), 0.5, n_antibodies)  # each antibody's off-target level
    group, plate = assign_images(rng, config.n_images, n_antibodies, config.n_batches)
    plates = draw_plates(rng, config.n_batches, HPA_OPTICS, config.batch_effect)
    lines = draw_cell_lines(rng, config.n_cell_lines)
    line_of_group = rng.integers(0, config.n_cell_lines, n_antibodies)
    line = np.where(rng.random(config.n_images) < 0.7, line_of_group[group],
                    rng.integers(0, config.n_cell_lines, config.n_images))

    def draw(i: int) -> tuple[Field, np.ndarray]:
        field = make_field(rng, size, lines[line[i]], scale=scale)
        floor = _antibody_floor(field, rng, floors[group[i]])
        protein = _protein_signal(field, rng, label_sets[group[i]], HPA_RENDERERS, styles[group[i]], floor=floor,
                                  cell_sd=HPA_CELL_SD)
        microtubules, er = _hpa_references(field, rng)
        return field, np.stack([protein, microtubules, hoechst(field, rng), er])

    images, n_cells = _image_fields(draw, camera, n_images=config.n_images, n_channels=4, size=size, plates=plates,
                                    plate=plate, optics=HPA_OPTICS, scale=scale, desc="HPA-like images")
    labels, _ = _label_matrices(label_sets, group, HPA_CLASSES)
    obs = pd.DataFrame({
        "image_id": _ids("hpa", config.n_images),
        "group": [f"A{g + 1:04d}" for g in group],
        "batch": [f"plate{p + 1:02d}" for p in plate],
        "domain": "hpa",
        "cell_line": [_line_name(k) for k in line],
        "n_cells": n_cells,
    })
    extra = _acquisition("HPA Kaggle 2018 (Ouyang et al. 2019, Nat Methods)", size=size, optics=HPA_OPTICS,
                         plates=plates,
                         fov_um=float(np.mean([_field_of_view_um(s, HPA_CELL_DIAMETER_UM) for s in lines])))
    return ImageSet(images, labels, labels.astype(np.int8) * 3, obs, HPA_CLASSES, HPA_CHANNELS, "hpa",
                    pixel_size_um=HPA_PIXEL_UM, synthetic=True, extra=extra)


# ----------------------------------------------------------------------------------------------------------------
# Natural photographs
# ----------------------------------------------------------------------------------------------------------------
def _load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8; grey photographs replicated to three channels."""
    import skimage.data

    photo = np.asarray(NATURAL_PHOTOS[name](skimage.data))
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=-1)
    return np.ascontiguousarray(photo[..., :3]).astype(np.uint8)


def _random_crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> tuple[np.ndarray, dict]:
    """A square crop at a random position and scale (15-80 % of the short side), maybe mirrored, turned by a
    random multiple of 90 degrees, resized.

    Nearly flat crops (a patch of sky or wall) are redrawn up to a few times, as an ImageNet photo always shows
    something; the last draw is kept if the photograph offers nothing better. Mirroring and turning multiply the
    distinct views of the few photographs by eight.
    """
    from PIL import Image

    for _ in range(MAX_CROP_TRIES):
        side = max(8, int(min(photo.shape[:2]) * np.exp(rng.uniform(np.log(0.15), np.log(0.8)))))
        y = int(rng.integers(0, photo.shape[0] - side + 1))
        x = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = photo[y : y + side, x : x + side]
        if crop.std() >= MIN_CROP_STD:
            break
    flip = bool(rng.random() < 0.5)
    turns = int(rng.integers(0, 4))
    crop = np.ascontiguousarray(np.rot90(crop[:, ::-1] if flip else crop, turns))
    resized = Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(resized).transpose(2, 0, 1), {"crop_y": y, "crop_x": x, "crop_side": side, "flipped": flip,
                                                    "quarter_turns": turns}


def make_natural(config: DomainConfig, *, seed: int) -> ImageSet:
    """Random crops of scikit-image's photographs (RGB uint8): the stand-in for ImageNet.

    The class is the source photograph (one label per image, grade 3). There are no plates (batch ``none``) and
    no pixel size; ``obs`` records each crop's position, side and mirroring.

    Parameters
    ----------
    config
        ``n_images``, ``image_size`` (None = 64) and ``n_groups``, which caps how many photographs are used (at
        most the 14 of :data:`NATURAL_PHOTOS`).
    seed
        Same seed, same crops.
    """
    rng = np.random.default_rng([seed, 3])
    size = config.image_size or DEFAULT_SIZE
    names = tuple(list(NATURAL_PHOTOS)[: min(config.n_groups, len(NATURAL_PHOTOS))])
    photos = [_load_photo(n) for n in names]
    source = np.concatenate([np.arange(len(names)), rng.integers(0, len(names), config.n_images)])
    source = rng.permutation(source[: config.n_images])
    images = np.empty((config.n_images, 3, size, size), np.uint8)
    crops = []
    for i, k in enumerate(progress_bar(source, desc="natural crops")):
        images[i], crop = _random_crop(rng, photos[k], size)
        crops.append(crop)
    labels = np.eye(len(names), dtype=bool)[source]
    obs = pd.DataFrame({
        "image_id": _ids("nat", config.n_images),
        "group": [names[k] for k in source],
        "batch": "none",
        "domain": "natural",
    }).join(pd.DataFrame(crops))
    return ImageSet(images, labels, labels.astype(np.int8) * 3, obs, names, NATURAL_CHANNELS, "natural",
                    pixel_size_um=None, synthetic=True, extra={"emulates": "ImageNet (scikit-image photographs)"})


# ----------------------------------------------------------------------------------------------------------------
# What is planted
# ----------------------------------------------------------------------------------------------------------------
PLANTED_COLUMNS = ("effect", "where", "strength", "recover")


def planted_effects(config: Config) -> pd.DataFrame:
    """The effects this world plants on purpose, as the datasets chapter prints them.

    Every number comes from the generator's own constants and the profile's sizes, so the table cannot drift from
    the code. Rows about a domain that the profile reads from real files are left out (nothing is planted there).

    Returns
    -------
    pandas.DataFrame
        One row per effect: ``effect`` (its name), ``where`` (domain and channel or label), ``strength`` (how
        strong it is in this profile) and ``recover`` (what a method that works should find).
    """
    data = config.data
    synthetic = {d: getattr(data, d).source == "synthetic" for d in ("opencell", "hpa", "natural")}
    if not synthetic["opencell"]:
        return pd.DataFrame(columns=list(PLANTED_COLUMNS))
    oc, hpa, nat = data.opencell, data.hpa, data.natural
    n_train = round(oc.n_images * (1 - config.split.test_fraction))
    mapped = sorted({renderer for renderer, _ in HPA_RENDERERS.values()})
    later = sum(k * p for k, p in enumerate(OPENCELL_CARDINALITY))  # expected labels after the first
    grade_1 = later * (1 - P_SECOND_GRADE_2) / (1 + later)
    prior = np.array(list(OPENCELL_PRIOR.values()))
    rows = []

    def add(*, effect: str, where: str, strength: str, recover: str) -> None:
        rows.append((effect, where, strength, recover))

    def pct(bounds: tuple[float, float]) -> str:
        return f"{bounds[0]:+.0%} to {bounds[1]:+.0%}"

    if synthetic["hpa"]:
        add(
            effect="larger pretraining corpus", where="HPA-like (all images)",
            strength=(f"{hpa.n_images:,} images = {hpa.n_images / n_train:.1f}x the OpenCell-like training set "
                      f"({n_train:,}), of {min(hpa.n_groups, hpa.n_images):,} antibodies"),
            recover="pretraining on it pays off only through what transfers (next row)")
        add(
            effect="shared compartment vocabulary", where="HPA-like protein channel",
            strength=(f"all {len(HPA_RENDERERS)} HPA classes drawn by {len(mapped)} of the {len(RENDERERS)} "
                      f"OpenCell compartment renderers, with HPA-specific variants"),
            recover=("HPA-like-pretrained features beat natural-image-pretrained ones on OpenCell-like localisation "
                     "(paired bootstrap interval of the difference excludes 0)"))
    if synthetic["natural"]:
        add(
            effect="no compartments in natural images", where="natural",
            strength=(f"{nat.n_images:,} crops of {min(nat.n_groups, len(NATURAL_PHOTOS))} photographs "
                      f"({nat.n_images / n_train:.1f}x the OpenCell-like training set; few distinct scenes, unlike "
                      f"ImageNet)"),
            recover=("natural-image features rank below HPA-like ones; above random weights only through generic "
                     "edges and textures"))
    if synthetic["hpa"]:
        o, h = OPENCELL_OPTICS, HPA_OPTICS
        add(
            effect="domain shift: optics", where="HPA-like vs OpenCell-like",
            strength=(f"PSF sd {h.psf_sigma:g} vs {o.psf_sigma:g} px, out-of-focus haze {h.haze:.0%} vs "
                      f"{o.haze:.0%}, background {h.background:g} vs {o.background:g} photons, detector excess noise "
                      f"{h.excess_noise:g}x vs {o.excess_noise:g}x"),
            recover="a domain probe tells the two apart; their Frechet distance exceeds the within-domain floor")
        add(
            effect="domain shift: cells", where="HPA-like vs OpenCell-like",
            strength=(f"{hpa.n_cell_lines} HPA-like cell lines, cell radius {CELL_LINE_RADIUS[0]:g}-"
                      f"{CELL_LINE_RADIUS[1]:g} of an image (elongation up to {CELL_LINE_ASPECT[1]:g}) vs "
                      f"{OPENCELL_STYLE.radius:g} ({OPENCELL_STYLE.aspect:g}) for HEK293T-like cells, "
                      f"{CELL_LINE_CELLS[0]}-{CELL_LINE_CELLS[1]} vs {OPENCELL_STYLE.n_cells[0]}-"
                      f"{OPENCELL_STYLE.n_cells[1]} cells an image, loosely scattered vs clumped; structures "
                      f"drawn {OPENCELL_ZOOM:g}x larger in OpenCell-like images (higher magnification)"),
            recover="cell line is visible in HPA-like embeddings (UMAP colour, neighbours share it)")
        add(
            effect="domain shift: stains", where="HPA-like vs OpenCell-like",
            strength=(f"antibody off-target floor ~{HPA_OFF_TARGET:g} of a structure (log-sd 0.5 between "
                      f"antibodies) vs autofluorescence {AUTOFLUORESCENCE:g}; cell-to-cell expression log-sd "
                      f"{HPA_CELL_SD:g} vs {OPENCELL_CELL_SD:g}; 4 channels vs 2 (microtubules and ER left blank "
                      f"under channel mapping)"),
            recover="channel mapping and replication give different HPA-like rows")
    plates = f"batch_effect {oc.batch_effect:g} (OpenCell-like, {oc.n_batches} plates)"
    if synthetic["hpa"]:
        plates += f", {hpa.batch_effect:g} (HPA-like, {hpa.n_batches} plates)"
    add(
        effect="plate effects", where="every plate of the microscopy domains",
        strength=(f"{plates}: gain x exp(N(0, {PLATE_GAIN_SD[0]:g}) + N(0, {PLATE_GAIN_SD[1]:g}) per channel), "
                  f"background {pct(PLATE_BACKGROUND)}, PSF width {pct(PLATE_PSF)}, vignetting "
                  f"{PLATE_VIGNETTING[0]:g}-{PLATE_VIGNETTING[1]:g}, tilt {PLATE_TILT[0]:g}-{PLATE_TILT[1]:g}"),
        recover=("plates separate in raw embeddings (low iLISI) and mix after Harmony while localisation "
                 "neighbours are kept"))
    add(
        effect="labels belong to proteins", where="OpenCell-like labels",
        strength=(f"{oc.n_images / oc.n_groups:.1f} images per protein sharing labels and style (expression "
                  f"log-sd {EXPRESSION_SD:g}, structure count log-sd {DENSITY_SD:g}, size "
                  f"{STRUCTURE_SIZE[0]:g}-{STRUCTURE_SIZE[1]:g}x)"),
        recover="the split by image scores above the split grouped by protein (leakage)")
    add(
        effect="weak grades", where="OpenCell-like labels",
        strength=(f"grade 2 drawn at {GRADE_STRENGTH[2]:.0%} and grade 1 at {GRADE_STRENGTH[1]:.0%} of grade 3's "
                  f"brightness; ~{grade_1:.0%} of labels are grade 1"),
        recover="recall falls from grade 3 to grade 1; Table III on grade >= 2 labels scores higher")
    add(
        effect="look-alike compartments", where="OpenCell-like protein channel",
        strength="; ".join(f"{a} / {b}" for a, b in LOOK_ALIKES),
        recover="errors gather on these pairs (lowest per-class F1, most confusions)")
    add(
        effect="imbalance and co-occurrence", where="OpenCell-like labels",
        strength=(f"first-label prevalence {prior.min():.1%} to {prior.max():.0%}; 1/2/3 labels with probability "
                  + "/".join(f"{p:.2f}" for p in OPENCELL_CARDINALITY)),
        recover="tuned thresholds gain most on rare classes; the 0.5 threshold under-calls them")
    return pd.DataFrame(rows, columns=list(PLANTED_COLUMNS))


SYNTHETIC_DOMAINS: dict[str, Callable[..., ImageSet]] = {
    "opencell": make_opencell_like,
    "hpa": make_hpa_like,
    "natural": make_natural,
}
