# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Datasets
#
# **What you will see**
# - Table I computed from the images this run loaded, beside the paper's.
# - What each class looks like, how labels co-occur, and how plates differ in brightness.
# - The hold-out and the 5 folds every later chapter uses, by image and grouped by protein.
#
# **Question.** What do the three domains of the study look like — how many images, channels, classes, labels per
# image, proteins and plates — and how is the target domain split for pretraining and cross-validation?
# This chapter reproduces the paper's *Materials and Methods: Datasets* section and its Table I, computed from the
# data this run loaded, and draws the hold-out and the cross-validation folds that every later chapter shares.
#
# ## Overview
# 1. Load (or generate) the three domains of the profile: OpenCell (the target), HPA, natural images.
# 2. Table I: the paper's and ours, side by side.
# 3. What the classes look like: a montage per class.
# 4. Labels: frequency by grade and co-occurrence.
# 5. Plate effects: why a batch correction (Harmony, later) has something to correct.
# 6. The split: by image (the paper's) and grouped by protein (leakage-free).
#
# ## Prerequisites
# None: this is the first chapter. On `smoke` and `demo` it generates their images in about a minute on a CPU; with
# real data it reads them once (later runs reuse them until a file changes). No GPU needed.

# %% tags=["parameters", "remove-cell"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %% tags=["remove-input"]
# %matplotlib inline
from IPython.display import Markdown, display

from dinoxfer_lib import paper, pipeline
from dinoxfer_lib.data import splits, summary
from dinoxfer_lib.pl import datasets as pl_datasets
from dinoxfer_lib.report import common, datasets as report_datasets

common.use_book_style()
run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
datasets = pipeline.load_datasets(run)
display(Markdown(common.data_banner(datasets, profile=run.config.profile)))

# %% [markdown]
# ## Table I: the three domains
#
# The paper's Table I describes ImageNet-1k, OpenCell and the HPA Image Classification set. Below it, the same
# quantities computed from the images this run loaded.

# %%
paper.TABLE_I

# %%
report_datasets.summarize_domains(list(datasets.values()))

# %% [markdown]
# Where this run's data differ from the paper's by design (image size, number of images), the reason is in
# *Deviations and choices*. The provenance of each dataset — including the time it took to generate or read — is
# recorded beside it:

# %%
common.provenance_table(run.store, [f"datasets/{name}" for name in datasets])

# %% [markdown]
# ## What the classes look like

# %%
display(*report_datasets.class_montage(datasets["opencell"], per_class=4, seed=run.config.seed))

# %%
display(*report_datasets.class_montage(datasets["hpa"], per_class=3, seed=run.config.seed))

# %%
display(*report_datasets.class_montage(datasets["natural"], per_class=4, seed=run.config.seed))

# %% [markdown]
# ## Labels: frequency, grades and co-occurrence
#
# OpenCell labels are multi-label with grades (3 prominent, 2 less pronounced, 1 weak; sources without grades mark
# every label 3) and strongly imbalanced; a macro F1 weighs every class equally, so the rare classes matter as much
# as the common ones.

# %%
opencell_frequency = summary.label_frequency(datasets["opencell"])
pl_datasets.plot_label_frequency(opencell_frequency)

# %%
pl_datasets.plot_cooccurrence(summary.label_cooccurrence(datasets["opencell"]))

# %%
display(Markdown(report_datasets.describe_labels(datasets["opencell"])))

# %% [markdown]
# ## Plate effects
#
# Images are acquired plate by plate; illumination, gain, offset and noise change between plates. These technical
# effects are what Harmony removes in the UMAP chapter, and what a probe must not learn instead of biology.

# %%
display(*report_datasets.plate_effects(datasets["opencell"]))

# %% [markdown]
# ## The split
#
# The paper splits by image, which lets images of one protein — sharing its labels — sit on both sides; the grouped
# split keeps every protein on one side. Later chapters report both.

# %%
display(Markdown(report_datasets.split_note(run.config.split)))

# %%
split_by_image = pipeline.load_split(run, "opencell", grouped=False)
split_grouped = pipeline.load_split(run, "opencell", grouped=True)
splits.describe_splits(
    {"by image (paper)": split_by_image, "grouped by protein": split_grouped},
    groups=datasets["opencell"].obs["group"].to_numpy(),
)

# %%
pl_datasets.plot_split(
    splits.split_summary(split_by_image, datasets["opencell"].labels, datasets["opencell"].class_names)
)

# %% [markdown]
# ## What this means

# %%
display(Markdown(report_datasets.what_this_means(datasets, split_by_image)))

# %% [markdown]
# ## Summary

# %%
display(Markdown(report_datasets.summary_points(datasets)))

# %% [markdown]
# **What's next:** DINO pretraining on each domain, then embeddings of the OpenCell images.
#
# ## References
# - Isselmann, Göksu, Weinmann (2026). *Generalization of Self-Supervised Vision Transformers for Protein
#   Localization Across Microscopy Domains.*
# - Cho et al. (2022). OpenCell: endogenous tagging for the cartography of human cellular organization. *Science*.
# - Ouyang et al. (2019). Analysis of the Human Protein Atlas Image Classification competition. *Nature Methods*.
# - Sechidis, Tsoumakas, Vlahavas (2011). On the stratification of multi-label data. *ECML PKDD*.
