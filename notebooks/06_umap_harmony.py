# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # UMAP and Harmony
#
# **What you will see**
# - UMAPs of every Table III set by plate and by localisation, before and after Harmony.
# - Batch-mixing and label scores, and the probe on the corrected embeddings.
# - The same for HPA images with plate and cell line as covariates.
#
# **Question.** Do the embeddings group images by localisation or by the plate they were imaged on, and does
# removing the plate effect with Harmony keep what the probe needs? Cell-DINO (Moutakanni et al. 2025) harmonises
# its HPA embeddings with cell line as the covariate and shows UMAPs coloured by localisation; this chapter does
# the same for every Table III embedding set, and adds **scores** to the pictures: batch mixing (iLISI, batch
# silhouette), label preservation (cLISI, label silhouette, k-NN accuracy) and the paper's probe before and after.
#
# ## Overview
# 1. PCA, Harmony (plate as covariate) and UMAP for each embedding set, with wall times.
# 2. UMAPs by plate and by localisation, before and after; each class on its own; protein groups.
# 3. Mixing and label scores before and after Harmony.
# 4. Does Harmony change the probe's macro F1?
# 5. HPA images: plate *and* cell line as covariates.
#
# ## Prerequisites
# *Embeddings* (the Table III sets of the OpenCell images). CPU, about a minute on `demo` (UMAP dominates;
# its first call compiles numba code). No GPU needed.
#
# Harmony never sees a localisation label; how it is fitted, and why that leaks no label into the probe comparison,
# is in *Deviations and choices* (Representation analysis). UMAP is only a picture: every claim below rests on the
# scores, computed in PCA space.

# %% tags=["parameters", "remove-cell"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %% tags=["remove-input"]
# %matplotlib inline
from IPython.display import Markdown, display

from dinoxfer_lib import paper, pipeline
from dinoxfer_lib.pl import analysis as pl_analysis, explorer
from dinoxfer_lib.report import common, harmony as report_harmony
from dinoxfer_lib.tl import harmony, mixing

common.use_book_style()
run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
settings = run.config.analysis
datasets = pipeline.load_datasets(run, ("opencell", "hpa"))
display(Markdown(common.data_banner(datasets, profile=run.config.profile)))

# %% [markdown]
# ## PCA, Harmony and UMAP
#
# Each of the five Table III sets is reduced to its first principal components, Harmony removes the plate from
# them, and UMAP lays out both versions. (The book's DINOv2 rows are left out here; *DINO pretraining* compares
# them.) The table gives the wall time of each step on this machine.

# %%
embeddings = pipeline.load_embeddings(run, tuple(paper.TABLE_III))  # the five Table III sets
corrected = harmony.correct_embeddings(embeddings, settings, seed=run.config.seed)
harmony.timing_table(corrected).round(2)

# %%
display(Markdown(report_harmony.correction_note(corrected, n_pcs=settings.n_pcs,
                                                n_neighbors=settings.umap_n_neighbors,
                                                min_dist=settings.umap_min_dist, seed=run.config.seed)))

# %% [markdown]
# ## UMAPs before and after Harmony
#
# Left pair: coloured by plate. Right pair: coloured by each image's strongest localisation (highest grade; ties
# to the rarer class). Well-corrected embeddings show plates interleaved while localisation colours stay together.

# %%
pl_analysis.plot_harmony_umaps(corrected)

# %% [markdown]
# Multi-label images carry several classes; the strongest-label colouring shows only one. Below, each class on its
# own for the set whose corrected embedding keeps labels best (highest k-NN label accuracy after Harmony), and the
# largest protein groups (images of one protein share its labels and often its plate).

# %%
scores = mixing.mixing_table(corrected, spaces=harmony.SPACES, perplexity=settings.lisi_perplexity,
                             k=settings.knn_k, seed=run.config.seed)
showcase = report_harmony.showcase_set(scores)
display(Markdown(f"Showcase set: **{showcase}**."))
pl_analysis.plot_umap_by_class(corrected[showcase])

# %%
pl_analysis.plot_umap_by_group(corrected[showcase])

# %% [markdown]
# ### Explore it
#
# The same corrected layout, interactive: hover a point to see its image (protein red, nucleus green), its true
# labels, what the probe of Table III predicted for it (its best fold, on test images) and its protein and plate;
# colour by label or plate with the selector, and lasso a region to list its images.

# %%
explorer.embedding_explorer(
    corrected[showcase], datasets["opencell"], basis="X_umap_harmony", seed=run.config.seed,
    probabilities=explorer.probe_probabilities(pipeline.load_probe_results(run), datasets["opencell"].obs["image_id"],
                                               set_name=showcase))

# %% [markdown]
# ## Scores: batch mixing and label preservation
#
# iLISI is the effective number of plates among an image's neighbours (scaled: 0 = one plate, 1 = all plates
# equally); cLISI the effective number of localisation classes (scaled: 1 = pure neighbourhoods). The silhouettes
# measure how compact plates (should fall) and classes (should hold) are; k-NN accuracy is the share of images
# whose 15 nearest neighbours vote for their own strongest label.

# %%
report_harmony.scores_table(scores)

# %%
pl_analysis.plot_mixing_scores(scores)

# %% [markdown]
# ## Does Harmony change the probe?
#
# The paper's MLP probe (the profile's `probe` recipe) on the principal components before and after Harmony, on the
# same folds and the same untouched test images. Both arms use the same PCA, so the only difference is Harmony.

# %%
split = pipeline.load_split(run, "opencell")
probe_change = harmony.probe_before_after(corrected, split=split, config=run.config.probe, seed=run.config.seed)
probe_change.round(3)

# %%
display(Markdown(report_harmony.probe_change_note(probe_change, scores)))

# %% [markdown]
# ## HPA images: plate and cell line
#
# HPA fields of view come from several cell lines, whose shape differences are a second batch-like factor (the one
# Cell-DINO removes). Here the HPA images (a sample of `analysis.max_images_per_domain`) embedded by the HPA
# backbone are harmonised with plate *and* cell line as covariates, and mixing is scored for each.

# %%
hpa_embeddings = {"hpa backbone": pipeline.load_domain_embeddings(run, "hpa", ("hpa",))["hpa"]}
display(*report_harmony.cell_line_section(hpa_embeddings, settings, seed=run.config.seed))

# %% [markdown]
# ## Reading the results honestly

# %%
display(Markdown(report_harmony.reading_note(datasets, pipeline.load_backbones(run))))

# %% [markdown]
# ## What this means

# %%
display(Markdown(report_harmony.what_this_means(scores, probe_change)))

# %% [markdown]
# ## Summary
# - Harmony is applied to principal components with plate (and, for HPA data, cell line) as covariates;
#   AnnData slots `X_pca`, `X_pca_harmony`, `X_umap`, `X_umap_harmony` follow scanpy's names.
# - Batch mixing and label preservation are reported as numbers before and after, and the probe is re-run on the
#   corrected components with the same folds.
#
# **What's next:** the domain-shift chapter asks how far apart the domains themselves are in each backbone's space.
#
# ## References
# - Korsunsky et al. (2019). Fast, sensitive and accurate integration of single-cell data with Harmony. *Nat Methods*.
# - McInnes, Healy, Melville (2018). UMAP: Uniform Manifold Approximation and Projection. *arXiv:1802.03426*.
# - Moutakanni et al. (2025). Cell-DINO. *PLoS Comput Biol*.
# - Luecken et al. (2022). Benchmarking atlas-level data integration in single-cell genomics (scib). *Nat Methods*.
