# %% [markdown]
# # Performance
#
# **Question.** Are the hot paths of the book fast, measured the only way that survives a shared or noisy machine:
# as a ratio against a plain reference implementation timed in the same run, on the same data?
#
# ## Overview
# 1. The machine this run used.
# 2. Each benchmark: ours vs the reference, images (or models) per second and the ratio.
# 3. Figures recorded on GPU machines, with the device named.
#
# ## Prerequisites
# None. The problem size follows the profile (`bench.size`: small for `smoke`, CPU-sized for `demo`, ViT-B/8 at
# 224 px for `paper`). `dinoxfer bench --size demo` runs the same benchmarks from the command line.

# %% tags=["parameters"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %%
# %matplotlib inline
import pandas as pd
from IPython.display import Markdown, display

from dinoxfer_lib import pipeline
from dinoxfer_lib.bench import BENCHMARKS, run_benchmarks, summary_table
from dinoxfer_lib.provenance import device_description

run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
display(Markdown(f"Device of this run: **{device_description()}**; problem size: `{run.config.bench.size}`."))

# %% [markdown]
# ## Benchmarks of this run
#
# - **embedding**: our batched extractor (slices of the memory-mapped images, batched resize and percentile
#   scaling in torch, `inference_mode`, bf16 autocast on CUDA) against a per-image NumPy/scikit-image preprocessing
#   loop that calls the same model in fp32 on batches of 8, as a typical script does. The stored images are twice the
#   model's input size, as OpenCell's 600 px fields of view are for a 224 px ViT.
# - **dino**: one DINO training step (multi-crop, student + teacher, loss, AdamW, EMA) with our batched on-device
#   augmentations and `torch._foreach` EMA against the usual script: per-sample CPU augmentations through a
#   DataLoader, fp32, a Python loop over parameters for the EMA.
# - **probes**: the Table III probe suite (5 sets × 5 folds of the paper's MLP, all models batched on the device,
#   scoring included) against a fold-by-fold script (`StandardScaler`, `DataLoader` + `WeightedRandomSampler`,
#   `nn.Sequential`, scikit-learn's `f1_score`). The reference trains a few models and its time is scaled to all
#   of them (`reference_scaled`).

# %%
measured = run_benchmarks(list(BENCHMARKS), size=run.config.bench.size)
summary_table(measured)

# %% [markdown]
# Every field each benchmark recorded (sizes, thread count, FLOP rates, the test F1 both sides reached):

# %%
results = pd.DataFrame(measured).set_index("benchmark")
results.T

# %%
display(Markdown(
    "\n".join(f"- **{name}**: {row.ratio:.2f}× the reference on {row.device}." for name, row in results.iterrows())
))

# %% [markdown]
# ## What limits the CPU figures
#
# On a CPU without bf16 support the model's own fp32 arithmetic dominates once the Python overhead is gone, and
# both sides do the same arithmetic:
#
# - **embedding**: the ratio is bounded by how much of the reference's time went into per-image preprocessing and
#   small batches (about 47 % on the development machine, so ≈ 2.2× at most; the target is ≥ 3×).
# - **probes**: a batch of 512 images is already large enough for the reference's single-model matrix products to
#   run as fast as our batched ones, so the ratio is capped by the reference's total time over the time of our
#   matrix products alone: ≈ 2–3× with one thread, ≈ 4× with two (measurements in `dinoxfer_lib/bench/probes.py`).
#   The design's ≥ 10× target is a GPU target in practice: there the reference is bound by per-step kernel launches
#   and data loading, and the batched trainer does the work of 25 models in the launches of one.
#
# The design's targets (embedding ≥ 3× on CPU and ≥ 40 % of bf16 peak for ViT-B/8 at 224 px on an H100/H200;
# DINO training ≥ 2×; probes ≥ 10× on CPU and the paper-size suite in ≤ 30 s on a GPU) are tracked here; GPU
# figures are recorded below when a run had a GPU.
#
# ## Recorded on GPU machines
#
# No GPU run has been recorded yet: the machines this book was built on had no accelerator. `dinoxfer bench --size
# paper --out bench.json` on a CUDA machine prints images/s, TFLOP/s and the model FLOP utilisation (MFU, against
# the dense bf16 peak of the card); add them here with the device's name.
#
# ## Summary
# Every ratio above was measured by the run that built this page, on the device named at the top.
