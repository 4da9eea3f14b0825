"""What a probe run returns: tidy scores plus the arrays the figures need, and the summaries the book shows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dinoxfer_lib.errors import DataError

SCORE_COLUMNS = ("set", "probe", "fold", "subset", "threshold", "class", "metric", "value")
HISTORY_COLUMNS = ("set", "probe", "fold", "epoch", "loss", "val_macro_f1", "kept")
# Spread over the fold models is the sample std (ddof=1): the five fold models are a sample of the models the
# recipe could have produced. The paper does not say; ddof=0 would report values sqrt(4/5) ≈ 0.89 times smaller.
STD_DDOF = 1


@dataclass
class ProbeResult:
    """Scores of probe models (every set x probe x fold) and what the figures need.

    Attributes
    ----------
    scores
        Tidy frame, one row per (set, probe, fold, subset, threshold, class, metric): ``subset`` in train/val/test;
        ``threshold`` the fixed one (``"0.5"``) or ``"tuned"``; ``class`` None on the macro-F1 rows; ``metric``
        ``"f1"``. k-NN train scores are leave-one-out (an image is not its own neighbour).
    test_probs
        ``(set, probe)`` → ``(folds, n_test, K)`` probabilities on the test images (rows in ``test_index`` order).
    history
        Per (set, probe, fold, epoch): mean training loss, validation macro F1 when monitored (else NaN), and
        ``kept``, true at the epoch whose weights the model ends with (the last; with plateau stopping, its best
        check, and no rows after its stop). Empty for k-NN.
    thresholds
        ``(set, probe)`` → ``(folds, K)`` per-class thresholds tuned on each fold's validation set (when tuned).
    test_index
        The test images' indices (``split.test``).
    class_names
        The K classes, in label-column order.
    fixed_threshold
        The label of the fixed threshold in ``scores`` (``"0.5"`` for the paper's).
    """

    scores: pd.DataFrame
    test_probs: dict[tuple[str, str], np.ndarray]
    history: pd.DataFrame
    test_index: np.ndarray
    class_names: tuple[str, ...]
    fixed_threshold: str = "0.5"
    thresholds: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @classmethod
    def concat(cls, results: Sequence[ProbeResult]) -> ProbeResult:
        """One result from several runs on the same split (e.g. one per probe)."""
        first = results[0]
        return cls(
            scores=pd.concat([r.scores for r in results], ignore_index=True),
            test_probs={k: v for r in results for k, v in r.test_probs.items()},
            history=pd.concat([r.history for r in results if len(r.history)] or [first.history], ignore_index=True),
            test_index=first.test_index,
            class_names=first.class_names,
            fixed_threshold=first.fixed_threshold,
            thresholds={k: v for r in results for k, v in r.thresholds.items()},
        )

    def save(self, folder: Path) -> None:
        """Write the result as plain files a user can open without this library (CSV, NPZ, JSON)."""
        folder = Path(folder)
        self.scores.to_csv(folder / "scores.csv", index=False)
        self.history.to_csv(folder / "history.csv", index=False)
        np.savez_compressed(folder / "test_probs.npz", **{_key(k): v for k, v in self.test_probs.items()})
        np.savez_compressed(folder / "thresholds.npz", **{_key(k): v for k, v in self.thresholds.items()})
        meta = {"test_index": self.test_index.tolist(), "class_names": list(self.class_names),
                "fixed_threshold": self.fixed_threshold}
        (folder / "result.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> ProbeResult:
        """Read what :meth:`save` wrote."""
        folder = Path(folder)
        meta = json.loads((folder / "result.json").read_text())
        with np.load(folder / "test_probs.npz") as probs, np.load(folder / "thresholds.npz") as thresholds:
            test_probs = {_unkey(k): probs[k] for k in probs.files}
            tuned = {_unkey(k): thresholds[k] for k in thresholds.files}
        scores = pd.read_csv(folder / "scores.csv", dtype={"threshold": str, "class": object})
        scores["class"] = scores["class"].where(scores["class"].notna(), None)  # macro rows, as when computed
        return cls(
            scores=scores,
            test_probs=test_probs,
            history=pd.read_csv(folder / "history.csv"),
            test_index=np.asarray(meta["test_index"], dtype=np.int64),
            class_names=tuple(meta["class_names"]),
            fixed_threshold=meta["fixed_threshold"],
            thresholds=tuned,
        )

    def probs(self, set_name: str, probe: str = "mlp") -> np.ndarray:
        """``(folds, n_test, K)`` test probabilities of one set and probe."""
        if (set_name, probe) not in self.test_probs:
            known = ", ".join(f"{s}/{p}" for s, p in self.test_probs)
            raise DataError(f"no probe results for set {set_name!r} with probe {probe!r}: have {known}")
        return self.test_probs[(set_name, probe)]

    def table(self, *, threshold: str | None = None) -> pd.DataFrame:
        """One row per (set, probe): test macro F1 mean ± std over the fold models, train and val means.

        The std is the sample std over folds (ddof=1, see :data:`STD_DDOF`). ``threshold`` picks the fixed
        threshold (default) or ``"tuned"``. At the fixed threshold, rows that also have tuned scores get their
        test F1 at the tuned thresholds as a second column pair (``test_f1_tuned_mean``, ``test_f1_tuned_std``;
        NaN for rows without): where 0.5 is far from each class's best cut, the two differ most.
        """
        table = self._summary(self._macro(threshold))
        if (threshold or self.fixed_threshold) != "tuned" and (self.scores["threshold"] == "tuned").any():
            tuned = self._summary(self._macro("tuned"))[["set", "probe", "test_f1_mean", "test_f1_std"]]
            tuned = tuned.rename(columns={"test_f1_mean": "test_f1_tuned_mean", "test_f1_std": "test_f1_tuned_std"})
            table = table.merge(tuned, on=["set", "probe"], how="left")
        table.attrs["std"] = f"sample std over fold models (ddof={STD_DDOF})"
        return table

    @staticmethod
    def _summary(macro: pd.DataFrame) -> pd.DataFrame:
        wide = macro.pivot_table(index=["set", "probe", "fold"], columns="subset", values="value", sort=False)
        grouped = wide.groupby(level=["set", "probe"], sort=False)
        return pd.DataFrame({
            "folds": grouped["test"].count(),
            "test_f1_mean": grouped["test"].mean(),
            "test_f1_std": grouped["test"].std(ddof=STD_DDOF),
            "val_f1_mean": grouped["val"].mean(),
            "train_f1_mean": grouped["train"].mean(),
        }).reset_index()

    def best_fold(self, set_name: str, *, probe: str = "mlp", by: str = "val") -> int:
        """The fold whose model has the highest macro F1 on ``by`` (``"val"``, or ``"test"`` as the paper may have).

        The paper shows predictions of "the best-performing fold" without saying on which data it was best;
        choosing on validation keeps the test images unseen by the choice.
        """
        macro = self._macro(None)
        rows = macro[(macro["set"] == set_name) & (macro["probe"] == probe) & (macro["subset"] == by)]
        if rows.empty:
            raise DataError(f"no {by!r} scores for set {set_name!r} with probe {probe!r}")
        return int(rows.loc[rows["value"].idxmax(), "fold"])

    def per_class(self, set_name: str, *, probe: str = "mlp", subset: str = "test",
                  threshold: str | None = None) -> pd.DataFrame:
        """Per-class F1 of one set and probe: mean and std (ddof=1) over the fold models, classes as the index."""
        threshold = threshold or self.fixed_threshold
        s = self.scores
        rows = s[(s["set"] == set_name) & (s["probe"] == probe) & (s["subset"] == subset)
                 & (s["threshold"] == threshold) & s["class"].notna()]
        if rows.empty:
            raise DataError(f"no per-class {subset!r} scores for set {set_name!r}, probe {probe!r}, threshold "
                            f"{threshold!r}")
        grouped = rows.groupby("class", sort=False)["value"]
        return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=STD_DDOF)}).reindex(
            [c for c in self.class_names if c in grouped.groups])

    def _macro(self, threshold: str | None) -> pd.DataFrame:
        threshold = threshold or self.fixed_threshold
        s = self.scores
        macro = s[s["class"].isna() & (s["metric"] == "f1") & (s["threshold"] == threshold)]
        if macro.empty:
            raise DataError(f"no macro-F1 scores at threshold {threshold!r}: have "
                            f"{sorted(s['threshold'].unique())}")
        return macro


def _key(set_and_probe: tuple[str, str]) -> str:
    return "|".join(set_and_probe)


def _unkey(key: str) -> tuple[str, str]:
    set_name, probe = key.rsplit("|", 1)
    return set_name, probe
