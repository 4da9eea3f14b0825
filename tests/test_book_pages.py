"""What a reader of the rendered book relies on: tables printed legibly (3 significant digits, mean ± std, ✓/✗,
long tables summarised with the rest in a toggle), figures that fit the text column, progress bars that never reach
a page, and chapter readings computed from the run's numbers."""

import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from dinoxfer_lib.data.splits import make_split
from dinoxfer_lib.pl import analysis as pl_analysis
from dinoxfer_lib.pl.dino import plot_attention_maps, plot_training_curves
from dinoxfer_lib.pl.style import FULL_WIDTH
from dinoxfer_lib.probes import ProbeConfig, run_probe_comparison
from dinoxfer_lib.progress import progress_bar
from dinoxfer_lib.report import classifier, common, predictions
from dinoxfer_lib.report import shift as report_shift

WIDTH_SLACK = 0.01  # inches


def test_numbers_print_with_three_significant_digits_and_integers_as_integers():
    assert common.format_number(0.82345) == "0.823"
    assert common.format_number(12.3456) == "12.3"
    assert common.format_number(1234.5) == "1,234" and common.format_number(25_000) == "25,000"
    assert common.format_number(2026) == "2026"  # a year or a seed is no quantity to group
    assert common.format_number(0.00012345) == "1.23e-04"
    assert common.format_number(float("nan")) == "—" and common.format_number(pd.NA) == "—"
    assert common.format_number(True) == "✓"


def test_a_table_prints_mean_and_std_together_without_a_counting_index():
    frame = pd.DataFrame({"set": ["hpa_mapping", "opencell_native"], "test_f1_mean": [0.82345, 0.05],
                          "test_f1_std": [0.0061, 0.0123], "k": [10.0, 10.0], "converged": [True, False],
                          "n_images": [12_000, 3], "wall_s": [1234.5, np.nan]})
    tidy = common.tidy_table(frame)
    assert list(tidy.columns) == ["set", "test f1 mean ± std", "k", "converged", "n images", "wall s"]
    assert list(tidy["test f1 mean ± std"]) == ["0.823 ± 0.006", "0.050 ± 0.012"]  # F1 as the paper prints it
    assert list(tidy["k"]) == ["10", "10"] and list(tidy["converged"]) == ["✓", "✗"]
    assert list(tidy["n images"]) == ["12,000", "3"] and list(tidy["wall s"]) == ["1,234", "—"]
    html = common.table_html(frame)
    assert "<details" not in html and "hpa_mapping" in html and ">0<" not in html  # no 0, 1 row labels
    assert 'overflow-x: auto' in html  # a table wider than the column scrolls in its own box


def test_a_named_or_multi_level_index_becomes_columns_printed_once_per_group():
    frame = pd.DataFrame({"score": [0.5, 0.6, 0.7, 0.8]},
                         index=pd.MultiIndex.from_product([["a", "b"], ["before", "after"]], names=["set", "space"]))
    tidy = common.tidy_table(frame)
    assert list(tidy.columns) == ["set", "space", "score"]
    assert list(tidy["set"]) == ["a", "", "b", ""] and list(tidy["space"]) == ["before", "after"] * 2


def test_a_long_table_shows_its_summary_and_the_full_table_in_a_toggle():
    frame = pd.DataFrame({"value": np.arange(20) / 100}, index=pd.Index([f"row{k}" for k in range(20)], name="name"))
    html = common.table_html(frame)
    shown, hidden = html.split("<details", 1)
    assert f"first {common.SUMMARY_ROWS} rows" in shown and "row9" in shown and "row10" not in shown
    assert "All 20 rows" in hidden and "row19" in hidden
    common.summarise(frame, ["row3", "row17"], what="the rows that matter")
    shown = common.table_html(frame).split("<details", 1)[0]
    assert "the rows that matter (2 of 20 rows)" in shown and "row17" in shown and "row0" not in shown
    short = frame.iloc[:common.MAX_ROWS]
    assert "<details" not in common.table_html(short)


