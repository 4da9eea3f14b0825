"""Errors a user can act on.

Every failure caused by the user's input (a config key, a file, a label, a download) raises a subclass of
:class:`DinoxferError` whose message is one line naming the thing and what was expected. The CLI prints that
line without a traceback; notebooks show it as the cell's error.
"""


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


def require_config(ok: bool, key: str, value: object, expected: str) -> None:
    """Raise the one-line :class:`ConfigError` every config section uses: the key, its value, what was expected."""
    if not ok:
        raise ConfigError(f"config key {key!r} = {value!r}: expected {expected}")
