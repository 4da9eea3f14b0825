# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Performance
#
# **What you will see**
# - This run's benchmarks against plain reference implementations, as ratios.
# - Figures recorded on a GPU: batch sizes for DINO, what limits embedding throughput.
# - The design's speed targets, each beside the figure it is judged on.
#
# **Question.** Are the hot paths of the book fast, measured the only way that survives a shared or noisy machine:
# as a ratio against a plain reference implementation timed in the same run, on the same data?
#
# ## Overview
# 1. The machine this run used.
# 2. Each benchmark: ours vs the reference, images (or models) per second and the ratio.
# 3. Figures recorded on GPU machines, with the device named: DINO batch sizes and the paper-run projection, what
#    limits embedding MFU.
# 4. The design's speed targets, each beside the figure it is judged on.
#
# ## Prerequisites
# None. The problem size follows the profile (`bench.size`: small for `smoke`, CPU-sized for `demo`, ViT-B/8 at
# 224 px for `paper`). `dinoxfer bench --size demo` runs the same benchmarks from the command line.

# %% tags=["parameters", "remove-cell"]
profile = "demo"
overrides = {}
runs_root = "../runs"
force = False

# %% tags=["remove-input"]
# %matplotlib inline
from IPython.display import Markdown, display

from dinoxfer_lib import pipeline
from dinoxfer_lib.bench import BENCHMARKS, records, run_benchmarks, summary_table
from dinoxfer_lib.provenance import device_description
from dinoxfer_lib.report import common, performance

common.use_book_style()
run = pipeline.open_run(profile, overrides, runs_root=runs_root, force=force)
display(Markdown(f"Device of this run: **{device_description()}**; problem size: `{run.config.bench.size}`."))

# %% [markdown]
# ## Benchmarks of this run
#
# - **embedding**: our batched extractor (slices of the memory-mapped images, batched resize and percentile
#   scaling in torch, `inference_mode`, a bf16 copy of the backbone on CUDA) against a per-image NumPy/scikit-image
#   preprocessing loop that calls the same model in fp32 on batches of 8, as a typical script does. The stored
#   images are 600/224 ≈ 2.7 times the model's input size, as OpenCell's 600 px fields of view are for the paper's
#   224 px ViT, so both sides resize as the paper's run does.
# - **dino**: one DINO training step (multi-crop, student + teacher, loss, AdamW, EMA) with our batched on-device
#   augmentations and `torch._foreach` EMA against the official `main_dino.py` way: per-sample CPU augmentations
#   through a DataLoader, a Python loop over parameters for the EMA, and on a GPU its default fp16 autocast with a
#   GradScaler and 10 loader workers (fp32 without workers on a CPU).
# - **probes**: the Table III probe suite (5 sets × 5 folds of the paper's MLP, all models batched on the device,
#   scoring included) against a fold-by-fold script (`StandardScaler`, `DataLoader` + `WeightedRandomSampler`,
#   `nn.Sequential`, scikit-learn's `f1_score`). The reference trains a few models and its time is scaled to all
#   of them (`reference_scaled`).
# - **lora_step**: one training step of a ViT with LoRA adapters on its `qkv` projections and the paper's MLP head
#   (chapter 08's step: images resident in memory, scaled on the device, fused AdamW) against the script peft's and
#   PyTorch's documentation lead to (`get_peft_model`, a `DataLoader` scaling each image with NumPy percentiles,
#   default AdamW); full fine-tuning's step is recorded beside it.
# - **seg_head_epoch**: one epoch of chapter 08's segmentation head on a frozen backbone, on patch tokens cached
#   once (the cache's time recorded apart), against a loop that runs the frozen backbone in every step.

# %%
measured = run_benchmarks(list(BENCHMARKS), size=run.config.bench.size)
summary_table(measured)

# %% [markdown]
# Every field each benchmark recorded (sizes, thread count, FLOP rates, the test F1 both sides reached):

