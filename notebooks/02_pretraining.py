# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # DINO pretraining
#
# **What you will see**
# - The DINO recipe of this profile beside the paper's, and one backbone trained per domain.
# - Training curves with the collapse check, attention maps and patch-feature PCA.
# - Whether the trained OpenCell backbone beats the same network with random weights.
#
# **Question.** Can self-distillation without labels (DINO) give a backbone features that localise proteins? The paper
# uses two published DINO ViT-B/8 backbones (ImageNet-1k; HPA fields of view, DINO4Cells) and trains a third from
# scratch on OpenCell's 90 % split. This chapter trains this profile's backbone on each domain with the same
# recipe — multi-crop, teacher centring and sharpening, an EMA teacher, AdamW with warm-up and cosine schedules, the
# DINO4Cells microscopy augmentations — and checks what the training did: its curves, where the attention goes, and
# whether the trained OpenCell backbone beats the same network with random weights. It then trains the backbones of
# two later papers with DINOv2 — Cell-DINO and Cell-DINO+ (Moutakanni et al. 2025) and DINO BoC (a single-channel
# encoder; *Scaling channel-invariant self-supervised learning for microscopy images*) — and compares the objectives.
#
# ## Overview
# 1. The recipe of this profile, beside the paper's.
# 2. Training (or reusing) the backbones; training curves and the health checks.
# 3. Attention maps and patch-feature PCA on example cells.
# 4. Trained vs random weights on held-out macro F1, with paired intervals.
# 5. DINOv2: Cell-DINO, Cell-DINO+ and DINO BoC, their recipe and budget, curves and attention.
# 6. Cell-DINO's second task, the cell line of HPA-like images, and the objectives compared with paired per-fold
#    differences.
#
# ## Prerequisites
# *Datasets*. The OpenCell backbone trains only on the non-test images of the split by image, so the
# probes' test images are never seen, not even without labels. On `demo` a few CPU minutes; `paper` is GPU work
# (`torchrun`, see *Running on real data and a GPU*). Later chapters read the backbones from the store
# (`runs/<profile>/dino/<domain>/teacher_backbone.safetensors`).

# %% tags=["parameters", "remove-cell"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %% tags=["remove-input"]
# %matplotlib inline
from IPython.display import Markdown, display

from dinoxfer_lib import pipeline
from dinoxfer_lib.dino import inspect
from dinoxfer_lib.pl import dino as pl_dino
from dinoxfer_lib.report import classifier, common, pretraining

common.use_book_style()
run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
datasets = pipeline.load_datasets(run)
display(Markdown(common.data_banner(datasets, profile=run.config.profile)))

# %% [markdown]
# ## The recipe
#
# Every value comes from the profile's `dino` section; "paper" is the paper's value where it states one, else the
# official DINO default it builds on (PAPER_SPEC §4). CPU profiles train a small ViT on small crops for a few
# epochs; the differences are marked.

# %%
pretraining.dino_recipe_table(run.config.dino)

# %% [markdown]
# The `demo` recipe is chosen for what a CPU affords, and the table marks each difference. With a few hundred steps
# DINO's running centre lags behind a quickly moving teacher: half of each batch lands on one prototype (a partial
# collapse the loss does not show), and the official teacher temperature stays near-uniform. `demo` therefore uses a
# sharper, faster teacher than the official one, gives every domain the same number of steps
# (`images_per_epoch`), whatever its corpus size, and replaces the running centre by Sinkhorn-Knopp targets
# (DINOv2's equipartition, `dino.centering: sinkhorn_knopp`: each prototype takes an equal share of the batch); the
# health checks below say whether the teachers stayed healthy. The number of epochs was chosen on the measured
# frontier that *Classifier and results* shows: F1 against CPU minutes of DINO. *Deviations and choices* lists the
# measurements behind each choice.

# %% [markdown]
# ## Training the backbones
#
# Natural images (3 channels, DINO's colour augmentations), HPA (4 channels) and OpenCell
# (2 channels, non-test images only), each from scratch with the profile's architecture. OpenCell is trained twice:
# once on the non-test images of the split by image (Table III, as the paper), once on those of the split grouped by
# protein (the grouped Table III), so no probe is tested on images its backbone saw. A stage is reused when its
# recipe and data are unchanged; an interrupted run resumes from its last checkpoint. Domains whose profile names
# published weights (`embed.<domain>_weights`, as `paper` does for ImageNet and HPA) are not trained here.

# %%
dino_runs = pipeline.load_dino_runs(run)
pretraining.dino_summary_table(dino_runs)

# %% [markdown]
# ### Training curves
#
# Loss, teacher entropy (a collapse to uniform outputs sits at log K, a collapse to one prototype at 0), the KL
# between the teacher's outputs for the two global views, and the schedules. Shaded steps are those the collapse
# detector flagged.

