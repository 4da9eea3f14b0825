"""The synthetic domains: right shapes and vocabularies, deterministic, labels per protein, real plate effects,
and classes that a simple classifier can learn but not perfectly."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from dinoxfer_lib.config import DomainConfig
from dinoxfer_lib.data.classes import HPA_CHANNELS, HPA_CLASSES, OPENCELL_CHANNELS, OPENCELL_CLASSES
from dinoxfer_lib.data.synthetic import make_field, make_hpa_like, make_natural, make_opencell_like


def small(**kw):
    base = dict(n_images=240, image_size=32, n_groups=60, n_batches=3)
    return DomainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def opencell():
    return make_opencell_like(small(), seed=0)


def test_opencell_shapes_vocabulary_and_range(opencell):
    assert opencell.images.shape == (240, 2, 32, 32) and opencell.images.dtype == np.uint16
    assert opencell.channel_names == OPENCELL_CHANNELS and opencell.class_names == OPENCELL_CLASSES
    assert opencell.synthetic and opencell.domain == "opencell"
    assert opencell.images.min() > 0 and 3000 < opencell.images.max() < 65535
    assert {"image_id", "group", "batch", "domain"} <= set(opencell.obs.columns)


def test_deterministic_per_seed(opencell):
    again = make_opencell_like(small(), seed=0)
    other = make_opencell_like(small(), seed=1)
    assert np.array_equal(opencell.images, again.images) and np.array_equal(opencell.labels, again.labels)
    assert not np.array_equal(opencell.images, other.images)


def test_labels_belong_to_proteins_with_graded_first_label(opencell):
    for _, rows in opencell.obs.groupby("group").groups.items():
        rows = np.asarray(rows)
        assert (opencell.grades[rows] == opencell.grades[rows[0]]).all()
    counts = opencell.labels.sum(1)
    assert counts.min() >= 1 and counts.max() <= 3
    assert (opencell.grades.max(1) == 3).all()
    assert set(np.unique(opencell.grades[opencell.labels])) <= {1, 2, 3}
    assert (opencell.grades[~opencell.labels] == 0).all()


def test_every_class_present_and_imbalanced():
    data = make_opencell_like(small(n_images=1200, n_groups=240, image_size=16 * 2), seed=0)
    counts = data.labels.sum(0)
    assert counts.min() >= 5
    assert counts.max() / counts.min() > 5


def plate_backgrounds(data):
    background = np.percentile(data.images[:, 1].reshape(len(data), -1), 5, axis=1)
    return data.obs["batch"].to_numpy(), background


@pytest.mark.parametrize("strength, visible", [(1.0, True), (0.0, False)])
def test_plate_effect_is_real_and_switchable(strength, visible):
    data = make_opencell_like(small(batch_effect=strength, n_batches=4), seed=0)
    plates, background = plate_backgrounds(data)
    means = np.array([background[plates == p].mean() for p in np.unique(plates)])
    within = np.mean([background[plates == p].std() for p in np.unique(plates)])
    assert (means.max() - means.min() > 3 * within) == visible


def test_protein_channel_follows_the_label():
    """Nuclear classes put protein in the nucleus, cytoplasmic classes outside it."""
    rng = np.random.default_rng(0)
    from dinoxfer_lib.data.synthetic import RENDERERS

    field = make_field(rng, 64, n_cells=4, radius=11, aspect=1.3, nucleus_ratio=0.58)
    inside = lambda image: image[field.nucleus].mean() / (image[field.cytoplasm].mean() + 1e-6)
    for name in ("nucleoplasm", "chromatin", "nucleolus_gc"):
        assert inside(RENDERERS[name](field, rng)) > 5
    for name in ("cytoplasmic", "er", "membrane"):
        assert inside(RENDERERS[name](field, rng)) < 0.5


def handcrafted_features(data):
    """Position-free statistics a biologist would look at: where the protein sits relative to the nucleus,
    how spotty and how bright it is."""
    from scipy.ndimage import laplace

    rows = []
    for protein, nucleus in data.images.astype(np.float32):
        protein = (protein - np.percentile(protein, 5)) / (np.ptp(protein) + 1e-6)
        nucleus = (nucleus - nucleus.min()) / (np.ptp(nucleus) + 1e-6)
        inside, near = nucleus > 0.4, (nucleus > 0.05) & (nucleus <= 0.4)
        outside = nucleus <= 0.05
        rows.append([
            protein[inside].mean(), protein[near].mean() if near.any() else 0, protein[outside].mean(),
            *np.percentile(protein, [50, 90, 99]), (protein > 0.5).mean(), np.abs(laplace(protein)).mean(),
            np.corrcoef(protein.ravel(), nucleus.ravel())[0, 1],
        ])
    return np.nan_to_num(np.array(rows))


def test_learnable_but_not_trivial():
    data = make_opencell_like(small(n_images=600, n_groups=150), seed=3)
    x = StandardScaler().fit_transform(handcrafted_features(data))
    y = data.labels
    present = (y[:480].sum(0) > 0) & (y[480:].sum(0) > 0)
    model = OneVsRestClassifier(LogisticRegression(max_iter=500)).fit(x[:480], y[:480][:, present])
    f1 = f1_score(y[480:][:, present], model.predict(x[480:]), average="macro", zero_division=0)
    shuffled = np.random.default_rng(0).permutation(y[:480][:, present])
    chance_model = OneVsRestClassifier(LogisticRegression(max_iter=500)).fit(x[:480], shuffled)
    chance = f1_score(y[480:][:, present], chance_model.predict(x[480:]), average="macro", zero_division=0)
    assert chance + 0.1 < f1 < 0.9, (chance, f1)


def test_hpa_like():
    data = make_hpa_like(small(n_images=120, n_groups=40, n_cell_lines=3), seed=0)
    assert data.images.shape == (120, 4, 32, 32) and data.channel_names == HPA_CHANNELS
    assert data.class_names == HPA_CLASSES and data.pixel_size_um == 0.08
    assert data.obs["cell_line"].nunique() == 3
    assert 1 <= data.labels.sum(1).min() and data.labels.sum(1).max() <= 4


def test_natural_crops():
    data = make_natural(DomainConfig(n_images=60, image_size=32, n_groups=6, n_batches=1), seed=0)
    assert data.images.shape == (60, 3, 32, 32) and data.images.dtype == np.uint8
    assert (data.labels.sum(1) == 1).all() and len(data.class_names) == 6
    assert len({data.images[i].tobytes() for i in range(60)}) == 60
