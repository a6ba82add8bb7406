"""User-facing errors: each carries one line that names what is wrong and where (file:line or config key).

The CLI prints ``str(error)`` on one line and exits non-zero; any other exception is a bug and gets a
traceback.
"""

from __future__ import annotations


class RaysearchError(Exception):
    """Base of every error caused by the user's input rather than by a bug."""


class ConfigError(RaysearchError):
    """A configuration key that does not exist, or a value of the wrong type or out of range."""


class DataError(RaysearchError):
    """Malformed or inconsistent data. ``where`` is ``path`` or ``path:line``."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class SamplingError(RaysearchError):
    """A sampler cannot draw what it was asked (e.g. a user who interacted with every item)."""


class RunStateError(RaysearchError):
    """A run or study directory whose saved state (config, metrics, checkpoint, study file) is corrupt,
    truncated or not raysearch's. ``where`` is ``path`` or ``path:line``."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