# %%
pl_dino.plot_training_curves({domain: dino_run.history for domain, dino_run in dino_runs.items()},
                             out_dim=run.config.dino.out_dim)

# %% [markdown]
# ### Health checks
#
# A run is healthy when, over the last tenth of its steps, the loss has fallen (to at most 0.8 of the first tenth's)
# and stayed down (at most 0.25 nats above its lowest tenth), the teacher is not uniform (entropy below 0.95 log K)
# and no prototype takes more than a quarter of a batch (a partial collapse: the centring has lost to one
# prototype, and the features of most images look alike).

# %%
health = pretraining.health_table(dino_runs, out_dim=run.config.dino.out_dim)
health

# %%
display(Markdown(pretraining.health_note(health)))

# %% [markdown]
# ## Where does the trained backbone look?
#
# DINO's CLS token attends to objects without being told what an object is. For a few OpenCell test images:
# each head's attention from the CLS token of the last block to every patch, and (Cell-DINO) the first three
# principal components of the patch features shown as RGB.

# %%
backbone = pipeline.load_backbones(run, ("opencell",))["opencell"]
opencell = datasets["opencell"]
examples = pipeline.load_split(run, "opencell", grouped=False).test[:4]  # images DINO never saw
x = inspect.prepare_images(opencell.images[examples], img_size=run.config.embed.img_size)
pl_dino.plot_attention_maps(opencell.images[examples], inspect.cls_attention(backbone.model, x),
                            channel_names=opencell.channel_names)

# %%
pl_dino.plot_patch_pca(opencell.images[examples], inspect.patch_pca_rgb(backbone.model, x),
                       channel_names=opencell.channel_names)

# %% [markdown]
# ## Trained vs random weights
#
# The paper's probe (this profile's recipe, split by image) on the OpenCell images embedded by the trained
# backbone and by the same architecture with random weights. A random ViT is a surprisingly strong baseline on
# small images; DINO must beat it to have learned anything the probe can use.

# %%
trained_vs_random = pipeline.load_trained_vs_random(run)
comparison = classifier.table_iii(trained_vs_random)
comparison[["set", "test_f1_mean", "test_f1_std", "val_f1_mean", "train_f1_mean"]].round(4)

# %% [markdown]
# Both rows are scored on the same test images by fold models trained on the same folds, so their difference is
# read pair by pair: per fold (a t interval over the five differences), and by a paired bootstrap over the test
# images (the same 1,000 resamples for both rows).

# %%
paired = pretraining.trained_vs_random(trained_vs_random, opencell.labels, seed=run.config.seed)
paired.round(4)

# %%
display(Markdown(pretraining.trained_vs_random_note(comparison, paired)))

# %% [markdown]
# ## DINOv2: Cell-DINO, Cell-DINO+ and DINO BoC
#
# DINOv2 keeps DINO's self-distillation on the CLS token and adds three things: an iBOT loss (the student sees some
# of its global crops with patches masked out and predicts the teacher's patch tokens there), the KoLeo regulariser
# (it spreads a batch's CLS features apart) and LayerScale on every residual branch. The book trains three backbones
# with it (`dinov2.backbones`):
#
# - **Cell-DINO** (paper 002): DINOv2 from scratch on the HPA-like images, all four channels at once;
# - **Cell-DINO+**: the same, started from the natural-image backbone (`dinov2.plus_init`); its RGB patch filters
#   are adapted to four channels, and it has no LayerScale, because DINO weights have none;
# - **DINO BoC** (paper 003): one single-channel encoder trained on single channels drawn in equal numbers from
#   every domain (`dinov2.boc_sources`), each channel scaled on its own. A sample is one channel instead of an image,
#   so as 003 prescribes it takes the sources' mean channel count times more steps than a joint-channel model on the
#   same images; at embedding time each channel of any image goes through it alone and the features are
#   concatenated.
#
# The recipe below is this profile's; "DINOv2 default" is DINOv2's published configuration (with Cell-DINO's
# microscopy augmentations), "DINO / paper" the DINO defaults the paper's backbones build on.

# %%
pretraining.dinov2_recipe_table(run.config.dinov2.recipe)

# %% [markdown]
# ### Training budgets
#
# On `demo` the DINOv2 recipe is the DINO recipe above with the objective switched, and each DINOv2 backbone takes
# Cell-DINO's number of steps (DINO BoC on fewer source images, `dinov2.boc_images_per_source`): the comparisons
# below are at equal CPU budget, and the table shows what each run cost.

# %%
dinov2_runs = pipeline.load_dinov2_runs(run)
budgets = pretraining.training_budget_table({**dino_runs, **dinov2_runs})
budgets

# %%
display(Markdown(pretraining.budget_note(budgets)))