def test_recipe_tables_summarise_to_the_settings_that_differ_from_the_paper():
    table = classifier.probe_recipe_table(ProbeConfig(epochs=30, lr=3e-3))
    summary = table.attrs[common.SUMMARY_ATTR]
    assert summary["rows"] == ["lr", "epochs"] and "differ from the paper" in summary["what"]


def test_a_toggle_inlines_a_figure_so_the_page_needs_no_other_file():
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1])
    html = common.Toggle("The other 11 classes", fig)._repr_html_()
    assert html.startswith('<details class="dinoxfer-toggle"><summary>The other 11 classes</summary>')
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/]{100,}', html)


def test_book_figures_fit_the_text_column():
    steps = np.arange(5)
    history = pd.DataFrame({"step": steps, "loss": 5 - steps / 10, "teacher_entropy": 3 + steps / 10,
                            "kl_globals": np.full(5, 0.3), "lr": steps * 1e-4, "weight_decay": np.full(5, 0.04),
                            "teacher_momentum": np.full(5, 0.996), "collapse": [""] * 4 + ["uniform"]})
    curves = plot_training_curves({"opencell": history, "hpa": history.assign(loss=history["loss"] + 1)}, out_dim=64)
    assert [line.get_label() for line in curves.axes[0].lines] == ["opencell", "hpa"]  # one line per domain
    raw = np.random.default_rng(0).integers(0, 4000, (2, 2, 16, 16)).astype(np.uint16)
    twelve_heads = plot_attention_maps(raw, np.random.default_rng(1).random((2, 12, 2, 2)),
                                       channel_names=("protein", "nucleus"))  # ViT-B/8
    for fig in (curves, twelve_heads, pl_analysis.plot_frechet(_frechet())):
        assert fig.get_figwidth() <= FULL_WIDTH + WIDTH_SLACK


def _frechet() -> pd.DataFrame:
    rows = []
    for backbone in ("opencell", "natural"):
        for a, b, distance in (("opencell", "opencell", 1.5), ("opencell", "hpa", 2.1), ("opencell", "natural", 50.0),
                               ("hpa", "hpa", 1.6), ("hpa", "natural", 51.0), ("natural", "natural", 4.0)):
            rows.append({"backbone": backbone, "domain_a": a, "domain_b": b, "distance": distance,
                         "low": 0.8 * distance, "high": 1.2 * distance, "size": 30,
                         "floor": 1.5 if "natural" not in (a, b) else 4.0})
    return pd.DataFrame(rows)


def test_frechet_heatmap_uses_a_log_scale_and_the_table_one_column_per_backbone():
    fig = pl_analysis.plot_frechet(_frechet())
    image = fig.axes[0].get_images()[0]
    assert isinstance(image.norm, LogNorm) and image.norm.vmin == 1.5 and image.norm.vmax == 51.0
    assert {t.get_text() for t in fig.axes[0].texts} == {"1.5", "2.1", "50", "1.6", "51", "4.0"}
    table = report_shift.frechet_table(_frechet())
    assert list(table.columns) == ["opencell backbone", "natural backbone"]
    assert table.loc["opencell – natural", "natural backbone"] == "50 [40, 60]"


def test_distance_vs_f1_labels_do_not_overlap():
    relation = pd.DataFrame({"set": ["hpa_mapping", "hpa_replication", "hpa_bag_of_channels", "opencell_native"],
                             "backbone": ["hpa", "hpa", "hpa", "opencell"], "distance": [2.0, 2.0, 2.0, 1.6],
                             "low": [1.8] * 3 + [1.2], "high": [2.3] * 3 + [2.0], "floor": [1.6] * 4,
                             "f1": [0.03, 0.035, 0.04, 0.03], "f1_std": [0.01] * 4,
                             "paper_f1": [0.8221, 0.7681, np.nan, 0.7918]})
    fig = pl_analysis.plot_distance_vs_f1(relation)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.canvas.draw()
    boxes = [text.get_window_extent(renderer) for text in fig.axes[0].texts]
    assert len(boxes) == 4
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_pca_note_says_what_the_first_axis_is():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"domain": ["opencell"] * 50 + ["natural"] * 50,
                          "pc1": np.r_[rng.normal(-5, 0.3, 50), rng.normal(5, 0.3, 50)], "pc2": rng.normal(0, 1, 100)})
    note = report_shift.pca_note({"hpa": (frame, np.array([0.97, 0.01]))})
    assert re.match(r"PC1 explains 97% of the pooled variance: the two-dimensional picture is essentially one axis\. "
                    r"(99|100)% of PC1's own variance lies between the domains' means, so PC1 is the offset", note)
    three = pd.concat([frame, frame.iloc[:50].assign(domain="hpa", pc1=lambda f: f["pc1"] + 1)], ignore_index=True)
    three["pc1"] += rng.normal(0, 4, len(three))  # within-domain spread as large as the offset
    assert "sets the **natural** images apart" in report_shift.pca_note({"hpa": (three, np.array([0.6, 0.2]))})
    mixed = frame.assign(domain=["opencell", "natural"] * 50)  # PC1 no longer tells the domains apart
    assert "not the difference between them" in report_shift.pca_note({"hpa": (mixed, np.array([0.97, 0.01]))})


