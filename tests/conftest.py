"""Fixtures shared by the test modules."""

import copy

import pytest

# A profile small enough for a stage test to run in seconds: every domain synthetic at 32 px, three folds.
_SMALL_RUN = {
    "data": {
        "opencell": {"n_images": 90, "n_groups": 30, "n_batches": 2, "image_size": 32},
        "hpa": {"n_images": 24, "n_groups": 8, "n_batches": 2, "image_size": 32},
        "natural": {"n_images": 12, "n_groups": 4, "image_size": 32},
    },
    "split": {"n_folds": 3},
    "embed": {"img_size": 32, "batch_size": 64},
}


@pytest.fixture
def small_run():
    """Overrides of the smoke profile for stage tests (a fresh copy: a test may add its own sections)."""
    return copy.deepcopy(_SMALL_RUN)
