"""Settings of DINO and DINOv2 training (PAPER_SPEC.md §4; Caron et al. 2021, official ``main_dino.py``; Oquab et
al. 2024, official ``dinov2/configs/ssl_default_config.yaml``).

The defaults are the official ``main_dino.py`` defaults plus what the paper states (2 global crops at scale
0.4-1.0, local crops at 0.05-0.4 and 96 px, 300 epochs, cell warping, protein rescaling p = 0.2, flips p = 0.5).
The global crop side defaults to ``embed.img_size`` (the side the backbone embeds at).

``objective: dinov2`` (Cell-DINO, DINO BoC) adds the DINOv2 settings below, defaulted as DINOv2's
``ssl_default_config.yaml``. The settings both objectives share keep DINO's defaults; DINOv2's published values for
them are teacher_temp 0.07 (warm-up from 0.04 over 30 epochs), momentum_teacher 0.992, global_crop_scale
(0.32, 1.0), local_crop_scale (0.05, 0.32), drop_path_rate 0.3 (ViT-L/14: 0.4), norm_last_layer false (its head
trains weight_g), clip_mode global (per sub-network).
The config owner registers :class:`DinoConfig` under the ``dino:`` key; :meth:`DinoConfig.validate` names
offending keys as ``dino.<field>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dinoxfer_lib.bounds import check_bounds
from dinoxfer_lib.errors import require_config as _require


@dataclass(frozen=True)
class DinoConfig:
    """One DINO or DINOv2 recipe: head, loss, multi-crop, augmentations, optimiser, schedules, checkpoints."""

    # --- objective -----------------------------------------------------------------------------------------------
    # dino = DINO's self-distillation on the CLS token (the paper's OpenCell backbone); dinov2 = DINOv2 as Cell-DINO
    # and DINO BoC train: the same plus iBOT's masked-patch loss, the KoLeo regulariser and LayerScale (settings
    # below). Both run through the same trainer, augmentations, DDP, checkpoints and health checks.
    objective: Literal["dino", "dinov2"] = "dino"

    # --- schedule length and batch -------------------------------------------------------------------------------
    # Passes over the training images (paper: 300 for OpenCell). Fewer epochs need a shorter warm-up too.
    epochs: int = 300
    # Images per optimiser step summed over all processes (the "global batch"; official: 64 per GPU). The learning
    # rate scales with it (linear scaling rule), so change this rather than lr when memory allows more.
    batch_size: int = 512
    # Images drawn per epoch (None: every training image once, as official DINO). Set it to give every domain the
    # same number of steps per epoch whatever its corpus size, so `epochs` is a step budget: an epoch then takes
    # this many images from fresh random orders of the corpus (a small corpus is gone through more than once, a
    # large one in part, a new part each epoch). Use it when corpora differ in size and the budget is compute.
    images_per_epoch: int | None = None

    # --- projection head -----------------------------------------------------------------------------------------
    # Prototypes K of the last (weight-normalised) layer (official: 65,536). Tiny data sets and CPUs do well with
    # 1,024-4,096; too few prototypes for the data makes the teacher entropy sit near log(K).
    out_dim: int = 65536
    # Width of the head's hidden layers (official: 2,048).
    hidden_dim: int = 2048
    # Width of the bottleneck that is L2-normalised before the last layer (official: 256).
    bottleneck_dim: int = 256
    # Linear layers before the bottleneck's L2 normalisation (official: 3).
    head_layers: int = 3
    # Fix the last layer's weight_g to 1 (official: true; "makes training more stable"). False can help small ViTs.
    norm_last_layer: bool = True

    # --- loss and temperatures -----------------------------------------------------------------------------------
    # Student softmax temperature (official: 0.1).
    student_temp: float = 0.1
    # Teacher temperature after its warm-up (official: 0.04; "try decreasing it if the training loss does not
    # decrease"; above 0.07 tends to collapse to uniform outputs).
    teacher_temp: float = 0.04
    # Teacher temperature at the start of its linear warm-up (official: 0.04, i.e. no warm-up; 0.04 works well).
    warmup_teacher_temp: float = 0.04
    # Epochs of the teacher-temperature warm-up (official: 0; 30 with a higher teacher_temp).
    warmup_teacher_temp_epochs: int = 0
    # Momentum of the running centre subtracted from teacher outputs (official: 0.9). Centring prevents one-hot
    # collapse, sharpening (low teacher_temp) uniform collapse.
    center_momentum: float = 0.9

    # --- teacher EMA ---------------------------------------------------------------------------------------------
    # EMA momentum of the teacher at the start, rising to 1 on a cosine (official: 0.996; 0.9995 for batches of
    # 256). Runs of only a few hundred steps need less (0.99), or the teacher never moves.
    momentum_teacher: float = 0.996

    # --- optimiser and schedules ---------------------------------------------------------------------------------
    # AdamW peak learning rate per 256 images (official: 5e-4); the used peak is lr * batch_size / 256.
    lr: float = 5e-4
    # Learning rate at the end of the cosine decay (official: 1e-6).
    min_lr: float = 1e-6
    # Epochs of linear learning-rate warm-up from 0 (official: 10).
    warmup_epochs: int = 10
    # Weight decay at the start and end of its cosine schedule (official: 0.04 -> 0.4). Biases and norm weights
    # (every 1-D parameter) get none.
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    # Largest gradient norm, per parameter tensor as the official clip_gradients does (official: 3.0); 0 = off.
    clip_grad: float = 3.0
    # per_parameter = the official rule (each tensor clipped on its own); global = torch's clip_grad_norm_.
    clip_mode: Literal["per_parameter", "global"] = "per_parameter"
    # Epochs during which the head's last layer is kept fixed (official: 1). Raise it if the loss jumps early on.
    freeze_last_layer: int = 1
    # Stochastic depth of the student backbone (official: 0.1).
    drop_path_rate: float = 0.1
    # bf16 autocast on CUDA (official: fp16 with a GradScaler; bf16 needs none). Ignored on CPU (fp32 there).
    mixed_precision: bool = True

    # --- multi-crop ----------------------------------------------------------------------------------------------
    # Small local crops the student sees besides the 2 global ones (official: 8). The teacher sees only globals.
    n_local_crops: int = 8
    # Area range of the 2 global crops, as fractions of the image (paper: 0.4-1.0).
    global_crop_scale: tuple[float, ...] = (0.4, 1.0)
    # Area range of the local crops (paper: 0.05-0.4).
    local_crop_scale: tuple[float, ...] = (0.05, 0.4)
    # Side of the local crops in pixels (paper: 96 at 224 px globals); a multiple of the patch size.
    local_crop_size: int = 96
    # Side of the global crops; None = embed.img_size (the paper: 224 for both). Smaller trains faster on a CPU
    # (cost ~ side^2) at the price of learning at a coarser scale than the backbone later embeds at.
    global_crop_size: int | None = None

    # --- microscopy augmentations (DINO4Cells, Cell-DINO) ---------------------------------------------------------
    # Horizontal and vertical flips, each with this probability (paper: 0.5).
    flip_p: float = 0.5
    # Cell warping: probability of moving one random corner of a crop inward (a perspective transform).
    warp_p: float = 0.5
    # ... by up to this fraction of the crop side (DINO4Cells: 1/4).
    warp_max: float = 0.25
    # Warp the whole image before the crop is drawn, as DINO4Cells does (its field gets a black wedge at the moved
    # corner, and each crop shows a part of the warped field); false warps the crop itself.
    warp_before_crop: bool = False
    # Protein rescaling: with this probability multiply the protein channel by U(0, 2) / its max (paper: 0.2).
    protein_rescale_p: float = 0.2
    # Per-channel brightness and contrast factors ~ N(1, sigma), floored at 0.5; 0 turns them off.
    brightness_sigma: float = 0.1
    contrast_sigma: float = 0.1
    # Random channel drop (Cell-DINO): probability of zeroing one random non-protein channel (0 in the paper).
    channel_drop_p: float = 0.0

    # --- natural images only (official DINO colour augmentations) --------------------------------------------------
    # Colour jitter applied with p = 0.8 (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1), greyscale p = 0.2,
    # Gaussian blur (first global 1.0, second 0.1, locals 0.5), solarisation (second global 0.2).
    color_jitter: bool = True

    # --- DINOv2 only (objective: dinov2; official values from dinov2's ssl_default_config.yaml) -------------------
    # Weight of the iBOT masked-patch loss (official ibot.loss_weight: 1.0); 0 turns masking and the patch head off.
    ibot_loss_weight: float = 1.0
    # Range of the share of patches masked in a masked global crop (official ibot.mask_ratio_min_max: 0.1-0.5). The
    # masked crops' ratios are spread evenly over it.
    mask_ratio_range: tuple[float, ...] = (0.1, 0.5)
    # Share of global crops that get a mask; the others keep every patch (official ibot.mask_sample_probability:
    # 0.5).
    mask_sample_probability: float = 0.5
    # A separate iBOT head for the patch tokens instead of sharing the DINO head (official default: false; the
    # ViT-L/14 and ViT-g/14 recipes: true). Separate heads give the patch loss its own prototypes.
    ibot_separate_head: bool = False
    # Separate iBOT head only: prototypes, hidden width, bottleneck and layers (official: 65,536, 2,048, 256, 3;
    # ViT-L/14: 131,072 prototypes). Small data: as small as out_dim.
    ibot_out_dim: int = 65536
    ibot_hidden_dim: int = 2048
    ibot_bottleneck_dim: int = 256
    ibot_head_layers: int = 3
    # Teacher temperature of the patch targets after the warm-up; None = teacher_temp, as DINOv2 (iBOT: 0.07).
    ibot_teacher_temp: float | None = None
    # Weight of the KoLeo regulariser on the student's global-crop CLS features (official dino.koleo_loss_weight:
    # 0.1). It spreads the features of a batch; raise it if features crowd together (kNN accuracy stalls), 0 = off.
    # Under torchrun it spans the whole global batch, so N processes compute what one does (official: per GPU).
    koleo_loss_weight: float = 0.1
    # How teacher outputs are turned into targets: centering (DINO's running centre; official default) or
    # sinkhorn_knopp (an equal share of the batch per prototype; the ViT-L/14 and ViT-g/14 recipes). Both
    # objectives take it: with DINO, sinkhorn_knopp is the cure when a few prototypes take a large share of each
    # batch (the health check's partial collapse) in short runs with small batches.
    centering: Literal["centering", "sinkhorn_knopp"] = "centering"
    # Sinkhorn-Knopp iterations (official: 3). More make the prototype shares more exactly equal.
    sinkhorn_iterations: int = 3
    # LayerScale's initial value on every residual branch (timm's init_values; official student.layerscale: 1e-5);
    # 0 = no LayerScale, e.g. to start from DINO weights, which have none.
    layerscale_init: float = 1e-5

    # --- checkpoints ---------------------------------------------------------------------------------------------
    # Write the resumable checkpoint every this many epochs (official saveckp_freq: 20) and always at the end.
    checkpoint_every: int = 20

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value: out of its bound
        (:data:`~dinoxfer_lib.bounds.BOUNDS`) or inconsistent with another."""
        check_bounds(self, key)
        _require(self.min_lr <= self.lr, f"{key}.min_lr", self.min_lr, f"<= lr ({self.lr})")
        _require(self.warmup_epochs <= self.epochs, f"{key}.warmup_epochs", self.warmup_epochs,
                 f"<= epochs ({self.epochs})")
        _require(self.warmup_teacher_temp_epochs <= self.epochs, f"{key}.warmup_teacher_temp_epochs",
                 self.warmup_teacher_temp_epochs, f"<= epochs ({self.epochs})")
        for name in ("global_crop_scale", "local_crop_scale"):
            scale = getattr(self, name)
            _require(len(scale) == 2 and scale[0] <= scale[1], f"{key}.{name}", scale,
                     "two fractions 0 < low <= high <= 1")
        if self.global_crop_size is not None:
            _require(self.global_crop_size >= self.local_crop_size, f"{key}.global_crop_size", self.global_crop_size,
                     f">= local_crop_size ({self.local_crop_size})")
        self._validate_dinov2(key)

    def _validate_dinov2(self, key: str) -> None:
        _require(self.objective in ("dino", "dinov2"), f"{key}.objective", self.objective, "dino or dinov2")
        _require(self.centering in ("centering", "sinkhorn_knopp"), f"{key}.centering", self.centering,
                 "centering or sinkhorn_knopp")
        ratios = self.mask_ratio_range
        _require(len(ratios) == 2 and ratios[0] <= ratios[1], f"{key}.mask_ratio_range", ratios,
                 "two fractions 0 <= low <= high < 1")
        if self.objective == "dinov2" and self.ibot_loss_weight > 0:
            _require(ratios[1] > 0, f"{key}.mask_ratio_range", ratios, "a high ratio > 0 while ibot_loss_weight > 0")
            _require(self.mask_sample_probability > 0, f"{key}.mask_sample_probability",
                     self.mask_sample_probability, "> 0 while ibot_loss_weight > 0")


