"""Class vocabularies of the three domains (PAPER_SPEC.md §2), as data.

Order matters: it is the column order of every label matrix. ``OPENCELL_CLASSES`` is the OpenCell ontology
(17 classes, Cho et al. 2022); ``HPA_CLASSES`` the 28 classes of the HPA Kaggle 2018 challenge in the index order
of its ``train.csv``.
"""

OPENCELL_CLASSES: tuple[str, ...] = (
    "big_aggregates",
    "cell_contact",
    "centrosome",
    "chromatin",
    "cytoplasmic",
    "cytoskeleton",
    "er",
    "focal_adhesions",
    "golgi",
    "membrane",
    "mitochondria",
    "nuclear_membrane",
    "nuclear_punctae",
    "nucleolus_fc_dfc",
    "nucleolus_gc",
    "nucleoplasm",
    "vesicles",
)

HPA_CLASSES: tuple[str, ...] = (
    "Nucleoplasm",
    "Nuclear membrane",
    "Nucleoli",
    "Nucleoli fibrillar center",
    "Nuclear speckles",
    "Nuclear bodies",
    "Endoplasmic reticulum",
    "Golgi apparatus",
    "Peroxisomes",
    "Endosomes",
    "Lysosomes",
    "Intermediate filaments",
    "Actin filaments",
    "Focal adhesion sites",
    "Microtubules",
    "Microtubule ends",
    "Cytokinetic bridge",
    "Mitotic spindle",
    "Microtubule organizing center",
    "Centrosome",
    "Lipid droplets",
    "Plasma membrane",
    "Cell junctions",
    "Mitochondria",
    "Aggresome",
    "Cytosol",
    "Cytoplasmic bodies",
    "Rods & rings",
)

OPENCELL_CHANNELS: tuple[str, ...] = ("protein", "nucleus")
HPA_CHANNELS: tuple[str, ...] = ("protein", "microtubules", "nucleus", "er")
HPA_KAGGLE_COLOURS: dict[str, str] = {"protein": "green", "microtubules": "red", "nucleus": "blue", "er": "yellow"}
NATURAL_CHANNELS: tuple[str, ...] = ("red", "green", "blue")

# OpenCell grades: 3 = prominent, 2 = less pronounced, 1 = weak (0 = label absent).
GRADES: tuple[int, ...] = (1, 2, 3)
