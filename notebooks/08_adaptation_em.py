# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Adaptation and EM
#
# **What you will see**
# - Frozen features against LoRA and full fine-tuning of the backbone, scored on Table III's folds and test images.
# - Paper 004's EM study: a light segmentation head on frozen features against LoRA, one dataset or both.
# - Chapter 07's representation diagnostics on the two EM domains, and 004's findings beside this run's numbers.
#
# **Question.** Does adapting the backbone itself, with low-rank adapters (LoRA) or full fine-tuning, localise
# proteins better than the paper's MLP on frozen features? And does the electron-microscopy study of paper 004
# (Lucchi++ and VNC, a frozen backbone with a light segmentation head against LoRA) hold here: good segmentation
# within one dataset, LoRA helping in-domain, training on both datasets failing, and representations that tell the
# two datasets apart? Paper 001 names fine-tuning as its future work; paper 004 studies it on EM.
#
# ## Overview
# 1. Which Table III set is adapted, and the adaptation recipe.
# 2. Frozen, LoRA and full fine-tuning beside Table III: paired differences per fold, trainable parameters, time.
# 3. The EM domain pair.
# 4. Segmentation: 004's table (one dataset or both, frozen or LoRA, in-domain and cross-domain foreground IoU),
#    and predicted masks over true ones.
# 5. The representation diagnostics of chapter 07 on the two EM domains.
# 6. Each finding of 004's abstract beside what this run measured.
# 7. Which of 004's backbones load here.
#
# ## Prerequisites
# *Classifier* (Table III: the adapted set is chosen on its validation F1, and the adapted models are compared
# with its MLP fold by fold), *DINO pretraining* (the book's backbones; seeded random initialisations where none
# exist yet). On `demo` the chapter takes a few minutes on a 2-core CPU: each adapted model runs the backbone
# forward and backward, so the CPU profiles train for few steps (the tables say how many). The `paper` profile
# fine-tunes ViT-B/8 on real OpenCell images and segments real Lucchi++ and VNC patches: a GPU.

# %% tags=["parameters", "remove-cell"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %% tags=["remove-input"]
# %matplotlib inline
from IPython.display import Markdown, display

from dinoxfer_lib import pipeline
from dinoxfer_lib.pl import adaptation as pl_adaptation, analysis as pl_analysis
from dinoxfer_lib.report import adaptation as report_adaptation, common
from dinoxfer_lib.tl import shift

common.use_book_style()
run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
opencell = pipeline.load_datasets(run, ("opencell",))["opencell"]
em = pipeline.load_em_data(run)
display(Markdown(common.data_banner({"opencell": opencell, **em}, profile=run.config.profile)))

# %% [markdown]
# ## Which set is adapted
#
# Every adapted model starts from the backbone and channel strategy of one Table III embedding set and is scored
# exactly as that set's MLP was: the same split by image, the same folds, the same untouched test images, macro F1
# at threshold 0.5. By default (`adapt.sets: [best_val]`) the set is the one whose MLP did best on the folds'
# **validation** images in Table III, so the choice never sees a test image.

# %%
table_iii = pipeline.load_probe_results(run)
adapted_sets = pipeline.adapted_sets(run)
display(Markdown(report_adaptation.choice_note(table_iii, adapted_sets, configured=run.config.adapt.sets)))

# %% [markdown]
# Three regimes, each with the paper's MLP as its head (`probe.hidden`, `probe.dropout`) and the probes'
# resampling of rare labels:
#
# - **frozen + MLP (adaptation recipe)**: only the head trains, on the cached frozen features, with this
#   section's optimiser (`adapt.head_epochs` epochs, or `adapt.epochs` when that is 0): the matched baseline for
#   the next two (Table III's MLP keeps the paper's recipe);
# - **LoRA + MLP**: low-rank adapters on the attention projections (Hugging Face `peft`, `adapt.lora`) train with
#   the head; every pretrained weight stays as it was;
# - **full fine-tuning + MLP**: every weight trains, blocks nearer the input at lower learning rates (layer-wise lr
#   decay `adapt.layer_decay`, timm's grouping).
#
# With `adapt.head_epochs` > 0, LoRA and full fine-tuning start from a copy of the frozen regime's trained head
# and train `adapt.epochs` more (linear probing, then fine-tuning: LP-FT, Kumar et al. 2022), so their steps
# through the backbone refine a trained head instead of a random one. The recipe of this run:

