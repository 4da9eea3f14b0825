"""Dataset summaries (Table I analogue, label statistics, plate intensities), composites, palettes and the
Datasets-chapter figures, on a handmade ImageSet whose numbers are known by construction."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from dinoxfer_lib import paper
from dinoxfer_lib.data import summary
from dinoxfer_lib.report import datasets as report_datasets
from dinoxfer_lib.data.classes import HPA_CHANNELS, OPENCELL_CHANNELS
from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.pl import datasets as pl_datasets
from dinoxfer_lib.pl.images import composite
from dinoxfer_lib.pl.palettes import batch_colors, class_colors

CLASSES = ("nucleoplasm", "chromatin", "golgi", "er")
# Rows: images; columns: CLASSES; values: grades (0 = absent). "er" has no image on purpose.
GRADES = np.array(
    [
        [3, 1, 0, 0],
        [3, 0, 0, 0],
        [2, 0, 3, 0],
        [0, 3, 0, 0],
        [0, 0, 0, 0],
        [1, 2, 0, 0],
    ],
    dtype=np.int8,
)
PLATE_OFFSET = 500.0


def make_imageset(images=None, *, offset=PLATE_OFFSET):
    rng = np.random.default_rng(0)
    if images is None:
        images = rng.poisson(100, size=(6, 2, 16, 16)).astype(np.uint16)
        images[3:] += np.uint16(offset)  # plate p2 is brighter by a constant offset
    obs = pd.DataFrame(
        {
            "image_id": [f"img{i}" for i in range(6)],
            "group": ["g1", "g1", "g2", "g3", "g3", "g4"],
            "batch": ["p1", "p1", "p1", "p2", "p2", "p2"],
            "domain": "opencell",
            "cell_line": ["HEK"] * 6,
        }
    )
    return ImageSet(
        images=images,
        labels=GRADES > 0,
        grades=GRADES,
        obs=obs,
        class_names=CLASSES,
        channel_names=OPENCELL_CHANNELS,
        domain="opencell",
        pixel_size_um=0.102,
        synthetic=True,
    )


@pytest.fixture(scope="module", autouse=True)
def agg_backend():
    """Draw off-screen, as the book's executed notebooks do."""
    plt.switch_backend("Agg")


@pytest.fixture(scope="module")
def dataset():
    return make_imageset()


def test_summarize_domains_counts(dataset):
    table = report_datasets.summarize_domains([dataset])
    column = table["opencell"]
    assert column["Images"] == "6"
    assert column["Channels"] == "2 (protein, nucleus)"
    assert column["Classes"] == "4"
    assert column["Labelled images"] == "5"
    assert column["Labels per image (mean, min–max)"] == "1.60 (1–2)"
    assert column["Labels by grade (3 / 2 / 1)"] == "4 / 2 / 2"
    assert column["Groups (proteins / antibodies)"] == "4"
    assert column["Batches (plates)"] == "2"
    assert column["Cell lines"] == "1"
    assert column["Image size"] == "16×16 px"
    assert column["Bit depth (dtype)"] == "16-bit (uint16)"
    assert column["Pixel size"] == "0.102 µm"
    assert column["Source"] == "generated (synthetic stand-in)"


def test_paper_table_i_shape():
    assert list(paper.TABLE_I.columns) == ["ImageNet-1k", "OpenCell", "HPA Image Classification"]
    assert paper.TABLE_I.loc["Images", "OpenCell"] == "6,301"
    assert paper.TABLE_I.loc["Pixel size", "HPA Image Classification"].startswith("0.08")


def test_label_frequency(dataset):
    freq = summary.label_frequency(dataset).set_index("class")
    assert freq["count"].to_dict() == {"nucleoplasm": 4, "chromatin": 3, "golgi": 1, "er": 0}
    assert list(freq.index) == ["nucleoplasm", "chromatin", "golgi", "er"]  # most frequent first
    assert freq.loc["nucleoplasm", ["grade 3", "grade 2", "grade 1"]].tolist() == [2, 1, 1]
    assert (freq[["grade 3", "grade 2", "grade 1"]].sum(axis=1) == freq["count"]).all()
    assert freq.loc["chromatin", "fraction"] == pytest.approx(0.5)


def test_cooccurrence_symmetric_with_counts_on_diagonal(dataset):
    counts = summary.label_cooccurrence(dataset)
    assert np.array_equal(counts.to_numpy(), counts.to_numpy().T)
    assert np.diag(counts).tolist() == [4, 3, 1, 0]
    assert counts.loc["nucleoplasm", "chromatin"] == 2 and counts.loc["chromatin", "golgi"] == 0
    conditional = summary.label_cooccurrence(dataset, normalize=True)
    assert conditional.loc["chromatin", "nucleoplasm"] == pytest.approx(2 / 3)
    assert conditional.loc["nucleoplasm", "chromatin"] == pytest.approx(2 / 4)
    assert conditional.loc["er"].isna().all()