def test_progress_bars_print_one_summary_line_in_a_book_build_and_nothing_else(monkeypatch, capsys):
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what the runner gives its kernels
    bar = progress_bar(total=3, desc="DINO vit_micro", unit="step", summary=True)
    for _ in range(3):
        bar.update()
    bar.close()
    assert list(progress_bar(range(4), desc="images")) == [0, 1, 2, 3]  # a loop's bar says nothing
    out, err = capsys.readouterr()
    assert re.fullmatch(r"DINO vit_micro: 3 steps in \d+\.\d s\n", out) and err == ""
    monkeypatch.delenv("TQDM_DISABLE")
    quiet = progress_bar(total=2, desc="rank 1", enabled=False, summary=True)
    quiet.update(2)
    quiet.close()
    assert capsys.readouterr() == ("", "")


@pytest.fixture(scope="module")
def probe_result():
    """A probe result on a 3-class toy problem whose last class is rare: the fixed 0.5 misses it, tuning does not."""
    rng = np.random.default_rng(0)
    labels = rng.random((120, 3)) < np.array([0.5, 0.4, 0.08])
    labels[labels.sum(1) == 0, 0] = True
    features = (labels * 2.0 + rng.normal(size=(120, 3))).astype(np.float32)
    split = make_split(labels, n_folds=3, seed=0)
    config = ProbeConfig(epochs=6, lr=3e-3, batch_size=32, tune_thresholds=True)
    result = run_probe_comparison({"hpa_mapping": features, "imagenet_mapping": rng.normal(size=(120, 3))},
                                  labels, split=split, config=config, class_names=("a", "b", "c"), probes=("mlp",),
                                  seed=0)
    return result, labels


def test_threshold_note_explains_the_gain_with_the_classes_the_fixed_threshold_misses(probe_result):
    result, _ = probe_result
    note = classifier.threshold_note(result)
    fixed = classifier.table_iii(result)["test_f1_mean"]
    assert note.startswith(f"Per-class thresholds tuned on each validation fold move test macro F1 from "
                           f"{fixed.min():.3f}–{fixed.max():.3f} to ")
    assert re.search(r"on average \d\.\d of the 3 classes score F1 = 0 on test", note)
    assert "median is 0." in note and "not calibrated at 0.5" in note


def test_chapter_readings_are_written_from_the_run(probe_result):
    result, labels = probe_result
    table = classifier.table_iii(result)
    split_frame = classifier.split_comparison(result, result)  # the same result twice: no leakage to report
    text = classifier.what_this_means(table, split_frame, synthetic=True)
    best = table.loc[table["test_f1_mean"].idxmax(), "set"]
    assert f"**{best}** scores highest" in text and "changes macro F1 by +0.000" in text
    assert "not comparable" in text
    reading = predictions.what_this_means(result, labels, set_name="hpa_mapping", fold=0)
    probs = result.probs("hpa_mapping")[0]
    exact = ((probs >= 0.5) == labels[result.test_index]).all(1).sum()
    assert f"gets {exact} of {len(result.test_index)} test images exactly right" in reading
