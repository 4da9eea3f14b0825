"""Errors a user can act on.

Every failure caused by the user's input (a config key, a file, a label, a download) raises a subclass of
:class:`DinoxferError` whose message is one line naming the thing and what was expected. The CLI prints that
line without a traceback; notebooks show it as the cell's error. A value the user gave is shown through
:func:`shown`, so that a huge or self-referencing value (a YAML alias bomb) never makes a huge message.
"""

import reprlib

# A message shows at most this many characters of one user-given value.
SHOWN_CHARS = 200

# Bounded repr: the work is bounded too (nesting depth x items per level), not just the length of the result.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset, _REPR.maxdict = 2, 6, 6, 6, 6
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOWN_CHARS


class DinoxferError(Exception):
    """Base class: a one-line, user-facing error."""


class ConfigError(DinoxferError):
    """A profile or override has an unknown key, a wrong type or an impossible value."""


class DataError(DinoxferError):
    """An image, table or label does not match what the reader expected."""


class MissingField(DataError):
    """The data lack a field an analysis needs (a plate, a cell line, grades, groups): a chapter skips that part
    and says so, rather than stopping the book."""


class FetchError(DinoxferError):
    """A download failed: offline, server gone, or checksum mismatch."""


class StoreError(DinoxferError):
    """An artifact in the run store is missing or cannot be trusted."""


class NotebookError(DinoxferError):
    """A notebook failed while the runner executed it."""


class TrainingError(DinoxferError):
    """Training diverged (a loss turned NaN or infinite): a setting to change, and nothing was stored."""


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters (with "..." where it was cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: object) -> str:
    """``repr(value)`` for a message, at most :data:`SHOWN_CHARS` characters, at bounded cost."""
    return clip(_REPR.repr(value))


def require_config(ok: bool, key: str, value: object, expected: str) -> None:
    """Raise the one-line :class:`ConfigError` every config section uses: the key, its value, what was expected."""
    if not ok:
        raise ConfigError(f"config key {shown(key)} = {shown(value)}: expected {expected}")
