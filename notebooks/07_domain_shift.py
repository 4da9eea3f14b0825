# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Domain shift
#
# **What you will see**
# - Every domain through every backbone: PCA, Fréchet distances with their floor, a domain probe.
# - The transfer matrix: each backbone probed on each labelled domain.
# - Fréchet distance to OpenCell against Table III's macro F1.
#
# **Question.** How far apart are the OpenCell, HPA and natural images in each backbone's feature space,
# and does that distance relate to how well a backbone transfers? The EM foundation-model study (PAPER_SPEC.md §7)
# diagnoses domain shift with a PCA coloured by domain, the Fréchet distance between embedding distributions and a
# linear probe that predicts the domain; DINO BoC reports a cross-domain transfer matrix. This chapter does all
# three for the backbone pretrained on each domain, and sets the distances beside Table III.
#
# ## Overview
# 1. Every domain through every backbone (one shared channel encoding).
# 2. PCA of all domains together, per backbone.
# 3. Fréchet distances with intervals and the within-domain floor.
# 4. The domain probe.
# 5. The transfer matrix: backbone x labelled domain.
# 6. Distance against Table III's macro F1.
#
# ## Prerequisites
# *Datasets*, the backbones of *DINO pretraining* (trained here first where none exist yet), and *Classifier*
# (Table III) for the last section. CPU, under a minute on `demo` once the domain embeddings exist; embedding them
# takes longer the first time.
#
# **One encoding for every domain**: each channel alone through the backbone's single-channel copy, features averaged
# over channels, so 2-, 3- and 4-channel images reach a backbone the same way (why, and what it costs: *Deviations
# and choices*, Representation analysis). Each domain is a seeded sample of at most
# `analysis.max_images_per_domain` images.

# %% tags=["parameters", "remove-cell"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %% tags=["remove-input"]
# %matplotlib inline
from IPython.display import Markdown, display

from dinoxfer_lib import pipeline
from dinoxfer_lib.pl import analysis as pl_analysis
from dinoxfer_lib.report import common, embeddings as report_embeddings, shift as report_shift
from dinoxfer_lib.tl import shift

common.use_book_style()
run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
settings = run.config.analysis
datasets = pipeline.load_datasets(run)
display(Markdown(common.data_banner(datasets, profile=run.config.profile)))

# %% [markdown]
# ## Every domain through every backbone

# %%
embeddings = {backbone: pipeline.load_domain_embeddings(run, backbone) for backbone in pipeline.DOMAINS}
matrices = shift.embedding_matrices(embeddings)
report_shift.embedding_sizes(embeddings)

# %%
display(Markdown(report_embeddings.backbone_note(pipeline.load_backbones(run))))

# %% [markdown]
# ## PCA of all domains together
#
# Each panel: the first two principal components of the three domains' embeddings by one backbone (each domain
# subsampled to the smallest one's size, so none dominates the axes).

# %%
pcas = {backbone: shift.pooled_pca(per, seed=run.config.seed) for backbone, per in matrices.items()}
pl_analysis.plot_pca_by_domain(pcas)

# %%
display(Markdown(report_shift.pca_note(pcas)))

# %% [markdown]
# ## Fréchet distances
#
# Each cell: the mean Fréchet distance over repeated random half-samples of equal size, with the 2.5-97.5 % range.
# The diagonal is the **within-domain floor**: the distance between two disjoint halves of one domain, i.e. what
# sampling noise alone produces at this sample size. A pair matters only where it clears the floor.

# %%
frechet, probes = shift.shift_tables(matrices, resamples=settings.resamples, folds=settings.domain_probe_folds,
                                     seed=run.config.seed)
report_shift.frechet_table(frechet)

# %%
pl_analysis.plot_frechet(frechet)

# %% [markdown]
# ## The domain probe
#
# A logistic regression on standardised embeddings predicts the domain, cross-validated on class-balanced samples
# (chance = 1 / number of domains). High accuracy = a linear boundary separates the domains.

# %%
probes.round(3)

# %%
pl_analysis.plot_domain_probe(probes)

# %%
display(Markdown(report_shift.shift_note(frechet, probes)))

# %% [markdown]
# ## Transfer matrix
#
# The paper's probe (the profile's `probe` recipe) trained on each labelled domain's embeddings by each backbone,
# with a fresh hold-out + K-fold split of that domain's sample. Rows: where the backbone was pretrained, and DINO
# BoC (one single-channel encoder trained on channels of every domain, when the profile trains it); columns: where
# the probe is trained and tested.

# %%
transfer_table = pipeline.load_transfer_matrix(run)
pl_analysis.plot_transfer_matrix(transfer_table)

# %%
display(Markdown(report_shift.transfer_note(transfer_table)))

# %% [markdown]
# ## Distance against Table III
#
# Each of the paper's Table III sets uses the backbone pretrained on one domain (the DINOv2 rows, trained elsewhere or
# on several domains, are left out). Its x position is the Fréchet distance from that domain to the OpenCell images in
# that backbone's space; its y position our test macro F1 (circles, from the
# classifier chapter) and the paper's (stars). The paper's F1 comes from the real datasets and ViT-B/8 backbones,
# our distances from this run: read the stars only for their order.

# %%
relation = report_shift.distance_vs_f1(frechet, pipeline.load_probe_results(run).table(), target="opencell")
relation.round(3)

# %%
pl_analysis.plot_distance_vs_f1(relation, target="opencell")

# %% [markdown]
# ## Wall time

# %%
common.provenance_table(run.store, pipeline.shift_stages(run))

# %%
display(Markdown(report_shift.analysis_time_note(frechet)))

# %% [markdown]
# ## Reading the results honestly

# %%
display(Markdown(report_shift.reading_note(datasets, pipeline.load_backbones(run))))

# %% [markdown]
# ## What this means

# %%
display(Markdown(report_shift.what_this_means(frechet, relation, transfer_table)))

# %% [markdown]
# ## Summary
# - Fréchet distances come with a resampling interval and the within-domain floor at the same sample size.
# - The domain probe's accuracy is shown against its chance level.
# - The transfer matrix uses one encoding (bag of channels, averaged) for every backbone and domain.
#
# ## References
# - Heusel et al. (2017). GANs trained by a two time-scale update rule converge to a local Nash equilibrium (FID).
# - Dowson & Landau (1982). The Fréchet distance between multivariate normal distributions. *J Multivar Anal*.
# - Pham et al. (2024). Scaling channel-invariant self-supervised learning for microscopy images (DINO BoC).
