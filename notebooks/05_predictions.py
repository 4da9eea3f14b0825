# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Predictions
#
# **What you will see**
# - Which fold model Figure 2 shows, chosen on validation F1.
# - Two test images with their true and predicted compartments (Figure 2).
# - The model's most confident mistakes.
#
# **Question.** What does a probe actually predict for one image? The paper's Figure 2 shows two test images — the
# composite (protein red, nucleus green) and each channel alone — with the compartments the best fold of the HPA +
# channel mapping model predicts beside the true ones. This chapter rebuilds that figure from this run's models and
# adds what a figure of two hand-picked images cannot show: the model's most confident mistakes.
#
# ## Overview
# 1. Which model: the paper's configuration and the best fold by validation F1.
# 2. Figure 2: two test images with true and predicted compartments.
# 3. A gallery of the most confident errors.
#
# ## Prerequisites
# *Classifier and results* (the stored probe results; nothing is retrained here).

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
from dinoxfer_lib.report import common, predictions

common.use_book_style()
run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
opencell = pipeline.load_datasets(run, ("opencell",))["opencell"]
display(Markdown(common.data_banner({"opencell": opencell}, profile=run.config.profile)))
probes = pipeline.load_probe_results(run, grouped=False)

# %% [markdown]
# ## Which model
#
# The paper shows "the best-performing fold" of HPA + channel mapping without saying on which data it was best. We
# pick the fold with the highest *validation* macro F1, so the choice never looks at the test images it is then
# shown on. The set this run would choose on validation F1 is named too.

# %%
shown_set, fold, choice = predictions.figure_2_model(probes, n_folds=run.config.split.n_folds)
threshold = run.config.probe.threshold
display(Markdown(choice))

# %% [markdown]
# ## Figure 2
#
# Two test images the fold model predicts exactly right, as in the paper, whose caption reads: "the model accurately
# predicted both the cytoplasmic and nucleoplasm compartments". Images labelled like the paper's (cytoplasmic and
# nucleoplasm) come first, then other multi-label images, most confident first; the model's mistakes are in the next
# section. Probabilities are the sigmoid outputs of the fold model; "pred." means ≥ the threshold.

# %%
examples = predictions.example_test_images(probes, opencell.labels, set_name=shown_set, fold=fold,
                                           threshold=threshold)
for image in examples:
    prediction = predictions.prediction_table(probes, opencell.labels, set_name=shown_set, fold=fold, image=image,
                                              threshold=threshold)
    display(pl_results.plot_prediction(opencell.images[image], opencell.channel_names, prediction,
                                       title=predictions.image_title(opencell, image)))

# %% [markdown]
# ## The most confident errors
#
# Each test image's worst decision — a false positive with a probability far above the threshold, or a false
# negative far below it — ranked by how far it sits on the wrong side. Look-alike compartments (nucleoplasm vs
# chromatin, vesicles vs punctae, Golgi vs centrosome) and weak grade-1 labels are where a probe should err.

# %%
errors = predictions.confident_errors(probes, opencell.labels, set_name=shown_set, fold=fold, threshold=threshold)
pl_results.plot_error_gallery(opencell.images, opencell.channel_names, errors)

# %%
predictions.errors_with_ids(errors, opencell)

# %% [markdown]
# ## What this means

# %%
display(Markdown(predictions.what_this_means(probes, opencell.labels, set_name=shown_set, fold=fold,
                                              threshold=threshold)))

# %% [markdown]
# ## Summary
#
# - The figure is drawn from the stored fold model's test probabilities (`test_probs.npz`), so it matches Table III.
# - The error gallery is the quickest check of whether a score is plausible: the mistakes should be ones a
#   microscopist would hesitate over too.
#
# **What's next:** the representation chapters look at the embeddings without a probe.
#
# ## References
# - Isselmann, Göksu, Weinmann (2026), Figure 2.
