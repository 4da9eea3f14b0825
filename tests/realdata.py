"""Write small (or OpenCell-sized) datasets in the real on-disk layouts the readers document.

Independent of ``dinoxfer_lib.data.synthetic``: these functions only produce files exactly as a lab or a download
would hold them, so tests and the real-format fixture book exercise the readers and everything after them.

- :func:`write_opencell`: ``annotations.csv`` with the manifest's columns (``data_manifests/opencell.yaml``) and one
  ``(2, size, size)`` uint16 TIFF per image, channels (protein, nucleus);
- :func:`write_hpa_kaggle`: ``train.csv`` (``Id``, ``Target`` = space-separated class indices) and four 8-bit
  greyscale PNGs per image, ``<Id>_{red,green,blue,yellow}.png``;
- :func:`write_table`: a CSV of ``path, labels, group, batch`` and one 3-channel 8-bit PNG per image.

Images carry a little signal: each class owns a coarse random pattern (seeded by its name), and an image's
protein channel is the sum of its classes' patterns, smoothly upsampled, plus noise. A probe can learn from it; a
reader that swaps channels or rows changes the numbers. Images of one protein share its labels, as in OpenCell.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from dinoxfer_lib.data.classes import HPA_CLASSES, HPA_KAGGLE_COLOURS, OPENCELL_CLASSES

OPENCELL_COLUMNS = ("filename", "target_name", "ensg_id", "plate_id", "well_id", "grade_3", "grade_2", "grade_1")
PATTERN_CELLS = 6  # side of each class's coarse pattern, upsampled to the image size


def write_opencell(
    root: str | Path, n_images: int, *, size: int = 600, seed: int = 0, images_per_protein: int = 5,
    n_plates: int = 4, n_unlabelled: int = 0,
) -> Path:
    """OpenCell layout under ``root``: ``annotations.csv`` + ``images/<filename>.tif``; returns the table's path.

    ``n_unlabelled`` of the ``n_images`` rows (the last ones) have no label in any grade column, as OpenCell's
    unannotated images.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        protein = i // images_per_protein
        grades = {} if i >= n_images - n_unlabelled else _protein_grades(protein, seed)
        filename = f"OC-FOV_P{protein:05d}_{i:05d}.tif"
        signal = _signal([name for name, grade in grades.items() if grade > 1], size, rng)
        protein_plane = (300 + 4000 * signal + rng.normal(0, 60, (size, size))).clip(0, 65535)
        nucleus_plane = (200 + 6000 * _nucleus(size) + rng.normal(0, 60, (size, size))).clip(0, 65535)
        image = np.stack([protein_plane, nucleus_plane]).astype(np.uint16)
        tifffile.imwrite(root / "images" / filename, image, photometric="minisblack")
        rows.append({
            "filename": filename, "target_name": f"PROT{protein}", "ensg_id": f"ENSG{protein:011d}",
            "plate_id": f"P{protein % n_plates + 1}", "well_id": f"{'ABCDEFGH'[protein % 8]}{protein % 12 + 1}",
            **{f"grade_{g}": ";".join(n for n, grade in grades.items() if grade == g) for g in (3, 2, 1)},
        })
    table = root / "annotations.csv"
    pd.DataFrame(rows, columns=list(OPENCELL_COLUMNS)).to_csv(table, index=False)
    return table


