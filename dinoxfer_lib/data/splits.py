"""The paper's split: a 90/10 hold-out, then K-fold cross-validation on the 90 %, multilabel-stratified.

Both steps use iterative stratification (Sechidis et al. 2011, package ``iterative-stratification``) so every
class, rare ones included, keeps its prevalence in the test set and in each fold. The paper splits by image; with
``groups`` (protein ids) the split is leakage-free: the proteins themselves are stratified (each protein's label
vector is the union of its images' labels) and their images follow them, so no protein is on both sides of the
hold-out or in two validation folds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit

from dinoxfer_lib.errors import ConfigError, DataError


@dataclass(frozen=True)
class Split:
    """Indices (into the dataset) of the held-out test images and of each fold's train/validation images."""

    test: np.ndarray
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]
    grouped: bool
    seed: int

    @property
    def n_images(self) -> int:
        return len(self.test) + sum(len(val) for _, val in self.folds)

    @property
    def dev(self) -> np.ndarray:
        """The non-test ("development") images: what DINO trains on and the folds partition."""
        return np.sort(np.concatenate([val for _, val in self.folds]))

    @property
    def fold_of(self) -> np.ndarray:
        """Per image: the fold whose validation set holds it, -1 for test images."""
        fold = np.full(self.n_images, -1, dtype=int)
        for k, (_, val) in enumerate(self.folds):
            fold[val] = k
        return fold

    def to_frame(self, image_ids: Sequence[str]) -> pd.DataFrame:
        """One row per image: ``image_id``, ``subset`` (test/dev) and ``fold`` (-1 for test)."""
        image_ids = np.asarray(image_ids, dtype=str)
        if len(image_ids) != self.n_images:
            raise DataError(f"split covers {self.n_images} images but {len(image_ids)} image ids were given")
        fold = self.fold_of
        return pd.DataFrame({"image_id": image_ids, "subset": np.where(fold < 0, "test", "dev"), "fold": fold})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, image_ids: Sequence[str], *, grouped: bool, seed: int) -> Split:
        """Rebuild a split stored by :meth:`to_frame`, checking it belongs to the dataset at hand.

        A stored split is trusted only if it lists exactly the dataset's image ids in the same order and its
        ``subset`` and ``fold`` columns agree; anything else means the dataset changed under the split.
        ``grouped`` and ``seed`` are not in the table: the store records them in the split's provenance.
        """
        missing = [c for c in ("image_id", "subset", "fold") if c not in frame.columns]
        if missing:
            raise DataError(f"stored split lacks columns {missing}: expected image_id, subset, fold")
        image_ids = np.asarray(image_ids, dtype=str)
        stored = frame["image_id"].astype(str).to_numpy()
        if len(stored) != len(image_ids) or not np.array_equal(stored, image_ids):
            raise DataError(f"stored split lists {len(stored)} image ids that do not match the dataset's {len(image_ids)}")
        fold = frame["fold"].to_numpy(dtype=int)
        expected_subset = np.where(fold < 0, "test", "dev")
        n_folds = int(fold.max()) + 1 if len(fold) else 0
        if (frame["subset"].astype(str).to_numpy() != expected_subset).any() or fold.min() < -1:
            raise DataError("stored split is inconsistent: subset must be 'test' exactly where fold is -1")
        if n_folds < 2 or set(fold[fold >= 0]) != set(range(n_folds)):
            raise DataError(f"stored split is inconsistent: folds must be numbered 0..K-1 with K >= 2, got {n_folds}")
        positions = np.arange(len(fold))
        folds = tuple((positions[(fold >= 0) & (fold != k)], positions[fold == k]) for k in range(n_folds))
        return cls(test=positions[fold < 0], folds=folds, grouped=grouped, seed=seed)