# %%
report_adaptation.settings_table(run.config.adapt)

# %% [markdown]
# ## Frozen, LoRA and full fine-tuning beside Table III
#
# Test macro F1 (mean ± std over the fold models), validation and training F1, what each regime trains and how
# long a fold took on this run's device. The first row of each set is Table III's own MLP, read from chapter 04's
# result (all five folds).

# %%
adapted = pipeline.load_adaptation(run)
table = report_adaptation.adaptation_table(table_iii, adapted)
report_adaptation.format_adaptation_table(table)

# %% [markdown]
# **Paired differences.** Fold k of a regime and fold k of Table III's MLP trained on the same images and were
# scored on the same test images, so their difference cancels what the folds share (the difficulty of the test
# images, the fold's luck). Below: the mean difference over the folds both have, with a 95 % Student t interval;
# "resolved" when it excludes zero. The folds overlap in most of their training images, so the interval is
# optimistic (Nadeau & Bengio 2003): it measures the recipe's randomness, not a new draw of test images.

# %%
differences = report_adaptation.paired_differences(report_adaptation.fold_scores(table_iii, adapted))
differences.round(4)

# %%
pl_adaptation.plot_adaptation(table, differences)

# %%
display(Markdown(report_adaptation.adaptation_note(table, differences)))

# %% [markdown]
# ## The EM pair
#
# Lucchi++ (mouse hippocampus, FIB-SEM, isotropic 5 nm voxels) and VNC (*Drosophila* larval nerve cord, serial-
# section TEM, 50 nm sections) are both 8-bit greyscale images of neuropil with dark membranes and dark, striped
# mitochondria, and both come with binary mitochondria masks. Their synthetic stand-ins share one tissue model (the
# same mitochondria shapes at the same density) and differ only where the real pair differs: isotropic vs thick
# sections, membrane density, contrast, texture and noise (`dinoxfer_lib.data.em`). Test patches come from tissue
# blocks (or sections) no training patch comes from.

# %%
report_adaptation.em_summary(em)

# %% [markdown]
# ## Segmentation: one dataset or both, frozen or LoRA
#
# For each backbone of `seg.backbones`, a light head on the last block's patch tokens (`seg.head`: a small
# convolutional decoder, upsampled to the pixels) is trained with Dice + BCE, either on the frozen backbone (tokens
# computed once) or with LoRA adapters training alongside (from the frozen model's head when `seg.head_epochs` >
# 0, as above); on Lucchi++ alone, on VNC alone, and on both jointly (`seg.joint_sampling`). Every model is scored
# on both domains' test patches by foreground IoU pooled over all their pixels: in-domain where it trained on that
# domain, cross-domain where it did not. The EM patch goes into each backbone as a grey image copied into every
# input channel, scaled from the 8-bit range and standardised as that backbone was trained. The backbones and
# where their weights come from:

# %%
studies = pipeline.load_seg_studies(run)
results = {name: study.result for name, study in studies.items()}
report_adaptation.backbone_table({name: study.backbone for name, study in studies.items()})

# %% [markdown]
# 004's table, one block per backbone; the last row is the IoU of calling every pixel mitochondrion, which any
# useful head must beat.

# %%
baseline = report_adaptation.foreground_baseline(em)
report_adaptation.seg_table(results, baseline=baseline).round(3)

# %% [markdown]
# The same numbers as bars: coloured by the data a model trained on (black: both), LoRA hatched, in-domain bars
# outlined.

# %%
pl_adaptation.plot_seg_iou(report_adaptation.seg_scores(results))

# %% [markdown]
# What each model trained and how long it took (the frozen models share one computation of every patch's tokens,
# `token_cache_s`):

# %%
report_adaptation.seg_costs(results)

# %% [markdown]
# ## Predicted and true masks
#
# Test patches spread over each domain's test split. First column: the patch with its true mask; then each model's
# prediction: yellow where it agrees with the true mask, magenta where it marks background as mitochondrion, cyan
# where it misses a mitochondrion.