# %%
summary_table(measured, all_fields=True)

# %%
display(Markdown(performance.ratio_lines(measured)))

# %% [markdown]
# ## What limits the CPU figures
#
# On a CPU without bf16 support the model's own fp32 arithmetic dominates once the Python overhead is gone, and
# both sides do the same arithmetic, so these ratios are information, not targets:
#
# - **embedding**: the ratio is bounded by how much of the reference's time went into per-image preprocessing and
#   small batches; the backbone alone on prepared inputs bounds any extractor (this run's figures below).
# - **dino**: the fp32 student and teacher passes are most of both steps; only the augmentations and the
#   per-parameter Python loops can be saved.
# - **probes**: a batch of 512 images is already large enough for the reference's single-model matrix products to
#   run as fast as our batched ones, so the ratio is capped by the reference's total time over the time of our
#   matrix products alone. On a GPU the reference is bound by per-step kernel launches and data loading, and the
#   batched trainer does the work of 25 models in the launches of one (the recorded GPU figures below).

# %%
display(Markdown(performance.cpu_embedding_reading(next(r for r in measured if r["benchmark"] == "embedding"))))

# %% [markdown]
# ## Recorded on GPU machines
#
# The machines this book is built on have no GPU, so the figures below were **not** measured by the run that built
# this page: they were recorded with `dinoxfer bench --size paper --record` on the GPU machine named, and are kept
# beside the book (`book/performance/records/`) with the software and the commit of each figure. At the paper's
# size the embedding runs ViT-B/8 at 224 px on larger uint16 images (the reading below names their size), DINO
# trains ViT-B/8 with 2 × 224 px + 8 × 96 px crops and a 65,536-d head, and the probe suite trains 25 MLPs for 300
# epochs on 5,500 × 1,536-d features.

# %%
gpu_runs = records.recorded_runs()
for gpu_run in gpu_runs:
    display(Markdown(performance.record_header(gpu_run)))
records.recorded_summary(gpu_runs)

# %% [markdown]
# ### DINO at the paper's size: how large a batch fits, and what the paper's run would cost
#
# Our step alone at growing batch sizes, until one no longer fits the card's memory; the largest projects the
# paper's 300-epoch OpenCell run (90 % of 6,301 images) on one such GPU.

# %%
dino_gpu, dino_run = records.latest_result(gpu_runs, "dino")
display(records.dino_batch_table(dino_gpu))
display(Markdown(performance.dino_reading(dino_gpu, dino_run)))

# %% [markdown]
# ### What limits embedding MFU
#
# The extractor's steps on the way, each measured at the paper's size (eager, and from commit 0565445 also
# compiled); then the backbone alone on prepared inputs in each precision, attention kernel and compile mode: the
# ceiling any extractor of this model has on the card; then, where recorded, the extractor end to end compiled each
# way, which is how `embed.compile` was chosen.

# %%
emb_gpu, emb_run = records.latest_result(gpu_runs, "embedding")
display(records.extractor_steps_table(gpu_runs))
display(emb_run.variants())
if emb_run.compile_modes() is not None:
    what, modes = emb_run.compile_modes()
    display(Markdown(f"Compiled each way: {what}"))
    display(modes)

# %%
display(Markdown(performance.embedding_reading(emb_gpu, emb_run)))

# %% [markdown]
# ## The speed targets
#
# The targets are GPU ones, each judged on the latest recorded GPU figure (or on this run's, when it ran the paper
# size on a GPU); this run's CPU ratios follow as information, beside the ceiling this run measured where it has
# one.

# %%
performance.target_table(measured, gpu_runs)

# %% [markdown]
# ## What this means

# %%
display(Markdown(performance.what_this_means(measured, gpu_runs)))

# %% [markdown]
# ## Summary
# Every ratio in the first sections was measured by the run that built this page, on the device named at the top;
# the GPU figures were recorded on the machine and day they name.
