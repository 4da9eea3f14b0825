"""dinoxfer: DINO ViTs transferred across microscopy domains for protein localisation, as a reproducible book.

Notebooks call this library; all logic lives here. Entry points: :func:`dinoxfer_lib.config.load_config` (profiles),
:class:`dinoxfer_lib.store.ArtifactStore` (artifacts + provenance), :mod:`dinoxfer_lib.pipeline` (the stages),
:mod:`dinoxfer_lib.report` (every table and reading a chapter shows), :mod:`dinoxfer_lib.paper` (the paper's
numbers).
"""

__version__ = "0.1.0"
