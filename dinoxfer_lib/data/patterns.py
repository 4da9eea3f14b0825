"""Procedural cells and protein-localisation patterns for the synthetic microscopy domains.

A :class:`Field` is the geometry of one field of view: a clump of touching cells (blob-shaped outlines, an
off-centre nucleus with nucleoli and chromatin texture, a microtubule-organising centre beside the nucleus). Each
``render_*`` function draws one compartment of the OpenCell localisation ontology (Cho et al. 2022, *Science*)
into a field, as it looks in a spinning-disk confocal image of HEK293T cells: diffuse nucleoplasm, textured
chromatin, nuclear dots, filled nucleoli, dots inside nucleoli, a nuclear rim, diffuse cytoplasm, a reticular ER,
a perinuclear Golgi ribbon, centrosome dots, mitochondrial fragments, vesicles, aggregates, filaments, cell
outlines, cell-cell contacts and focal adhesions. The HPA-like domain (Ouyang et al. 2019, *Nat Methods*) reuses
the same renderers with other parameters.

Renderers return an ``(S, S)`` float map whose bright structures are about 1 (before grade, expression and
imaging), so that a label's grade, not its compartment, sets how strong it looks. Lengths are given in pixels of
a 64-px field and scale with the field's ``scale`` (by default its size / 64), so the same cells can be rendered
at 32, 64 or 224 px; a wider field at the same ``scale`` holds more cells of the same pixel size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

REFERENCE_SIZE = 64  # pixel lengths in this module are given at this field size
# Cell blobs are evaluated out to this normalised distance (beyond the 1.08 at which neighbours count as in
# contact); farther pixels get FAR, which every use of the distance treats as "outside, nowhere near".
BLOB_REACH = 1.2
FAR = np.float32(1e3)


@dataclass(frozen=True)
class CellStyle:
    """How the cells of a domain (or of one HPA cell line) look: count, size, elongation, nucleus size."""

    n_cells: tuple[int, int]  # inclusive range of cells in a field
    radius: float  # cell radius as a fraction of the field side
    aspect: float  # largest long/short axis ratio of a cell
    nucleus_ratio: float  # nucleus radius / cell radius
    wobble: float = 0.08  # amplitude of the outline's low harmonics (0 = perfect ellipses)
    clump: float = 0.8  # chance that a new cell grows beside an existing one rather than anywhere


@dataclass
class Field:
    """Geometry of one field of view; renderers read it and never change it.

    Per-pixel maps are ``(S, S)``; per-cell arrays have one row per cell.
    """

    size: int
    owner: np.ndarray  # cell index of each pixel, -1 = background
    cell_d: np.ndarray  # normalised distance to the owning cell's centre (1 on its outline)
    edge_px: np.ndarray  # signed distance in pixels to the nearest outline (positive inside a cell)
    contact_px: np.ndarray  # distance in pixels to a cell-cell contact line (inf where no neighbour is near)
    nuc_edge_px: np.ndarray  # signed distance in pixels to the own nucleus' rim (negative inside)
    nucleoli: np.ndarray  # nucleolar occupancy in [0, 1]
    dna: np.ndarray  # chromatin texture in [0, 1] (inside nuclei)
    cell_radius: np.ndarray  # (K,) pixels
    nuc_centres: np.ndarray  # (K, 2) (y, x)
    nuc_radius: np.ndarray  # (K,) pixels
    mtoc: np.ndarray  # (K, 2) microtubule-organising centre next to each nucleus
    scale: float  # pixels of this field per pixel of the 64-px reference field

    @property
    def n_cells(self) -> int:
        return len(self.cell_radius)

    @property
    def inside(self) -> np.ndarray:
        return self.owner >= 0

    @property
    def nucleus(self) -> np.ndarray:
        return self.inside & (self.nuc_edge_px < 0)

    @property
    def cytoplasm(self) -> np.ndarray:
        return self.inside & (self.nuc_edge_px >= 0)

    def perinuclear(self, reach: float) -> np.ndarray:
        """Cytoplasmic weight decaying away from the nucleus over ``reach`` cell radii (ER, Golgi, mitochondria)."""
        radius = self.cell_radius[np.maximum(self.owner, 0)]
        return self.cytoplasm * np.exp(-np.maximum(self.nuc_edge_px, 0) / (reach * radius))


# ----------------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), shared by every field of one size."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to [0, 1]: slow intensity variation or texture of scale ``sigma``."""
    noise = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma)
    lo, hi = noise.min(), noise.max()
    return (noise - lo) / (hi - lo + 1e-9)