def make_split(
    labels: np.ndarray,
    *,
    groups: Sequence | None = None,
    test_fraction: float = 0.1,
    n_folds: int = 5,
    seed: int = 0,
) -> Split:
    """Multilabel-stratified hold-out + K folds; grouped by ``groups`` when given.

    The hold-out is drawn first (``MultilabelStratifiedShuffleSplit``) and never looked at again; the K folds
    (``MultilabelStratifiedKFold``) partition the rest, so DINO training and every probe see the same test set.
    With ``groups`` the units that are stratified are the groups, each labelled by the union of its images'
    labels; a group's images then follow it. Sizes are counted in groups, so with uneven group sizes the
    test fraction and fold sizes hold in groups exactly and in images only approximately.

    Parameters
    ----------
    labels
        ``(N, K)`` multi-hot matrix. Unlabelled rows are allowed; they fill the subsets up to their sizes.
    groups
        Optional length-N group id per image (protein). Images of one group end up on the same side everywhere.
    test_fraction, n_folds, seed
        The hold-out fraction (paper: 0.1), the number of folds (paper: 5) and the seed; same inputs, same split.

    Returns
    -------
    Split
        Sorted absolute image indices of the test set and of each fold's train and validation sets.

    Raises
    ------
    ConfigError
        ``test_fraction`` outside (0, 1) or fewer than 2 folds.
    DataError
        ``labels`` not 2-D, ``groups`` of the wrong length, or too few images (groups) for one test unit plus
        ``n_folds`` non-empty folds.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] == 0:
        raise DataError(f"labels must be a 2-D (images, classes) matrix with classes, got shape {labels.shape}")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"config key 'split.test_fraction' = {test_fraction!r}: expected between 0 and 1")
    if n_folds < 2:
        raise ConfigError(f"config key 'split.n_folds' = {n_folds!r}: expected >= 2")
    if groups is None:
        units, unit_of_image = labels.astype(int), np.arange(len(labels))
        what = "images"
    else:
        groups = np.asarray(groups)
        if len(groups) != len(labels):
            raise DataError(f"groups has {len(groups)} entries for {len(labels)} images")
        names, unit_of_image = np.unique(groups, return_inverse=True)
        units = np.zeros((len(names), labels.shape[1]), dtype=int)
        np.maximum.at(units, unit_of_image, labels.astype(int))  # union of each group's labels
        what = "groups"
    n_units = len(units)
    n_test = int(round(test_fraction * n_units))
    if n_test < 1 or n_units - n_test < n_folds:
        raise DataError(
            f"{n_units} {what} cannot give a {test_fraction:.0%} hold-out and {n_folds} folds: "
            f"need at least {n_folds + 1} {what} and one test {what[:-1]}"
        )
    # iterstrat accepts only multi-label matrices; one class plus its complement is plain stratification. (With
    # more classes the unlabelled rows stay unmarked: iterstrat uses them last, to even out the subset sizes.)
    strata = np.column_stack([units, ~units.any(axis=1)]) if units.shape[1] == 1 else units
    holdout = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_test, random_state=seed)
    dev_units, test_units = next(holdout.split(np.zeros(n_units), strata))
    kfold = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    unit_folds = [(dev_units[tr], dev_units[va]) for tr, va in kfold.split(np.zeros(len(dev_units)), strata[dev_units])]

    def images_of(selected_units: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(unit_of_image, selected_units))

    folds = tuple((images_of(tr), images_of(va)) for tr, va in unit_folds)
    return Split(test=images_of(test_units), folds=folds, grouped=groups is not None, seed=seed)


def split_summary(split: Split, labels: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Per class, its prevalence overall, in the test set and in each validation fold (tidy frame)."""
    labels = np.asarray(labels, dtype=float)
    subsets = {"all": np.arange(len(labels)), "test": split.test}
    subsets.update({f"fold {k}": val for k, (_, val) in enumerate(split.folds)})
    rows = [
        {"class": name, "subset": subset, "prevalence": float(labels[index, j].mean())}
        for subset, index in subsets.items()
        for j, name in enumerate(class_names)
    ]
    return pd.DataFrame(rows)


def describe_splits(splits: Mapping[str, Split], *, groups: Sequence) -> pd.DataFrame:
    """Sizes and group leakage of several splits of one dataset, one column per split."""
    groups = np.asarray(groups)
    columns = {}
    for name, split in splits.items():
        test_groups = set(groups[split.test])
        dev_groups = set(groups[split.dev])
        fold_groups = [set(groups[val]) for _, val in split.folds]
        shared_between_folds = set().union(
            *(a & b for i, a in enumerate(fold_groups) for b in fold_groups[i + 1 :])
        )
        columns[name] = {
            "test images": len(split.test),
            "development images": len(split.dev),
            "folds": len(split.folds),
            "validation images per fold": "–".join(
                str(f) for f in (min(len(v) for _, v in split.folds), max(len(v) for _, v in split.folds))
            ),
            "proteins in test": len(test_groups),
            "proteins on both sides of the hold-out": len(test_groups & dev_groups),
            "proteins in more than one validation fold": len(shared_between_folds),
        }
    return pd.DataFrame(columns)