# %% [markdown]
# ### Training curves of the objectives
#
# The DINO term is the same cross-entropy in both objectives (for a DINO run it is the whole loss), so its curves
# compare directly; the teacher entropy is the collapse check (the table's last column says whether a collapse was
# flagged). The iBOT and KoLeo terms exist only for the DINOv2 runs.

# %%
pl_dino.plot_objective_curves({name: r.history for name, r in {**dino_runs, **dinov2_runs}.items()})

# %% [markdown]
# ### Where do they look?
#
# Last-block CLS attention, averaged over heads, of the backbones this run trained on the HPA-like images, on the
# same four images; DINO BoC sees the protein channel alone.

# %%
hpa = datasets["hpa"]
hpa_backbones = pipeline.load_backbones(run, ("hpa", *run.config.dinov2.backbones))
attention = inspect.mean_attention(pretraining.attention_backbones(hpa_backbones, hpa.channel_names), hpa.images[:4],
                                   img_size=run.config.embed.img_size, channel_names=hpa.channel_names)
pl_dino.plot_attention_comparison(hpa.images[:4], attention, channel_names=hpa.channel_names)

# %% [markdown]
# ### Cell-line classification (Cell-DINO's second task)
#
# Cell-DINO evaluates its HPA backbones on two tasks: protein localisation and the cell line an image comes from. The
# same probes as Table III (the paper's MLP, linear, k-NN; this profile's recipe) predict each HPA-like image's cell
# line from the embedding of each backbone, on a fresh stratified split of the HPA-like images with the split
# settings of Table III. Test macro F1 over the cell lines, mean ± std over the fold models. The probes are Table
# III's multilabel ones, so an image none of whose lines reaches probability 0.5 gets no line: where the MLP falls
# far below the linear and k-NN probes on one set, that is the probe's decision rule, not the embedding.

# %%
cell_lines = pipeline.load_cell_line_results(run) if pipeline.has_cell_lines(run) else None
pretraining.cell_line_table(cell_lines) if cell_lines else Markdown(pretraining.NO_CELL_LINES)

# %% [markdown]
# ### The objectives compared
#
# Each comparison changes one choice: the objective (DINO vs DINOv2 on the HPA-like images from scratch), the
# initialisation (scratch vs the natural-image backbone) or the channel handling (joint vs bag of channels). The
# localisation rows are the Table III sets of *Classifier and results* (the paper's MLP on the OpenCell-like images);
# every fold model of one set is paired with the same fold's model of the other, so each fold gives one difference.
# The interval is a t-interval over the folds.

# %%
differences = pretraining.paired_differences({"OpenCell localisation": pipeline.load_probe_results(run),
                                              "HPA cell line": cell_lines})
differences.drop(columns=["from", "to", "std"]).round(4)  # the choice names the two sets

# %%
display(Markdown(pretraining.objectives_note(differences, synthetic=opencell.synthetic)))

# %% [markdown]
# ## Provenance

# %%
common.provenance_table(run.store, [r.artifact.name for r in {**dino_runs, **dinov2_runs}.values()]
                        + (["probes/hpa_cell_line"] if cell_lines else []))

# %% [markdown]
# ## What this means

# %%
display(Markdown(pretraining.what_this_means(dino_runs, comparison, out_dim=run.config.dino.out_dim, paired=paired)))

# %% [markdown]
# ## Summary
#
# - Each backbone is stored as `teacher_backbone.safetensors` (the teacher, as DINO evaluates) beside a checkpoint
#   in the official DINO layout (`student`, `teacher`, `optimizer`, `epoch`, `args`, `dino_loss`), the per-step
#   history and a summary with the device and images/s.
# - On a GPU cluster: `torchrun --nproc_per_node 8 -m dinoxfer_lib.pipeline.dino --profile paper --domain opencell`
#   writes the same stage; the notebook then reuses it (`--domain cell_dino` etc. for the DINOv2 backbones).
# - The DINOv2 backbones are stored the same way under `runs/<profile>/dino/<name>/`, with `training_data.json`
#   saying what each trained on; *Embeddings* adds their Table III rows and *Domain shift* DINO BoC's transfer row.
#
# **What's next:** *Embeddings* embeds the OpenCell images with these backbones.
#
# ## References
# - Caron et al. (2021). Emerging properties in self-supervised vision transformers (DINO). *ICCV*.
# - Doron et al. (2023). Unbiased single-cell morphology with self-supervised vision transformers (DINO4Cells).
# - Moutakanni et al. (2025). Cell-DINO: self-supervised image-based embeddings for cell fluorescent microscopy.
#   *PLoS Comput Biol*. Patch-feature PCA views, the cell-line task.
# - Oquab et al. (2024). DINOv2: learning robust visual features without supervision. *TMLR*.
# - Scaling channel-invariant self-supervised learning for microscopy images (DINO BoC; anonymous, under review).