def test_describe_labels_numbers(dataset):
    text = report_datasets.describe_labels(dataset)
    assert "**nucleoplasm** (4 images" in text
    assert "**golgi** (1 images" in text and "imbalance ratio of 4.0" in text
    assert "25.0% of all 8 labels are weak" in text
    assert "**nucleoplasm** + **chromatin** (2 images)" in text
    assert "No image carries er" in text


def test_batch_stats_find_planted_plate_offset(dataset):
    stats = summary.batch_intensity_stats(dataset)
    assert stats.loc[("p1", "protein"), "images"] == 3
    for channel in OPENCELL_CHANNELS:
        shift = stats.loc[("p2", channel), "background"] - stats.loc[("p1", channel), "background"]
        assert shift == pytest.approx(PLATE_OFFSET, abs=10)
    assert stats.loc[("p1", "protein"), "mean"] == pytest.approx(100, abs=3)


def test_batch_stats_chunked_on_memmap_match(dataset, tmp_path):
    np.save(tmp_path / "images.npy", dataset.images)
    mapped = make_imageset(np.load(tmp_path / "images.npy", mmap_mode="r"))
    image_bytes = 2 * 16 * 16 * 4
    chunked = summary.batch_intensity_stats(mapped, chunk_bytes=2 * image_bytes)  # three chunks of two images
    pd.testing.assert_frame_equal(chunked, summary.batch_intensity_stats(dataset))


def test_composite_opencell_protein_is_red():
    image = np.zeros((2, 8, 8), dtype=np.uint16)
    image[0] = np.arange(64).reshape(8, 8)
    rgb = composite(image, OPENCELL_CHANNELS)
    assert rgb.shape == (8, 8, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[..., 0].max() == pytest.approx(1.0) and not rgb[..., 1:].any()


def test_composite_hpa_convention():
    image = np.zeros((4, 8, 8), dtype=np.float32)
    image[HPA_CHANNELS.index("protein")] = np.arange(64).reshape(8, 8)
    rgb = composite(image, HPA_CHANNELS)
    assert rgb[..., 1].max() > 0 and not rgb[..., [0, 2]].any()
    image[:] = 0
    image[HPA_CHANNELS.index("er")] = np.arange(64).reshape(8, 8)
    yellow = composite(image, HPA_CHANNELS)
    assert np.array_equal(yellow[..., 0], yellow[..., 1]) and not yellow[..., 2].any()


def test_composite_unknown_channels_and_bad_mapping():
    image = np.random.default_rng(0).random((5, 4, 4))
    names = ("a", "b", "c", "d", "e")
    assert composite(image, names).shape == (4, 4, 3)
    with pytest.raises(DataError, match="unknown channels"):
        composite(image, names, mapping={"z": "red"})


def test_palettes_stable():
    assert class_colors(CLASSES) == class_colors(CLASSES)
    full, subset = class_colors(CLASSES), class_colors(["golgi", "nucleoplasm"])
    assert subset == {"golgi": full["golgi"], "nucleoplasm": full["nucleoplasm"]}
    assert len(set(full.values())) == len(CLASSES)
    assert batch_colors(["p2", "p1", "p1"]) == batch_colors(["p1", "p2"])


def _axes_count(fig):
    return len(fig.axes) + sum(len(sub.axes) for sub in fig.subfigs)


@pytest.mark.parametrize(
    ("draw", "expected_axes"),
    [
        (lambda d: pl_datasets.plot_class_montage(d, per_class=2), 3 * 2),  # "er" has no image: skipped
        (lambda d: pl_datasets.plot_label_frequency(summary.label_frequency(d)), 1),
        (lambda d: pl_datasets.plot_label_frequency(summary.label_frequency(d), log=True), 1),
        (lambda d: pl_datasets.plot_cooccurrence(summary.label_cooccurrence(d)), 2),  # heatmap + colour bar
        (lambda d: pl_datasets.plot_cooccurrence(summary.label_cooccurrence(d, normalize=True)), 2),
        (pl_datasets.plot_batch_effects, 2 * 2 + 2),  # 2 boxplots per channel, 1 mean image per plate
    ],
    ids=["montage", "frequency", "frequency-log", "cooccurrence", "cooccurrence-normalized", "batch-effects"],
)
def test_plots_return_figures(dataset, draw, expected_axes):
    fig = draw(dataset)
    assert isinstance(fig, plt.Figure)
    assert len(fig.get_axes()) == expected_axes
    plt.close(fig)


def test_plot_split_returns_figure():
    rows = [
        {"class": name, "subset": subset, "prevalence": prevalence}
        for name, prevalence in zip(CLASSES, (0.5, 0.3, 0.1, 0.05))
        for subset in ("all", "test", "fold 0", "fold 1")
    ]
    fig = pl_datasets.plot_split(pd.DataFrame(rows))
    assert isinstance(fig, plt.Figure) and len(fig.get_axes()) == 2
    plt.close(fig)


def test_plot_on_given_axes_returns_its_figure(dataset):
    fig, ax = plt.subplots()
    assert pl_datasets.plot_label_frequency(summary.label_frequency(dataset), ax=ax) is fig
    plt.close(fig)
