# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Embeddings
#
# **What you will see**
# - Where each backbone's weights come from, and what each channel strategy feeds it.
# - The Table III embedding sets: widths, images and throughput.
# - Whether nearest neighbours share localisation before any probe is trained.
#
# **Question.** How does a backbone pretrained on one channel set (RGB photographs, 4-channel HPA fields of view)
# embed 2-channel OpenCell images, and do the embeddings carry localisation before any classifier sees a label?
# This chapter reproduces the paper's *Embedding Methods* section: channel mapping and channel replication for the
# two foreign backbones, the native OpenCell backbone, and — the book's extension — the DINOv2 backbones Cell-DINO,
# Cell-DINO+ and DINO BoC, a single-channel encoder that embeds each channel alone (bag of channels).
#
# ## Overview
# 1. The backbones of the profile and where their weights come from.
# 2. What each channel strategy feeds a backbone.
# 3. The Table III embedding sets: dimensions and throughput.
# 4. A label-free sanity check: do nearest neighbours share localisation?
#
# ## Prerequisites
# *Datasets* (the OpenCell images). Backbones are the *DINO pretraining* chapter's store stages
# (`runs/<profile>/dino/<domain>/`, trained here first if that chapter has not run) or published checkpoints named in
# the profile — the table below says which. CPU: about a minute on `demo`; GPU for `paper`.

# %% tags=["parameters", "remove-cell"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %% tags=["remove-input"]
# %matplotlib inline
from IPython.display import Markdown, display

from dinoxfer_lib import pipeline
from dinoxfer_lib.pl import embeddings as pl_embeddings
from dinoxfer_lib.report import common, embeddings as report_embeddings
from dinoxfer_lib.tl import neighbours

common.use_book_style()
run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
opencell = pipeline.load_datasets(run, ("opencell",))["opencell"]
display(Markdown(common.data_banner({"opencell": opencell}, profile=run.config.profile)))

# %% [markdown]
# ## Backbones
#
# The paper uses the official DINO ViT-B/8 trained on ImageNet-1k, the DINO4Cells ViT-B/8 trained on HPA fields of
# view (4 input channels), and a ViT-B/8 it trains on OpenCell; the book adds the DINOv2 backbones of *DINO
# pretraining* (`dinov2.backbones`). Each row says where this run's backbone came from.

# %%
backbones = pipeline.load_backbones(run, (*pipeline.DOMAINS, *run.config.dinov2.backbones))
report_embeddings.backbone_table(backbones, arch=run.config.embed.arch)

# %%
display(Markdown(report_embeddings.backbone_note(backbones)))

# %% [markdown]
# ## Channel strategies
#
# OpenCell images have two channels (protein, nucleus). *Channel mapping* places each in the input slot with the
# same meaning and leaves the others black: one forward pass. *Channel replication* copies each channel alone into
# every slot, embeds it separately and concatenates the embeddings (2 × the width). *Bag of channels* passes each
# channel through a single-channel encoder (DINO BoC, trained on single channels of every domain in *DINO
# pretraining*) and concatenates. Every channel is first scaled to [0, 1] between its own 1st and 99.8th
# percentile in each image; backbones trained on photographs then get ImageNet's mean and standard deviation.

# %%
example = report_embeddings.strategy_example(opencell)
pl_embeddings.plot_channel_strategies(opencell.images[example], opencell.channel_names)

# %% [markdown]
# ## The embedding sets
#
# One set per row of the paper's Table III, plus one per DINOv2 backbone the profile trains (`dinov2.backbones`):
# Cell-DINO and Cell-DINO+ read the OpenCell channels by channel mapping into their HPA slots, DINO BoC encodes each
# channel alone. Throughput is measured by this run on its device.

# %%
embeddings = pipeline.load_embeddings(run)
report_embeddings.embedding_table(embeddings)

# %% [markdown]
# ## Do neighbours share localisation?
#
# Before any probe is trained: for each image, the share of its 10 nearest neighbours (cosine) that share at least
# one label with it, against chance (random pairs). Images of one protein share its labels, so the check is repeated
# with same-protein neighbours excluded — that version cannot be won by recognising the protein.

# %%
agreement = neighbours.agreement_table(embeddings, k=10, seed=run.config.seed)
agreement.round(3)

# %%
pl_embeddings.plot_neighbour_agreement(agreement)

# %%
display(Markdown(report_embeddings.agreement_note(agreement)))

# %% [markdown]
# ## What this means

# %%
display(Markdown(report_embeddings.what_this_means(embeddings, agreement)))

# %% [markdown]
# ## Summary
#
# - Mapping needs one forward pass and keeps the backbone's width; replication needs one pass per channel and
#   doubles the width for OpenCell; bag of channels works for any channel count.
# - The embeddings are stored as AnnData (`runs/<profile>/embeddings/<set>/embeddings.h5ad`: X = embeddings,
#   obs = image metadata, `uns["embedding"]` = backbone, strategy, feature, device) and open directly in scanpy.
#
# **What's next:** the classifier chapter trains the paper's MLP probe on each set (Table III).
#
# ## References
# - Caron et al. (2021). Emerging properties in self-supervised vision transformers (DINO). *ICCV*.
# - Doron et al. (2023). Unbiased single-cell morphology with self-supervised vision transformers (DINO4Cells).
# - Scaling channel-invariant self-supervised learning for microscopy images (DINO BoC; anonymous, under review).
# - Moutakanni et al. (2025). Cell-DINO: self-supervised image-based embeddings for cell fluorescent microscopy.
