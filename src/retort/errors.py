"""Errors that the command line turns into one line on stderr and exit code 2."""

from __future__ import annotations


class RetortError(Exception):
    """A problem with the user's input: printed as one line, no traceback."""


class DataError(RetortError):
    """A missing or malformed data file, task or split."""


class ConfigError(RetortError):
    """An unknown or invalid configuration key or value."""
