# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Results at a glance
#
# **Question.** What did this build find, claim by claim? The paper's headline results beside this build's: Table III
# and Figure 1, then each claim of the paper with what this build measured and whether it was reproduced. Every
# number is computed by the run that built the book (this page runs after every chapter and reuses their stages); the
# paper's numbers stand beside them. The chapters say how each number was made: *Classifier and results* for Table
# III and its statistics, *Predictions* for Figure 2.

# %% tags=["parameters", "remove-cell"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %% tags=["remove-input"]
# %matplotlib inline
from IPython.display import Markdown, display

from dinoxfer_lib import pipeline
from dinoxfer_lib.pl import results as pl_results
from dinoxfer_lib.report import classifier, common, glance

common.use_book_style()
run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
opencell = pipeline.load_datasets(run, ("opencell",))["opencell"]
display(Markdown(common.data_banner({"opencell": opencell}, profile=run.config.profile)))

# %% [markdown]
# ## Table III
#
# Test macro F1 (mean ± std over the five fold models) of the paper's MLP probe on each embedding set, the paper's
# value beside it, between the floor (random weights) and the ceiling (a CNN trained with the labels); "minus …" is
# the paired difference to the row chosen on validation F1, with its 95 % bootstrap interval.

# %%
by_image = pipeline.load_table_iii(run, grouped=False)
table = classifier.table_iii(by_image, weights=pipeline.backbone_labels(run),
                             present=classifier.present_classes(opencell), labels=opencell.labels,
                             seed=run.config.seed)
classifier.format_table_iii(table)

# %% [markdown]
# ## Figure 1
#
# Bars: this build, ± 1 std over folds; open diamonds: the paper; dashed and dotted lines: ceiling and floor.

# %%
pl_results.plot_f1_with_bounds(table)

# %% [markdown]
# ## The paper's claims
#
# Each headline claim of the paper, what this build measured, and the verdict: *reproduced*, *not reproduced*, or
# *not testable on these data* (the `why` column says on what the verdict rests). Differences between rows are read
# from a paired bootstrap over the test images.

# %%
claims = glance.claims_table(by_image, opencell.labels, synthetic=opencell.synthetic, seed=run.config.seed)
claims.set_index("claim")

# %%
display(Markdown(glance.claims_note(claims)))

# %% [markdown]
# ## The targets of this profile
#
# What a build must show for the paper's questions to have answers on its data (chapter 04 explains each).

# %%
grouped = pipeline.load_table_iii(run, grouped=True)
targets = classifier.targets_table({"by image": (by_image, opencell.labels),
                                    "grouped by protein": (grouped, opencell.labels)},
                                   stage_minutes=classifier.stage_minutes(run.store), seed=run.config.seed)
targets.drop(columns="value")

# %%
display(Markdown(classifier.targets_note(targets)))

# %% [markdown]
# ### Where the build's minutes go
#
# Each kind of stage with its CPU minutes (as each stage recorded when it was computed) and its largest stage, then
# each notebook's wall time as the runner recorded it: what a shorter build would have to cut. *Classifier and
# results* shows what more DINO minutes would buy (the measured frontier).

# %%
minutes = classifier.build_minutes(run.store)
minutes.assign(minutes=minutes["minutes"].map("{:.1f}".format)).set_index(["kind", "what"])

# %%
display(Markdown(classifier.build_minutes_note(minutes)))