def write_hpa_kaggle(root: str | Path, n_images: int, *, size: int = 512, seed: int = 0, split: str = "train") -> Path:
    """HPA Kaggle layout under ``root``: ``<split>.csv`` + ``<split>/<Id>_<colour>.png``; returns the table's path.

    Targets are numeric class indices into the 28 HPA classes, 1-3 per image; the green (protein) channel carries
    the classes' patterns.
    """
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        image_id = hashlib.sha1(f"{seed}-{i}".encode()).hexdigest()[:8] + f"-{i:05d}"
        classes = sorted(rng.choice(len(HPA_CLASSES), size=rng.integers(1, 4), replace=False).tolist())
        planes = {
            "green": 20 + 200 * _signal([HPA_CLASSES[k] for k in classes], size, rng),
            "red": 30 + 120 * _signal(["microtubules"], size, rng),
            "blue": 10 + 220 * _nucleus(size),
            "yellow": 25 + 100 * _signal(["er"], size, rng),
        }
        for colour in HPA_KAGGLE_COLOURS.values():
            plane = (planes[colour] + rng.normal(0, 4, (size, size))).clip(0, 255).astype(np.uint8)
            Image.fromarray(plane).save(root / split / f"{image_id}_{colour}.png")
        rows.append({"Id": image_id, "Target": " ".join(map(str, classes))})
    table = root / f"{split}.csv"
    pd.DataFrame(rows, columns=["Id", "Target"]).to_csv(table, index=False)
    return table


def write_table(
    root: str | Path, n_images: int, *, size: int = 64, seed: int = 0,
    class_names: tuple[str, ...] = ("bark", "leaf", "stone", "water"), images_per_group: int = 4,
) -> Path:
    """A generic table under ``root``: ``table.csv`` (``path, labels, group, batch``) + ``images/<name>.png``, each
    an 8-bit RGB PNG; returns the table's path (the ``path`` cells are relative to it)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        group = i // images_per_group
        label = class_names[group % len(class_names)]
        colour = np.array([40, 90, 160]) * (1 + class_names.index(label)) % 200
        signal = _signal([label], size, rng)
        image = (colour[None, None, :] + 50 * signal[..., None] + rng.normal(0, 6, (size, size, 3))).clip(0, 255)
        name = f"images/img{i:05d}.png"
        Image.fromarray(image.astype(np.uint8)).save(root / name)
        rows.append({"path": name, "labels": label, "group": f"G{group}", "batch": f"B{group % 3}"})
    table = root / "table.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table


def _protein_grades(protein: int, seed: int) -> dict[str, int]:
    """One protein's ``{class: grade}``: 1-3 classes, the first prominent; the same for all its images."""
    rng = np.random.default_rng([seed, protein])
    names = rng.choice(len(OPENCELL_CLASSES), size=rng.integers(1, 4), replace=False)
    return {OPENCELL_CLASSES[k]: 3 if j == 0 else int(rng.integers(1, 4)) for j, k in enumerate(names)}


def _signal(class_names: list[str], size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, size)`` in [0, 1]: the sum of the classes' coarse patterns, upsampled, jittered per image."""
    coarse = np.zeros((PATTERN_CELLS, PATTERN_CELLS))
    for name in class_names:
        pattern_seed = int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "little")
        coarse += np.random.default_rng(pattern_seed).random((PATTERN_CELLS, PATTERN_CELLS)) > 0.6
    coarse = np.roll(coarse, tuple(rng.integers(-1, 2, 2)), axis=(0, 1)) / max(1, len(class_names))
    image = Image.fromarray(coarse.astype(np.float32)).resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.float64)


def _nucleus(size: int) -> np.ndarray:
    """A centred disc covering a third of the field's width."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return (np.hypot(yy, xx) < size / 6).astype(np.float64)


def main(argv: list[str] | None = None) -> None:
    """``python tests/realdata.py opencell|hpa_kaggle|table ROOT N [--size S] [--seed K]``: write one layout, e.g.
    an OpenCell-sized set for measuring the reader (``opencell /tmp/oc 6301 --size 600``, about 9 GB)."""
    import argparse

    writers = {"opencell": write_opencell, "hpa_kaggle": write_hpa_kaggle, "table": write_table}
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("layout", choices=writers)
    parser.add_argument("root", type=Path)
    parser.add_argument("n_images", type=int)
    parser.add_argument("--size", type=int, default=None, help="image side (default: the layout's real size)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    options = {"seed": args.seed, **({"size": args.size} if args.size else {})}
    print(writers[args.layout](args.root, args.n_images, **options))


if __name__ == "__main__":
    main()
