"""Errors the zoo raises on purpose.

Every one carries a one-line message and, where there is one, a hint: the CLI
prints ``error: <message>`` and ``hint: <hint>`` and exits with code 2.
"""

import difflib
from collections.abc import Iterable


class ZooError(Exception):
    """Base of every error the zoo raises for bad input or a bad state."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class ConfigError(ZooError):
    """Unknown key, wrong type, unknown task or group option."""


class UnknownNameError(ZooError):
    """A registry, task or model-card lookup found nothing."""


class DataError(ZooError):
    """Missing, corrupt or malformed data."""


class CheckpointError(ZooError):
    """A checkpoint, weights or model file that cannot be read, or no longer matches the sha256 written for it."""


class RecordError(ZooError):
    """A run record that is missing, corrupt or fails validation."""


class CacheError(ZooError):
    """A teacher-output cache that does not match what it is asked to serve."""


def nearest(name: str, choices: Iterable[str]) -> str | None:
    """The closest choice to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str], what: str) -> str:
    """A hint listing valid ``what``s, naming the nearest first when there is one."""
    choices = sorted(choices)
    close = nearest(name, choices)
    listed = ", ".join(choices) if len(choices) <= 25 else ", ".join(choices[:25]) + ", ..."
    if close:
        return f"did you mean '{close}'? valid {what}: {listed}"
    return f"valid {what}: {listed}"
