"""Settings of the EM domain pair (``data.em`` of a profile): where Lucchi++ and VNC come from, and their patches.

Kept apart from :mod:`dinoxfer_lib.data.em` (readers and the synthetic stand-ins) so that
:mod:`dinoxfer_lib.config` can validate a profile without importing the readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dinoxfer_lib.bounds import check_bounds
from dinoxfer_lib.errors import require_config as _require

EM_DOMAINS: tuple[str, ...] = ("lucchi", "vnc")
# The VNC README proposes training on 80 % of stack 1's 20 sections and validating on the other 20 %.
VNC_TEST_SECTIONS = 4


@dataclass(frozen=True)
class EMDataConfig:
    """Where the EM pair comes from and how it is cut into the patches the models see.

    Registered as ``data.em`` of a profile; :meth:`validate` names offending keys as ``data.em.<field>``.
    """

    # "synthetic" = the stand-ins of dinoxfer_lib.data.em; "real" = Lucchi++ and VNC read from lucchi_path, vnc_path.
    source: Literal["synthetic", "real"] = "synthetic"
    # Real only: the Lucchi++ zip or folder (`dinoxfer fetch lucchi_pp`) and the VNC zip or folder (`dinoxfer fetch
    # vnc`).
    lucchi_path: str | None = field(default=None, metadata={"path": True})
    vnc_path: str | None = field(default=None, metadata={"path": True})
    # Side of the square patches in pixels: real slices are tiled to it; a multiple of the backbone's patch size.
    patch_size: int = 64
    # Synthetic only: tissue blocks per domain, slices per block, lateral pixel size (nm) and the blocks held out
    # for testing. The demo's 10 x 16 patches per domain take seconds.
    n_stacks: int = 10
    n_slices: int = 16
    pixel_nm: float = 10.0
    test_stacks: int = 2
    # Real only: VNC sections held out for testing (the last ones).
    vnc_test_sections: int = VNC_TEST_SECTIONS

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value (bounds:
        :data:`~dinoxfer_lib.bounds.BOUNDS`)."""
        check_bounds(self, key)
        _require(self.test_stacks < self.n_stacks, f"{key}.test_stacks", self.test_stacks,
                 f"between 1 and n_stacks - 1 ({self.n_stacks - 1}): one block to train on")
        if self.source == "real":
            for name in ("lucchi_path", "vnc_path"):
                _require(getattr(self, name) is not None, f"{key}.{name}", getattr(self, name),
                         "a zip file or folder (source is 'real')")