def _band_noise(rng: np.random.Generator, size: int, fine: float, coarse: float) -> np.ndarray:
    """Band-pass noise with unit standard deviation; its zero crossings form a connected network."""
    white = rng.standard_normal((size, size)).astype(np.float32)
    band = gaussian_filter(white, fine) - gaussian_filter(white, coarse)
    return band / (band.std() + 1e-9)


def _place_cells(rng: np.random.Generator, radii: np.ndarray, size: int, clump: float) -> np.ndarray:
    """Cell centres that mostly clump (HEK293T and many HPA lines grow in islands), neighbours touching.

    A new cell sits, with probability ``clump``, beside an existing one (centre distance ~0.85 of the radii sum,
    so the outlines overlap into a contact), else anywhere; it is rejected if it would swallow a neighbour. Cells
    that find no place are dropped, so crowded fields hold fewer cells.
    """
    centres = [rng.uniform(0.3, 0.7, 2) * size]
    for k in range(1, len(radii)):
        for _ in range(30):
            if rng.random() < clump:
                j = rng.integers(len(centres))
                angle = rng.uniform(0, 2 * np.pi)
                gap = (radii[j] + radii[k]) * rng.uniform(0.78, 0.95)
                candidate = centres[j] + gap * np.array([np.sin(angle), np.cos(angle)])
            else:
                candidate = rng.uniform(0.1, 0.9, 2) * size
            inside = np.all((candidate > 0.04 * size) & (candidate < 0.96 * size))
            apart = all(np.hypot(*(candidate - c)) > 0.75 * (radii[j2] + radii[k]) for j2, c in enumerate(centres))
            if inside and apart:
                centres.append(candidate)
                break
    return np.array(centres)


def _blob_distance(rng: np.random.Generator, size: int, centres: np.ndarray, radii: np.ndarray, aspect: float,
                   wobble: float, *, owner: np.ndarray | None = None) -> np.ndarray:
    """(K, S, S) normalised distance to each blob's centre: a rotated ellipse with a wavy outline, 1 on it.

    Each blob is evaluated only in the square that can hold distances below :data:`BLOB_REACH`; elsewhere the
    distance is :data:`FAR`. With ``owner`` (an (S, S) blob index per pixel) only each pixel's own blob is
    evaluated and the result is (S, S), exact everywhere. The random draws are the same either way. The outline's
    radius is modulated by harmonics 2-4 of the polar angle, computed from cos/sin of the angle by multiple-angle
    recurrences (no trigonometric calls per pixel: this is the generator's hot loop).
    """
    k = len(centres)
    ratio = np.sqrt(rng.uniform(1.0, aspect, k))
    angle = rng.uniform(0, np.pi, k)
    waves = []  # (amplitude of cos, amplitude of sin) per harmonic, each (K,)
    for order in (2, 3, 4):
        amplitude = 2 * rng.uniform(0, wobble, k) / order
        phase = rng.uniform(0, 2 * np.pi, k)
        waves.append((amplitude * np.cos(phase), amplitude * np.sin(phase)))
    params = np.stack([centres[:, 0], centres[:, 1], np.cos(angle), np.sin(angle), ratio, radii,
                       *(a for pair in waves for a in pair)], 1).astype(np.float32)  # (K, 12)
    yy, xx = _grid(size)
    if owner is not None:
        return _normalised_distance(yy, xx, params[np.maximum(owner, 0)].transpose(2, 0, 1))
    # the outline's radius is at most radius * ratio * (1 + sum of wave amplitudes) from the centre
    reach = BLOB_REACH * radii * ratio * (1 + sum(np.hypot(a, b) for a, b in waves)) + 1
    out = np.full((k, size, size), FAR, np.float32)
    for j in range(k):
        y0, x0 = np.maximum(np.floor(centres[j] - reach[j]).astype(int), 0)
        y1, x1 = np.minimum(np.ceil(centres[j] + reach[j]).astype(int) + 1, size)
        if y1 > y0 and x1 > x0:
            out[j, y0:y1, x0:x1] = _normalised_distance(yy[y0:y1, x0:x1], xx[y0:y1, x0:x1], params[j, :, None, None])
    return out


