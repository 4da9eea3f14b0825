"""DINO multi-crop with microscopy augmentations, batched on the device: no per-image Python loop.

Every view of every image is one projective map from the output grid into the source image: a random resized crop
(area ``scale``, aspect ratio 3/4-4/3), flips, and *cell warping* (DINO4Cells): one corner moved inward by up to
``warp_max`` of the side, either of the crop or, with ``warp_before_crop``, of the whole image before the crop is
drawn (DINO4Cells' order: the field is warped, its moved corner leaving a black wedge, then cropped). The four
corner correspondences of all views are solved for their homographies in one ``torch.linalg.solve`` and sampled
with one ``F.grid_sample`` per view slot; a warp of the whole image composes with the crop into that one map. Intensity
augmentations are tensor ops on the whole batch:

- microscopy (PAPER_SPEC.md §4): protein rescaling (p = 0.2: protein channel × U(0, 2) / its max), per-channel
  brightness and contrast factors ~ N(1, σ) floored at 0.5, optional random drop of one non-protein channel
  (Cell-DINO); no colour jitter, greyscale or solarisation;
- natural images: the official DINO colour augmentations (colour jitter p = 0.8, greyscale p = 0.2, Gaussian blur
  1.0 / 0.1 / 0.5, solarisation 0.2 on the second global view), then ImageNet standardisation.

Randomness. :func:`draw_params` draws every random number of a step for the *global* batch from one
``torch.Generator`` (on the CPU, so every device draws the same numbers). In a distributed run each process draws
the same global parameters and applies its own rows, so one process and N processes see identical crops; the
trainer seeds the generator from (seed, epoch, step), so a resumed run sees the crops an uninterrupted one would.

Simplifications against torchvision's ``RandomResizedCrop``: a crop whose drawn size exceeds the image is clipped to
the image instead of re-drawn (10 tries, then a centre crop); colour jitter applies its four parts in a fixed order
(brightness, contrast, saturation, hue) instead of a random one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from dinoxfer_lib.models.channels import Scaling, scale_intensities

LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
# Official DINO per-view probabilities for natural images: (blur, solarise) of global 1, global 2, locals.
NATURAL_BLUR_P = (1.0, 0.1, 0.5)
NATURAL_SOLARIZE_P = (0.0, 0.2, 0.0)


@dataclass(frozen=True)
class CropSpec:
    """What one training run's multi-crop does (built from a :class:`DinoConfig` by :meth:`from_config`)."""

    global_size: int
    local_size: int
    n_local: int
    global_scale: tuple[float, float]
    local_scale: tuple[float, float]
    n_channels: int
    protein_channel: int | None  # None: no protein rescaling, any channel may be dropped
    natural: bool  # official colour augmentations + ImageNet standardisation instead of the microscopy ones
    # the augmentation strengths, named and defaulted as in DinoConfig (the one place they are documented)
    flip_p: float = DinoConfig.flip_p
    warp_p: float = DinoConfig.warp_p
    warp_max: float = DinoConfig.warp_max
    warp_before_crop: bool = DinoConfig.warp_before_crop
    protein_rescale_p: float = DinoConfig.protein_rescale_p
    brightness_sigma: float = DinoConfig.brightness_sigma
    contrast_sigma: float = DinoConfig.contrast_sigma
    channel_drop_p: float = DinoConfig.channel_drop_p
    color_jitter: bool = DinoConfig.color_jitter

    @classmethod
    def from_config(cls, config: DinoConfig, *, global_size: int, n_channels: int, protein_channel: int | None,
                    natural: bool) -> CropSpec:
        return cls(
            global_size=global_size, local_size=config.local_crop_size, n_local=config.n_local_crops,
            global_scale=tuple(config.global_crop_scale), local_scale=tuple(config.local_crop_scale),
            n_channels=n_channels, protein_channel=protein_channel, natural=natural,
            **{name: getattr(config, name) for name in _STRENGTHS},
        )


_STRENGTHS = ("flip_p", "warp_p", "warp_max", "warp_before_crop", "protein_rescale_p", "brightness_sigma",
              "contrast_sigma", "channel_drop_p", "color_jitter")


