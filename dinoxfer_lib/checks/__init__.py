"""Checks of what readers and users see, run in a real (headless) browser.

- :mod:`~dinoxfer_lib.checks.book`: every page of a built book, as a reader at a laptop width sees it.
- :mod:`~dinoxfer_lib.checks.lab`: a notebook opened and run through JupyterLab's user interface.
- :mod:`~dinoxfer_lib.checks.explorer`: the embedding explorer's tooltip shows an image.

Each module is also a command (``python -m dinoxfer_lib.checks.book``) that prints a report and exits non-zero
when a check fails; ``make check-book`` and ``make check-lab`` call them.
"""