def _normalised_distance(yy: np.ndarray, xx: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Distance of pixels (yy, xx) to blobs with parameters ``p`` (12, ...) broadcast against them."""
    dy, dx = yy - p[0], xx - p[1]
    u = (dx * p[2] + dy * p[3]) / p[4]
    v = (dy * p[2] - dx * p[3]) * p[4]
    rho = np.sqrt(u * u + v * v) + 1e-6
    c1, s1 = u / rho, v / rho
    c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
    harmonics = ((c2, s2), (c1 * c2 - s1 * s2, s1 * c2 + c1 * s2), (c2 * c2 - s2 * s2, 2 * c2 * s2))
    outline = np.ones_like(rho)
    for i, (ch, sh) in enumerate(harmonics):
        outline += p[6 + 2 * i] * ch - p[7 + 2 * i] * sh
    return rho / (p[5] * outline)


def _nucleoli(rng: np.random.Generator, size: int, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """1-3 flat-topped nucleoli per nucleus, away from its rim."""
    yy, xx = _grid(size)
    counts = rng.integers(1, 4, len(centres))
    owner = np.repeat(np.arange(len(centres)), counts)
    angle = rng.uniform(0, 2 * np.pi, len(owner))
    offset = radii[owner, None] * rng.uniform(0.0, 0.45, len(owner))[:, None]
    spots = (centres[owner] + offset * np.stack([np.sin(angle), np.cos(angle)], 1)).astype(np.float32)
    sigma = (radii[owner] * rng.uniform(0.14, 0.22, len(owner))).astype(np.float32)
    bumps = np.zeros((size, size), np.float32)
    for (y, x), s in zip(spots, sigma):  # each bump only where it can top 0.2/1.6 (the clip below): 2.1 sigma
        y0, x0 = max(int(y - 2.1 * s), 0), max(int(x - 2.1 * s), 0)
        y1, x1 = min(int(y + 2.1 * s) + 2, size), min(int(x + 2.1 * s) + 2, size)
        d2 = (yy[y0:y1, x0:x1] - y) ** 2 + (xx[y0:y1, x0:x1] - x) ** 2
        np.maximum(bumps[y0:y1, x0:x1], np.exp(-d2 / (2 * s**2)), out=bumps[y0:y1, x0:x1])
    return np.clip(1.6 * bumps - 0.2, 0, 1)


def make_field(rng: np.random.Generator, size: int, style: CellStyle, *, scale: float | None = None) -> Field:
    """Draw one field of view of ``style`` cells at ``size`` pixels.

    ``scale`` is the field's pixels per reference pixel (default ``size / 64``: the whole field shrinks or grows
    with ``size``); ``style.radius`` stays a fraction of the field side. Where two cell blobs overlap, each pixel
    goes to the cell whose (normalised) centre is nearest, which splits them along a straight-ish contact line,
    as touching cells look in a projection.
    """
    scale = size / REFERENCE_SIZE if scale is None else scale
    n = int(rng.integers(style.n_cells[0], style.n_cells[1] + 1))
    radii = style.radius * size * rng.uniform(0.85, 1.15, n)
    centres = _place_cells(rng, radii, size, style.clump)
    radii = radii[: len(centres)]
    k = len(centres)
    d = _blob_distance(rng, size, centres, radii, style.aspect, style.wobble)
    nearest_cell = d.argmin(0)
    nearest = np.take_along_axis(d, nearest_cell[None], 0)[0]
    np.put_along_axis(d, nearest_cell[None], np.inf, 0)  # the nearest is read: mask it to find the second
    second = d.min(0) if k > 1 else np.full_like(nearest, np.inf)
    owner = np.where(nearest < 1, nearest_cell, -1)
    r_near = radii[nearest_cell]
    edge_px = (1 - nearest) * r_near
    contact_px = np.where(second < 1.08, (second - nearest) * r_near / 2, np.inf)

    nuc_radii = radii * style.nucleus_ratio * rng.uniform(0.9, 1.1, k)
    shift = np.clip(rng.normal(0, 0.1, (k, 2)), -0.18, 0.18) * radii[:, None]
    nuc_centres = centres + shift
    nuc_d = _blob_distance(rng, size, nuc_centres, nuc_radii, 1.25, style.wobble / 3, owner=owner)  # own nucleus
    safe = np.maximum(owner, 0)
    nuc_edge_px = np.where(owner >= 0, (nuc_d - 1) * nuc_radii[safe], np.inf)

    nucleoli = _nucleoli(rng, size, nuc_centres, nuc_radii) * (nuc_edge_px < -0.6 * scale)
    texture = _band_noise(rng, size, 0.6 * scale, 2.5 * scale)
    periphery = np.exp(-np.abs(nuc_edge_px) / (1.2 * scale))  # heterochromatin lines the rim
    dna = np.clip(0.5 + 0.22 * texture + 0.25 * periphery, 0, 1) * (nuc_edge_px < 0)

    angle = rng.uniform(0, 2 * np.pi, k)
    reach = nuc_radii + 1.3 * scale
    mtoc = nuc_centres + reach[:, None] * np.stack([np.sin(angle), np.cos(angle)], 1)
    return Field(size, owner, nearest, edge_px, contact_px, nuc_edge_px, nucleoli, dna, radii, nuc_centres,
                 nuc_radii, mtoc, scale)


def hoechst(field: Field, rng: np.random.Generator) -> np.ndarray:
    """DNA stain: nuclei filled with chromatin texture, dimmer nucleoli, brighter cells in G2 (more DNA)."""
    dna_content = rng.uniform(0.8, 1.5, field.n_cells)[np.maximum(field.owner, 0)]
    return field.nucleus * (0.35 + 0.75 * field.dna) * (1 - 0.6 * field.nucleoli) * dna_content


# ----------------------------------------------------------------------------------------------------------------
# Drawing primitives
# ----------------------------------------------------------------------------------------------------------------
def _splat(size: int, points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Bilinear splatting of sub-pixel points onto a canvas (keeps thin lines continuous)."""
    canvas = np.zeros(size * size, np.float32)
    if len(points) == 0:
        return canvas.reshape(size, size)
    base = np.floor(points).astype(int)
    frac = points - base
    for dy in (0, 1):
        for dx in (0, 1):
            y, x = base[:, 0] + dy, base[:, 1] + dx
            w = weights * (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            ok = (y >= 0) & (y < size) & (x >= 0) & (x < size)
            canvas += np.bincount(y[ok] * size + x[ok], w[ok], minlength=size * size).astype(np.float32)
    return canvas.reshape(size, size)


def _dots(field: Field, points: np.ndarray, sigma: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Gaussian spots of ``sigma`` reference pixels whose isolated peak is about their weight."""
    sigma_px = sigma * field.scale
    weights = np.ones(len(points), np.float32) if weights is None else weights
    return gaussian_filter(_splat(field.size, points, weights), sigma_px) * (2 * np.pi * sigma_px**2)


def _sample(rng: np.random.Generator, weight: np.ndarray, n: int) -> np.ndarray:
    """``n`` sub-pixel positions drawn with probability proportional to ``weight`` (an (S, S) map)."""
    flat = weight.ravel().astype(np.float64)
    total = flat.sum()
    if n <= 0 or total <= 0:
        return np.zeros((0, 2))
    index = rng.choice(flat.size, size=n, p=flat / total)
    return np.stack(np.divmod(index, weight.shape[1]), 1) + rng.uniform(-0.5, 0.5, (n, 2))


def _owner_at(field: Field, points: np.ndarray) -> np.ndarray:
    """Cell index under each point (-1 off cells)."""
    yx = np.clip(np.round(points).astype(int), 0, field.size - 1)
    return field.owner[yx[:, 0], yx[:, 1]]


def _lines(rng: np.random.Generator, field: Field, starts: np.ndarray, angles: np.ndarray, lengths: np.ndarray,
           curvy: float, sigma: float) -> np.ndarray:
    """Filaments: random-walk polylines from ``starts``; the line's peak is about 1, whatever its sampling.

    Points that leave the cell they started in are dropped, so filaments stop at the cell's outline.
    """
    if len(starts) == 0:
        return np.zeros((field.size, field.size), np.float32)
    step_target = 0.4 * field.scale
    steps = max(2, int(np.ceil(lengths.max() / step_target)))
    step = lengths / steps
    turn = rng.normal(0, curvy * np.sqrt(step[:, None] / field.scale), (len(starts), steps))
    theta = angles[:, None] + np.cumsum(turn, axis=1)
    path = starts[:, None, :] + np.cumsum(step[:, None, None] * np.stack([np.sin(theta), np.cos(theta)], -1), 1)
    home = np.repeat(_owner_at(field, starts), steps)
    points = path.reshape(-1, 2)
    sigma_px = sigma * field.scale
    weights = np.repeat(step, steps) / (np.sqrt(2 * np.pi) * sigma_px)
    weights = np.where((_owner_at(field, points) == home) & (home >= 0), weights, 0)
    return gaussian_filter(_splat(field.size, points, weights.astype(np.float32)), sigma_px) * (
        2 * np.pi * sigma_px**2
    )


def _per_cell(rng: np.random.Generator, field: Field, mean: float) -> int:
    """Poisson count of structures over the field for ``mean`` per cell (at least one)."""
    return max(1, int(rng.poisson(mean * field.n_cells)))


# ----------------------------------------------------------------------------------------------------------------
# One renderer per OpenCell compartment. ``density`` (how many structures) and ``scale`` (how big) are the
# protein's own style; the remaining keywords are variants the HPA-like table uses.
# ----------------------------------------------------------------------------------------------------------------
def render_nucleoplasm(field: Field, rng, *, density=1.0, scale=1.0) -> np.ndarray:
    """Diffuse nuclear signal with slow variation, excluding nucleoli."""
    slow = smooth_noise(rng, field.size, 2.5 * field.scale)
    return field.nucleus * (1 - 0.85 * field.nucleoli) * (0.7 + 0.5 * slow)


def render_chromatin(field: Field, rng, *, density=1.0, scale=1.0) -> np.ndarray:
    """Nuclear signal following the DNA texture (look-alike of nucleoplasm, but correlated with the DNA stain)."""
    return field.nucleus * (1 - 0.75 * field.nucleoli) * np.clip(1.5 * field.dna - 0.25, 0.05, 1.2)


def render_nuclear_punctae(field: Field, rng, *, density=1.0, scale=1.0, count=5.0, sigma=0.6) -> np.ndarray:
    """A few bright dots in the nucleoplasm (speckles, bodies) over a faint nuclear haze."""
    where = field.nucleus * (field.nucleoli < 0.2)
    n = _per_cell(rng, field, count * density)
    dots = _dots(field, _sample(rng, where, n), sigma * scale, rng.lognormal(0, 0.3, n).astype(np.float32))
    return dots * field.nucleus + 0.12 * render_nucleoplasm(field, rng)


def render_nucleolus_gc(field: Field, rng, *, density=1.0, scale=1.0) -> np.ndarray:
    """Filled nucleoli (granular component)."""
    return field.nucleoli * (0.85 + 0.3 * smooth_noise(rng, field.size, field.scale)) + 0.05 * field.nucleus


def render_nucleolus_fc_dfc(field: Field, rng, *, density=1.0, scale=1.0, count=3.0, sigma=0.55) -> np.ndarray:
    """Small dots inside the nucleoli (fibrillar centres) with a dim nucleolar rim (look-alike of nucleolus_gc)."""
    n = _per_cell(rng, field, count * density)
    dots = _dots(field, _sample(rng, field.nucleoli > 0.5, n), sigma * scale)
    return dots * (field.nucleoli > 0.1) + 0.25 * field.nucleoli + 0.04 * field.nucleus


def render_nuclear_membrane(field: Field, rng, *, density=1.0, scale=1.0, width=0.7) -> np.ndarray:
    """A thin, slightly beaded rim around each nucleus."""
    w = width * scale * field.scale
    beads = 0.7 + 0.5 * smooth_noise(rng, field.size, 0.8 * field.scale)
    return np.exp(-(field.nuc_edge_px + 0.3 * field.scale) ** 2 / (2 * w**2)) * field.inside * beads


def render_cytoplasmic(field: Field, rng, *, density=1.0, scale=1.0) -> np.ndarray:
    """Diffuse cytoplasm, uneven, with the dimmer nuclear fraction that small soluble proteins have."""
    slow = smooth_noise(rng, field.size, 3.0 * field.scale)
    return field.cytoplasm * (0.7 + 0.5 * slow) + 0.18 * field.nucleus


def render_er(field: Field, rng, *, density=1.0, scale=1.0) -> np.ndarray:
    """Reticular network densest around the nucleus, continuous with the nuclear envelope."""
    band = _band_noise(rng, field.size, 0.8 * scale * field.scale, 2.4 * scale * field.scale)
    network = np.exp(-(band / 0.45) ** 2)
    profile = field.perinuclear(0.7 * density)
    envelope = np.exp(-(field.nuc_edge_px**2) / (2 * (0.7 * field.scale) ** 2)) * field.inside
    return (0.15 + 0.9 * network) * profile + 0.25 * envelope


def render_golgi(field: Field, rng, *, density=1.0, scale=1.0, count=9.0) -> np.ndarray:
    """A compact ribbon of dots hugging one side of the nucleus, around the MTOC."""
    per_cell = max(2, int(round(count * density)))
    owner = np.repeat(np.arange(field.n_cells), per_cell)
    centre = field.nuc_centres[owner]
    toward = field.mtoc[owner] - centre
    base = np.arctan2(toward[:, 0], toward[:, 1]) + rng.normal(0, 0.4 * scale, len(owner))
    radius = field.nuc_radius[owner] + field.scale * np.abs(rng.normal(0.8, 0.8 * scale, len(owner)))
    points = centre + radius[:, None] * np.stack([np.sin(base), np.cos(base)], 1)
    weights = rng.lognormal(0, 0.3, len(points)).astype(np.float32)
    return _dots(field, points, 0.65 * scale, weights) * field.inside + 0.04 * field.cytoplasm


def render_centrosome(field: Field, rng, *, density=1.0, scale=1.0, count=2, sigma=0.7) -> np.ndarray:
    """1-2 tiny dots at the MTOC beside the nucleus (look-alike of a small Golgi)."""
    owner = np.repeat(np.arange(field.n_cells), count)
    jitter = rng.normal(0, 0.7 * field.scale, (len(owner), 2))
    points = field.mtoc[owner] + jitter
    return _dots(field, points, sigma * scale) * field.inside + 0.03 * field.cytoplasm


def render_mitochondria(field: Field, rng, *, density=1.0, scale=1.0, count=10.0, length=5.0) -> np.ndarray:
    """Short tubular fragments, denser around the nucleus (look-alike of vesicles when short)."""
    n = _per_cell(rng, field, count * density)
    starts = _sample(rng, field.perinuclear(0.6), n)
    lengths = length * scale * field.scale * rng.uniform(0.5, 1.5, len(starts))
    fragments = _lines(rng, field, starts, rng.uniform(0, 2 * np.pi, len(starts)), lengths, 0.6, 0.45)
    return fragments * field.cytoplasm


def render_vesicles(field: Field, rng, *, density=1.0, scale=1.0, count=14.0, sigma=0.5) -> np.ndarray:
    """Many small dots of varying brightness scattered through the cytoplasm."""
    n = _per_cell(rng, field, count * density)
    points = _sample(rng, field.perinuclear(0.8) + 0.2 * field.cytoplasm, n)
    return _dots(field, points, sigma * scale, rng.lognormal(0, 0.4, n).astype(np.float32)) * field.inside


def render_big_aggregates(field: Field, rng, *, density=1.0, scale=1.0, count=1.5, size=1.5) -> np.ndarray:
    """One or two large bright blobs per field over a faint cytoplasm."""
    n = max(1, int(rng.poisson(count * density)))
    points = _sample(rng, field.perinuclear(0.4), n)
    blobs = _dots(field, points, size * scale, rng.uniform(1.2, 2.0, n).astype(np.float32))
    return blobs * field.inside + 0.12 * render_cytoplasmic(field, rng)


def render_cytoskeleton(field: Field, rng, *, density=1.0, scale=1.0, count=9.0, length=1.4, curvy=0.08,
                        radial=False, reach=1.0, cortical=0.0) -> np.ndarray:
    """Filaments: parallel stress-fibre bundles per cell, or (``radial``) fibres pointing away from the MTOC.

    ``length`` is in cell radii and ``curvy`` the random turning. Radial fibres start within ``reach`` cell radii
    of the MTOC (small: a compact aster or spindle; large: a microtubule network through the cytoplasm).
    ``cortical`` adds a cortex under the membrane.
    """
    n = _per_cell(rng, field, count * density)
    owner = np.maximum(field.owner, 0)
    if radial:
        yy, xx = np.mgrid[0 : field.size, 0 : field.size]
        to_mtoc = np.hypot(yy - field.mtoc[owner, 0], xx - field.mtoc[owner, 1])
        starts = _sample(rng, field.inside * np.exp(-to_mtoc / (reach * field.cell_radius[owner])), n)
        cell = np.maximum(_owner_at(field, starts), 0)
        away = starts - field.mtoc[cell]
        angles = np.arctan2(away[:, 0], away[:, 1]) + rng.normal(0, 0.3, n)
    else:
        starts = _sample(rng, field.inside, n)
        cell = np.maximum(_owner_at(field, starts), 0)
        orientation = rng.uniform(0, np.pi, field.n_cells)
        angles = orientation[cell] + rng.normal(0, 0.12, n) + np.pi * rng.integers(0, 2, n)
    lengths = length * field.cell_radius[cell] * rng.uniform(0.5, 1.0, n)
    fibres = _lines(rng, field, starts, angles, lengths, curvy, 0.4 * scale)
    cortex = cortical * render_membrane(field, rng) if cortical else 0.0
    return fibres * (1 - 0.5 * field.nucleus) + cortex + 0.05 * field.cytoplasm


def _membrane_lines(field: Field, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(outline, contact) line maps of ``width`` reference pixels, each peaking at 1."""
    w = width * field.scale
    outline = np.exp(-(field.edge_px - 0.5 * field.scale) ** 2 / (2 * w**2))
    contact = np.exp(-(field.contact_px**2) / (2 * w**2))
    return outline, contact


def render_membrane(field: Field, rng, *, density=1.0, scale=1.0, width=0.6) -> np.ndarray:
    """Cell outlines, free edges and cell-cell contacts alike."""
    outline, contact = _membrane_lines(field, width * scale)
    beads = 0.75 + 0.4 * smooth_noise(rng, field.size, field.scale)
    return np.maximum(outline, contact) * beads + 0.04 * field.cytoplasm


def render_cell_contact(field: Field, rng, *, density=1.0, scale=1.0, width=0.8) -> np.ndarray:
    """Signal where two cells touch, barely any on free membrane (look-alike of membrane)."""
    outline, contact = _membrane_lines(field, width * scale)
    return 1.3 * contact + 0.08 * outline + 0.03 * field.cytoplasm


def render_focal_adhesions(field: Field, rng, *, density=1.0, scale=1.0, count=6.0, length=3.0,
                           band=(0.72, 0.95)) -> np.ndarray:
    """Short radial dashes near the cell periphery (``band``: range of normalised distance from the centre)."""
    where = field.inside & (field.cell_d > band[0]) & (field.cell_d < band[1])
    n = _per_cell(rng, field, count * density)
    starts = _sample(rng, where, n)
    cell = np.maximum(_owner_at(field, starts), 0)
    outward = starts - field.nuc_centres[cell]
    angles = np.arctan2(outward[:, 0], outward[:, 1]) + np.pi
    lengths = length * scale * field.scale * rng.uniform(0.6, 1.3, len(starts))
    return _lines(rng, field, starts, angles, lengths, 0.05, 0.45) + 0.05 * field.cytoplasm


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
