"""Chapter 05 (Predictions): Figure 2's test images and tables, and the most confident errors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dinoxfer_lib import paper
from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report.classifier import table_iii


def best_configuration(result: ProbeResult, *, probe: str = "mlp") -> str:
    """The set with the highest mean validation macro F1 (chosen without looking at the test images)."""
    table = table_iii(result, probe=probe)
    return str(table.loc[table["val_f1_mean"].idxmax(), "set"])

def prediction_table(result: ProbeResult, labels: np.ndarray, *, set_name: str, fold: int, image: int,
                     probe: str = "mlp", threshold: float = 0.5) -> pd.DataFrame:
    """Figure 2's table for one test image: every class that is true or predicted, with its probability.

    ``image`` is the dataset row of a test image; ``labels`` the dataset's ``(N, K)`` labels.
    """
    position = np.flatnonzero(result.test_index == image)
    if position.size == 0:
        raise DataError(f"image {image} is not in the test split: Figure 2 shows test images only")
    probs = result.probs(set_name, probe)[fold, position[0]]  # (K,)
    truth = labels[image]
    predicted = probs >= threshold
    shown = np.flatnonzero(truth | predicted)
    return pd.DataFrame({
        "class": [result.class_names[k] for k in shown],
        "true": truth[shown],
        "predicted": predicted[shown],
        "probability": probs[shown].round(3),
    }).sort_values("probability", ascending=False, ignore_index=True)

# The paper's Figure 2: two test images of a protein labelled cytoplasmic and nucleoplasm, both predicted correctly
# ("the model accurately predicted both the cytoplasmic and nucleoplasm compartments").
FIGURE_2_CLASSES = ("cytoplasmic", "nucleoplasm")


def example_test_images(result: ProbeResult, labels: np.ndarray, *, set_name: str, fold: int, n: int = 2,
                        probe: str = "mlp", threshold: float = 0.5) -> list[int]:
    """Dataset rows of ``n`` test images for Figure 2, as the paper chose them: images the fold model predicts
    exactly right, first those labelled like the paper's (cytoplasmic and nucleoplasm), then other multi-label
    images, then any; most confident first. Only when fewer than ``n`` images are exactly right does the figure
    show the most confident others (the chapter's errors section shows the misses)."""
    probs = result.probs(set_name, probe)[fold]  # (n_test, K)
    truth = labels[result.test_index]
    predicted = probs >= threshold
    exact = (predicted == truth).all(1)
    confidence = np.abs(probs - threshold).mean(1)
    papers = (truth == np.isin(result.class_names, FIGURE_2_CLASSES)).all(1)
    multi = truth.sum(1) >= 2
    picks: list[int] = []
    for pool in (exact & papers, exact & multi, exact, ~exact):
        for i in np.argsort(-confidence):
            if len(picks) == n:
                return picks
            if pool[i] and int(result.test_index[i]) not in picks:
                picks.append(int(result.test_index[i]))
    return picks

def confident_errors(result: ProbeResult, labels: np.ndarray, *, set_name: str, fold: int, n: int = 8,
                     probe: str = "mlp", threshold: float = 0.5) -> pd.DataFrame:
    """The ``n`` most confident wrong decisions on test images: one row per (image, class) decision.

    Confidence of a wrong decision is how far its probability sits on the wrong side of the threshold: a false
    positive at 0.97 is more telling than one at 0.52. Each image appears at most once (its worst decision).
    """
    probs = result.probs(set_name, probe)[fold]
    truth = labels[result.test_index]
    wrong = (probs >= threshold) != truth
    margin = np.where(wrong, np.abs(probs - threshold), -1.0)
    worst_class = margin.argmax(1)
    worst = margin[np.arange(len(margin)), worst_class]
    rows = []
    for i in np.argsort(-worst)[:n]:
        if worst[i] < 0:
            break
        k = worst_class[i]
        rows.append({
            "image": int(result.test_index[i]),
            "class": result.class_names[k],
            "error": "false positive" if probs[i, k] >= threshold else "false negative",
            "probability": round(float(probs[i, k]), 3),
            "true labels": ", ".join(np.asarray(result.class_names)[truth[i]]),
        })
    return pd.DataFrame(rows)


def figure_2_model(result: ProbeResult, *, n_folds: int) -> tuple[str, int, str]:
    """(set, fold, Markdown): the paper's Figure 2 set (HPA + channel mapping) and its fold with the best
    *validation* macro F1, so the choice never looks at the test images it is shown on; the text also names the
    set this run would choose on validation F1."""
    shown = paper.FIGURE_2_SET
    fold = result.best_fold(shown, by="val")
    return shown, fold, (f"Figure 2 uses **{shown}**, fold {fold} (best validation macro F1 of its {n_folds} folds). "
                         f"The best set of this run on validation F1 is **{best_configuration(result)}**.")


def image_title(dataset: ImageSet, image: int) -> str:
    """How a figure names one test image: its id and its protein (group)."""
    return f"test image {dataset.obs['image_id'].iloc[image]} (protein {dataset.obs['group'].iloc[image]})"


def errors_with_ids(errors: pd.DataFrame, dataset: ImageSet) -> pd.DataFrame:
    """:func:`confident_errors` with each image's id beside its row number."""
    return errors.assign(image_id=dataset.obs["image_id"].to_numpy()[errors["image"]] if len(errors) else [])


def what_this_means(result: ProbeResult, labels: np.ndarray, *, set_name: str, fold: int,
                    threshold: float = 0.5, probe: str = "mlp") -> str:
    """The chapter's conclusion, from the shown fold model's test predictions: how many images it gets exactly
    right, whether it errs by missing labels or by adding them, and how sure it is when wrong."""
    probs = result.probs(set_name, probe)[fold]  # (n_test, K)
    truth = labels[result.test_index]
    predicted = probs >= threshold
    exact = (predicted == truth).all(axis=1)
    missed, added = int((truth & ~predicted).sum()), int((~truth & predicted).sum())
    none = int((~predicted.any(axis=1)).sum())
    lines = [f"- **Exact matches.** The model shown gets {int(exact.sum())} of {len(exact)} test images exactly right "
             f"({exact.mean():.0%}); {none} images get no label at all.",
             f"- **How it errs.** It misses {missed} true label{'s' * (missed != 1)} and adds {added} false "
             f"one{'s' * (added != 1)}: "
             + ("it errs mostly by leaving labels out, as a probe does whose probabilities stay below the threshold "
                "(the tuned thresholds in *Classifier and results* address that)." if missed > added else
                "it errs mostly by adding labels, predicting look-alike or co-occurring compartments.")]
    wrong = predicted != truth
    if wrong.any():
        margin = np.abs(probs - threshold)[wrong]
        lines.append(f"- **Confidence when wrong.** Its wrong decisions sit a median {np.median(margin):.2f} and at "
                     f"most {margin.max():.2f} from the threshold; {int((margin > 0.4).sum())} are confident (more "
                     "than 0.4 away). A probe that errs only near the threshold is unsure rather than misled.")
    return "\n".join(lines)