@dataclass(frozen=True)
class DINOv2Config(DinoConfig):
    """The DINOv2 recipe of Cell-DINO and DINO BoC: :class:`DinoConfig` with DINOv2's published defaults.

    Every field :class:`DinoConfig` documents; the values below differ from DINO's. They come from DINOv2's
    ``ssl_default_config.yaml`` (the ViT-L/16 recipe its ``vitl16_short.yaml`` keeps) and, for the microscopy
    augmentations DINOv2 has no counterpart for, from Cell-DINO's ``CellAugmentationDINO`` (paper 002's code in
    facebookresearch/dinov2). A profile's ``dinov2.recipe`` lists only the values that differ from these.
    """

    objective: Literal["dino", "dinov2"] = "dinov2"
    # optim.epochs: 100 (official ImageNet-1k recipe); 003 trains 45,000 iterations at batch 1024.
    epochs: int = 100
    # Global batch the base learning rate is stated for (optim.base_lr "for a batch size of 1024"; 003: 1024).
    batch_size: int = 1024
    # optim.base_lr 0.004 at batch 1024, written per 256 images as DinoConfig scales it (0.004 x 256 / 1024).
    # DINOv2 scales with sqrt(batch / 1024) instead of linearly; both give 0.004 at 1024.
    lr: float = 0.001
    # teacher.teacher_temp 0.07 after a warm-up from 0.04 over 30 epochs.
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 30
    # teacher.momentum_teacher: 0.992 (ViT-L/14 and g/14: 0.994).
    momentum_teacher: float = 0.992
    # DINOv2's head trains its last layer's norm (weight_g is not frozen).
    norm_last_layer: bool = False
    # DINOv2 clips each sub-network's gradient norm as a whole (clip_grad 3.0).
    clip_mode: Literal["per_parameter", "global"] = "global"
    # student.drop_path_rate: 0.3 (ViT-L/14 and g/14: 0.4; 003: 0.1).
    drop_path_rate: float = 0.3
    # crops.global_crops_scale / local_crops_scale.
    global_crop_scale: tuple[float, ...] = (0.32, 1.0)
    local_crop_scale: tuple[float, ...] = (0.05, 0.32)
    # Cell-DINO's augmentations: flips, per-channel brightness and contrast ~ N(1, 0.2), protein rescaling and
    # random removal of one non-protein channel, each with p = 0.2; no cell warping (a DINO4Cells augmentation).
    warp_p: float = 0.0
    brightness_sigma: float = 0.2
    contrast_sigma: float = 0.2
    channel_drop_p: float = 0.2