def step_generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU generator seeded from (seed, keys...): e.g. (seed, epoch, step) for one step's augmentations."""
    digest = hashlib.sha256("/".join(map(str, (seed, *keys))).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def draw_params(spec: CropSpec, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """All random numbers of ``n`` images' views, in a fixed order: each tensor has the image as first axis.

    Keys ``global.*`` have a view axis of 2, ``local.*`` of ``spec.n_local``. Slice rows (``{k: v[rows]}``) to
    augment part of the batch with exactly the numbers the whole batch would use.
    """
    params = {}
    for kind, views, scale in (("global", 2, spec.global_scale), ("local", spec.n_local, spec.local_scale)):
        def u(*shape: int) -> torch.Tensor:
            return torch.rand(n, views, *shape, generator=generator)

        params[f"{kind}.area"] = scale[0] + (scale[1] - scale[0]) * u()
        params[f"{kind}.log_ratio"] = LOG_RATIO[0] + (LOG_RATIO[1] - LOG_RATIO[0]) * u()
        params[f"{kind}.position"] = u(2)  # where the crop sits, as a fraction of the free room
        params[f"{kind}.flip"] = u(2) < spec.flip_p  # (horizontal, vertical)
        params[f"{kind}.warp"] = u() < spec.warp_p
        params[f"{kind}.warp_corner"] = torch.randint(0, 4, (n, views), generator=generator)
        params[f"{kind}.warp_amount"] = spec.warp_max * u(2)  # inward shift along x and y, fraction of the side
        c = spec.n_channels
        if spec.natural:
            params[f"{kind}.jitter"] = u() < 0.8
            params[f"{kind}.jitter_factors"] = u(4)  # brightness, contrast, saturation, hue, mapped to ranges below
            params[f"{kind}.grey"] = u() < 0.2
            params[f"{kind}.blur"] = u()
            params[f"{kind}.blur_sigma"] = 0.1 + 1.9 * u()
            params[f"{kind}.solarize"] = u()
        else:
            params[f"{kind}.rescale"] = u() < spec.protein_rescale_p
            params[f"{kind}.rescale_factor"] = 2 * u()
            params[f"{kind}.brightness"] = (1 + spec.brightness_sigma * torch.randn(n, views, c, generator=generator))
            params[f"{kind}.contrast"] = (1 + spec.contrast_sigma * torch.randn(n, views, c, generator=generator))
            params[f"{kind}.drop"] = u() < spec.channel_drop_p
            params[f"{kind}.drop_channel"] = u()
    return params


def multi_crop(images: torch.Tensor, spec: CropSpec, params: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Views of ``images`` (B, C, H, W) in [0, 1]: ``[globals (2B, C, g, g), locals (n_local·B, C, l, l)]``.

    Views are stacked view-major (view 0 of every image, then view 1, ...), as :class:`~.loss.DINOLoss` expects.
    Without local crops the list has one element.
    """
    out = []
    for kind, size in (("global", spec.global_size), ("local", spec.local_size)):
        views = params[f"{kind}.area"].shape[1]
        if views == 0:
            continue
        p = {k.split(".", 1)[1]: v.to(images.device) for k, v in params.items() if k.startswith(kind + ".")}
        grids = _sampling_grids(p, size, images.shape[-2:], warp_image=spec.warp_before_crop)  # (B, V, s, s, 2)
        batch = []
        for view in range(views):
            x = F.grid_sample(images, grids[:, view], mode="bilinear", padding_mode="zeros", align_corners=False)
            pv = {k: v[:, view] for k, v in p.items()}
            if spec.natural:
                x = _natural_colour(x, pv, spec, slot=min(view, 2) if kind == "global" else 2)
            else:
                x = _microscopy_intensity(x, pv, spec)
            batch.append(x)
        out.append(torch.cat(batch))
    return out


def _sampling_grids(p: dict[str, torch.Tensor], size: int, source_hw: tuple[int, int], *,
                    warp_image: bool = False) -> torch.Tensor:
    """(B, V, size, size, 2) source coordinates in [-1, 1] for every output pixel, via per-view homographies;
    ``warp_image`` moves a corner of the whole image (before the crop) instead of one of the crop."""
    b, v = p["area"].shape
    h, w = source_hw
    ratio = p["log_ratio"].exp()
    # crop half-sizes in normalised coordinates (the image spans [-1, 1]); the area is a fraction of H·W
    half_w = (p["area"] * ratio).sqrt().clamp(max=1.0)
    half_h = (p["area"] / ratio).sqrt().clamp(max=1.0)
    if h != w:  # keep the crop's pixel aspect ratio for non-square images
        half_w = (half_w * math.sqrt(h / w)).clamp(max=1.0)
        half_h = (half_h * math.sqrt(w / h)).clamp(max=1.0)
    cx = (2 * p["position"][..., 0] - 1) * (1 - half_w)
    cy = (2 * p["position"][..., 1] - 1) * (1 - half_h)
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=cx.device)  # (4, 2)
    # cell warping: the chosen corner moves towards the centre by up to warp_max of the side (= 2·half)
    chosen = F.one_hot(p["warp_corner"], 4).bool() & p["warp"][..., None]  # (B, V, 4)
    shrink = 1 - 2 * p["warp_amount"][..., None, :] * chosen[..., None]  # (B, V, 4, 2)
    direction = corners * (1 if warp_image else shrink)
    flip_sign = 1 - 2 * p["flip"].float()  # (B, V, 2): -1 mirrors that axis
    source = torch.stack(
        (cx[..., None] + half_w[..., None] * direction[..., 0] * flip_sign[..., 0:1],
         cy[..., None] + half_h[..., None] * direction[..., 1] * flip_sign[..., 1:2]), dim=-1,
    )  # (B, V, 4, 2): where each output corner comes from
    if warp_image:  # the crop lies in the warped image; the warp's inverse takes it back to the source
        moved = corners * shrink  # (B, V, 4, 2): the image corners after the warp
        inverse = _homographies(moved, corners.expand(b, v, 4, 2))  # warped image -> source
        mapped = torch.einsum("bvij,bvpj->bvpi", inverse, torch.cat((source, torch.ones_like(source[..., :1])), -1))
        source = mapped[..., :2] / mapped[..., 2:]
    homography = _homographies(corners.expand(b, v, 4, 2), source)  # (B, V, 3, 3)
    axis = (2 * torch.arange(size, device=cx.device, dtype=cx.dtype) + 1) / size - 1  # pixel centres
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack((gx, gy, torch.ones_like(gx)), dim=-1).reshape(-1, 3)  # (size², 3)
    mapped = torch.einsum("bvij,pj->bvpi", homography, points)  # (B, V, size², 3)
    grid = mapped[..., :2] / mapped[..., 2:]
    return grid.reshape(b, v, size, size, 2)


def _homographies(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """(..., 4, 2) point pairs → (..., 3, 3) H with H·[dst, 1] ∝ [src, 1], all solved in one batched call."""
    x, y = dst[..., 0], dst[..., 1]
    u, v = src[..., 0], src[..., 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack((x, y, one, zero, zero, zero, -x * u, -y * u), dim=-1)  # (..., 4, 8)
    rows_v = torch.stack((zero, zero, zero, x, y, one, -x * v, -y * v), dim=-1)
    a = torch.cat((rows_u, rows_v), dim=-2)  # (..., 8, 8)
    rhs = torch.cat((u, v), dim=-1)  # (..., 8)
    h = torch.linalg.solve(a.double(), rhs.double()).to(dst.dtype)
    return torch.cat((h, torch.ones_like(h[..., :1])), dim=-1).reshape(*dst.shape[:-2], 3, 3)


def _microscopy_intensity(x: torch.Tensor, p: dict[str, torch.Tensor], spec: CropSpec) -> torch.Tensor:
    """Protein rescaling, per-channel brightness/contrast, channel drop on (B, C, s, s) views in [0, 1]."""
    b, c = x.shape[:2]
    gain = torch.ones(b, c, device=x.device, dtype=x.dtype)
    if spec.protein_channel is not None:
        peak = x[:, spec.protein_channel].amax(dim=(1, 2)).clamp_min(1e-6)
        rescale = torch.where(p["rescale"], p["rescale_factor"] / peak, torch.ones_like(peak))
        gain[:, spec.protein_channel] = rescale
    gain = gain * p["brightness"].clamp_min(0.5)
    contrast = p["contrast"].clamp_min(0.5)[..., None, None]  # (B, C, 1, 1)
    x = x * gain[..., None, None]
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean).clamp_min(0)
    droppable = [i for i in range(c) if i != spec.protein_channel]
    if spec.channel_drop_p > 0 and droppable:
        pick = torch.tensor(droppable, device=x.device)[(p["drop_channel"] * len(droppable)).long()]  # (B,)
        drop = F.one_hot(pick, c).bool() & p["drop"][:, None]  # (B, C)
        x = x.masked_fill(drop[..., None, None], 0.0)
    return x


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, s, s) RGB → (B, 1, s, s) luma (ITU-R 601, as torchvision)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _natural_colour(x: torch.Tensor, p: dict[str, torch.Tensor], spec: CropSpec, *, slot: int) -> torch.Tensor:
    """Official DINO photometric augmentations of one view slot (0, 1 = globals, 2 = locals), then ImageNet norm."""
    def where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(mask[:, None, None, None], a, b)

    if spec.color_jitter:
        f = p["jitter_factors"]  # (B, 4) uniform in [0, 1)
        brightness, contrast = (0.6 + 0.8 * f[:, 0]), (0.6 + 0.8 * f[:, 1])
        saturation, hue = (0.8 + 0.4 * f[:, 2]), (-0.1 + 0.2 * f[:, 3])
        j = (x * brightness[:, None, None, None]).clamp(0, 1)
        mean_grey = _grey(j).mean(dim=(1, 2, 3), keepdim=True)
        j = (contrast[:, None, None, None] * j + (1 - contrast[:, None, None, None]) * mean_grey).clamp(0, 1)
        j = (saturation[:, None, None, None] * j + (1 - saturation[:, None, None, None]) * _grey(j)).clamp(0, 1)
        j = _rotate_hue(j, hue)
        x = where(p["jitter"], j, x)
        x = where(p["grey"], _grey(x).expand_as(x), x)
    x = where(p["blur"] < NATURAL_BLUR_P[slot], _gaussian_blur(x, p["blur_sigma"]), x)
    x = where(p["solarize"] < NATURAL_SOLARIZE_P[slot], torch.where(x >= 0.5, 1 - x, x), x)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def _rotate_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Shift hue by ``hue`` turns (B,) as a rotation of the chroma plane in YIQ space (batched, no HSV branches)."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=x.device, dtype=x.dtype)
    angle = 2 * math.pi * hue
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.zeros(len(x), 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, x).clamp(0, 1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (in pixels at 224 px, scaled to the view size) per image."""
    b, c, h, w = x.shape
    sigma = sigma * (h / 224)  # official sigmas 0.1-2 are for 224 px views
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma.clamp_min(1e-3)[:, None]) ** 2)  # (B, k)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B·C, k)
    flat = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=b * c)
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=b * c)
    return flat.reshape(b, c, h, w)


def to_unit_range(raw: torch.Tensor, *, max_side: int | None = None) -> torch.Tensor:
    """Raw intensities (B, C, H, W) on the device → float [0, 1], as the embedding stage scales them.

    The per-image 1-99.8 percentile window of :class:`~dinoxfer_lib.models.channels.Scaling` is used, so the
    backbone trains on what it will later embed. Images larger than ``max_side`` are first shrunk (antialiased) so
    no crop is sampled down by more than ~2x without a low-pass filter.
    """
    x = raw.float()
    if max_side is not None and max(x.shape[-2:]) > max_side:
        factor = max_side / max(x.shape[-2:])
        size = (max(1, round(x.shape[-2] * factor)), max(1, round(x.shape[-1] * factor)))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return scale_intensities(x, Scaling())
