"""The harness's small exception tree. The CLI turns these into one stderr line and exit code 2."""

from __future__ import annotations


class HarnessError(Exception):
    """Something the user can fix: bad input, a missing file, an unusable setting."""


class ConfigError(HarnessError):
    """An unknown key, a wrong type or value, a missing file named by the configuration."""


class RunFailed(HarnessError):
    """The run started but could not finish (a backend raised, a worker died, Ctrl-C)."""