# %%
for name, study in studies.items():
    display(pl_adaptation.plot_seg_overlays(em, study.result, title=f"backbone: {name}"))

# %% [markdown]
# ## The two EM domains in each backbone's feature space
#
# Chapter 07's diagnostics on every EM patch (training and test), embedded by each frozen backbone (its CLS
# token): the first two principal components of both domains together, the Fréchet distance between the domains
# with its within-domain floor (what sampling noise alone gives at the same sample size), and a logistic regression
# that tells the two domains apart (chance 50 %).

# %%
embeddings = {name: study.embeddings for name, study in studies.items()}
pl_analysis.plot_pca_by_domain({name: shift.pooled_pca(per, seed=run.config.seed)
                                for name, per in embeddings.items()})

# %%
frechet, probes = shift.shift_tables(embeddings, resamples=run.config.analysis.resamples,
                                     folds=run.config.analysis.domain_probe_folds, seed=run.config.seed)
frechet.round(3)

# %%
pl_analysis.plot_frechet(frechet)

# %%
probes.round(3)

# %%
pl_analysis.plot_domain_probe(probes)

# %%
display(Markdown(report_adaptation.em_shift_note(frechet, probes)))

# %% [markdown]
# ## Paper 004's findings, measured here
#
# Each finding of 004's abstract, the rule this chapter applies to decide whether it holds in this run (over every
# backbone and domain), what was measured, and the verdict: reproduced (holds everywhere), partly (somewhere),
# not reproduced, or not testable here.

# %%
findings = report_adaptation.findings_table(results, frechet, probes, baseline=baseline,
                                            synthetic=any(patches.synthetic for patches in em.values()))
report_adaptation.format_findings(findings)

# %% [markdown]
# ## Backbones for 004's comparison
#
# 004 compares DINOv2, DINOv3 and OpenCLIP. `seg.backbones` takes any of the weights below that load here by name,
# one line each (after `dinoxfer fetch NAME`), beside the book's own backbones (`natural`, `hpa`, `opencell`, or
# `store:<stage>` for another backbone this book trained). DINOv2's backbone-only checkpoints load in their
# published layout; OpenCLIP's ViT-B/16 image tower loads in the layout timm publishes it in (CLIP's pre-norm
# included). DINOv3 does not load: timm builds it as a different model (rotary position embeddings, register
# tokens), which the loader does not fill yet.

# %%
report_adaptation.comparison_backbones(run.config.seg.backbones)

# %% [markdown]
# ## Wall time

# %%
common.provenance_table(run.store, pipeline.adaptation_stages(run))

# %% [markdown]
# ## Reading the results honestly

# %%
display(Markdown(report_adaptation.reading_note(em, run.config.adapt)))

# %% [markdown]
# ## What this means

# %%
display(Markdown(report_adaptation.what_this_means(differences, findings)))

# %% [markdown]
# ## Summary
# - The adapted regimes are scored on Table III's folds and test images, and compared with its MLP fold by fold.
# - 004's segmentation table is reproduced in shape: training set × regime × test domain, foreground IoU, against
#   the IoU of predicting all foreground.
# - Chapter 07's diagnostics (PCA, Fréchet distance with its floor, domain probe) apply unchanged to EM patches.
# - Adding a backbone to the comparison is one line of `seg.backbones`.
#
# ## References
# - Hu et al. (2022). LoRA: Low-rank adaptation of large language models. *ICLR*.
# - Kumar et al. (2022). Fine-tuning can distort pretrained features and underperform out-of-distribution (LP-FT).
#   *ICLR*.
# - Bao et al. (2022). BEiT: BERT pre-training of image transformers (layer-wise lr decay). *ICLR*.
# - Nadeau & Bengio (2003). Inference for the generalization error. *Machine Learning* 52.
# - Casser et al. (2020). Fast mitochondria detection for connectomics (Lucchi++). *MIDL*.
# - Gerhard et al. (2013). Segmented anisotropic ssTEM dataset of neural tissue (VNC). *figshare*.
# - Oquab et al. (2024). DINOv2: Learning robust visual features without supervision. *TMLR*.
# - Cherti et al. (2023). Reproducible scaling laws for contrastive language-image learning (OpenCLIP). *CVPR*.
