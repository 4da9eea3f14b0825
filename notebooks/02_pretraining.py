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
# **Question.** Can self-distillation without labels (DINO) give a backbone features that localise proteins? The paper
# uses two published DINO ViT-B/8 backbones (ImageNet-1k; HPA fields of view, DINO4Cells) and trains a third from
# scratch on OpenCell's 90 % split. This chapter trains this profile's backbone on each domain with the same
# recipe — multi-crop, teacher centring and sharpening, an EMA teacher, AdamW with warm-up and cosine schedules, the
# DINO4Cells microscopy augmentations — and checks what the training did: its curves, where the attention goes, and
# whether the trained OpenCell backbone beats the same network with random weights.
#
# ## Overview
# 1. The recipe of this profile, beside the paper's.
# 2. Training (or reusing) the backbones; training curves and the health checks.
# 3. Attention maps and patch-feature PCA on example cells.
# 4. Trained vs random weights on held-out macro F1, with paired intervals.
#
# ## Prerequisites
# *Datasets*. The OpenCell backbone trains only on the non-test images of the split by image, so the
# probes' test images are never seen, not even without labels. On `demo` a few CPU minutes; `paper` is GPU work
# (`torchrun`, see *Running on real data and a GPU*). Later chapters read the backbones from the store
# (`runs/<profile>/dino/<domain>/teacher_backbone.safetensors`).

# %% tags=["parameters"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %%
# %matplotlib inline
from IPython.display import Markdown, display

from dinoxfer_lib import pipeline
from dinoxfer_lib.dino import inspect
from dinoxfer_lib.pl import dino as pl_dino
from dinoxfer_lib.report import classifier, common, pretraining

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
# collapse the loss does not show), and the official teacher temperature stays near-uniform. `demo` therefore makes
# the teacher's targets with Sinkhorn-Knopp (DINOv2's equipartition), which gives every prototype its share of each
# batch, and gives every domain the same number of steps (`images_per_epoch`), whatever its corpus size. *Deviations
# and choices* lists the measurements behind each choice.

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
for domain, dino_run in dino_runs.items():
    display(Markdown(f"**{domain}**"))
    display(pl_dino.plot_training_curves(dino_run.history, out_dim=run.config.dino.out_dim))

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
# ## Provenance

# %%
common.provenance_table(run.store, [dino_run.artifact.name for dino_run in dino_runs.values()])

# %% [markdown]
# ## Summary
#
# - Each backbone is stored as `teacher_backbone.safetensors` (the teacher, as DINO evaluates) beside a checkpoint
#   in the official DINO layout (`student`, `teacher`, `optimizer`, `epoch`, `args`, `dino_loss`), the per-step
#   history and a summary with the device and images/s.
# - On a GPU cluster: `torchrun --nproc_per_node 8 -m dinoxfer_lib.pipeline.dino --profile paper --domain opencell`
#   writes the same stage; the notebook then reuses it.
#
# **What's next:** *Embeddings* embeds the OpenCell images with these backbones.
#
# ## References
# - Caron et al. (2021). Emerging properties in self-supervised vision transformers (DINO). *ICCV*.
# - Doron et al. (2023). Unbiased single-cell morphology with self-supervised vision transformers (DINO4Cells).
# - Cell-DINO (2025): patch-feature PCA views.
