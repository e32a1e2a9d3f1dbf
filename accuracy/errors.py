"""The accuracy package's exceptions. `accuracy/` imports nothing from `harness/`, so the harness's
accuracy step turns these into its own ConfigError (one line, exit code 2)."""

from __future__ import annotations


class AccuracyError(Exception):
    """Something the user can fix: a bad or truncated accuracy log, a wrong image shape, bad statistics."""


class MissingAssetError(AccuracyError):
    """A scorer file (weights, reference statistics) is not on disk; the message names the fetch command."""