# The DINOv2-trained backbones this book adds beside the paper's three (papers 002 and 003).
DINOV2_BACKBONES = ("cell_dino", "cell_dino_plus", "dino_boc")
# Domains a bag of channels may draw from: the paper's pretraining domains and its target.
BAG_SOURCES = ("natural", "hpa", "opencell")


@dataclass(frozen=True)
class DINOv2BackbonesConfig:
    """Cell-DINO, Cell-DINO+ and DINO BoC: which of them this profile trains, their DINOv2 recipe, their data.

    Registered under the ``dinov2:`` key; :meth:`validate` names offending keys as ``dinov2.<field>``.
    """

    # Backbones to train beside the paper's three; each adds a Table III row and a cell-line row, dino_boc also a
    # transfer-matrix row. cell_dino = DINOv2 from scratch on the HPA-like domain (002); cell_dino_plus = the same
    # started from the natural-image backbone (002's "+"); dino_boc = one single-channel encoder trained on
    # channels of every pretraining domain (003). [] = the paper's backbones only.
    backbones: tuple[str, ...] = DINOV2_BACKBONES
    # The DINOv2 recipe all three train with (DINOv2Config: DINOv2's published defaults). Chapter 02 lists it
    # beside those defaults. DINO BoC ignores channel_drop_p: its samples have one channel.
    recipe: DINOv2Config = field(default_factory=DINOv2Config)
    # Cell-DINO+'s initial weights: natural = the profile's natural-image backbone (embed.natural_weights: this
    # run's dino/natural stage, or the published weights it names); else a registered weights name or a path.
    # Patch filters of RGB weights are adapted to the HPA-like channels; heads start random.
    plus_init: str = "natural"
    # Cell-DINO+'s LayerScale (its recipe is otherwise `recipe`): 0 for DINO weights, which have none; DINOv2
    # weights carry their own (any value > 0 builds the LayerScale the file then fills). A mismatch is a
    # DataError naming the LayerScale weights.
    plus_layerscale_init: float = 0.0
    # Cell-DINO and Cell-DINO+ train on at most this many HPA-like images (a seeded sample; None = all). Real HPA
    # at full resolution does not fit in memory at once: the paper profile samples.
    max_images: int | None = None
    # DINO BoC: the domains whose channels fill the bag, balanced (003: "balanced sampling across data sources").
    # OpenCell contributes only its non-test images, as its DINO backbone does.
    boc_sources: tuple[str, ...] = BAG_SOURCES
    # DINO BoC: images drawn per source (a seeded sample; None = all); all their channels go into the bag. The bag
    # has the sources' mean channel count times more samples than images, so with the same epochs the encoder
    # takes that many times more steps than a joint-channel model on the same images (003's rule). Fewer images
    # make it cheaper; demo chooses the count that gives it Cell-DINO's step count (equal CPU budget).
    boc_images_per_source: int | None = None
    # The cell-line task (002's CL task) probes at most this many HPA-like images (a seeded sample; None = all): its
    # probes train one model per set, probe and fold, so on a CPU the task's cost grows with the corpus.
    cell_line_images: int | None = None

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value."""
        check_bounds(self, key)
        unknown = [b for b in self.backbones if b not in DINOV2_BACKBONES]
        _require(not unknown and len(set(self.backbones)) == len(self.backbones), f"{key}.backbones",
                 list(self.backbones), f"distinct names among {', '.join(DINOV2_BACKBONES)}")
        self.recipe.validate(f"{key}.recipe")
        _require(self.recipe.objective == "dinov2", f"{key}.recipe.objective", self.recipe.objective,
                 "dinov2 (Cell-DINO and DINO BoC train with DINOv2)")
        _require(bool(self.plus_init), f"{key}.plus_init", self.plus_init, "natural, a weights name or a path")
        if self.max_images is not None:
            _require(self.max_images >= self.recipe.batch_size, f"{key}.max_images", self.max_images,
                     f">= recipe.batch_size ({self.recipe.batch_size}), or null for all images")
        unknown = [s for s in self.boc_sources if s not in BAG_SOURCES]
        _require(bool(self.boc_sources) and not unknown and len(set(self.boc_sources)) == len(self.boc_sources),
                 f"{key}.boc_sources", list(self.boc_sources), f"distinct domains among {', '.join(BAG_SOURCES)}")
