"""Exceptions whose messages a user can act on.

The CLI prints a :class:`SemcompError` as one line (no traceback) and exits
non-zero; anything else is a bug and keeps its traceback.
"""


class SemcompError(Exception):
    """Base class for errors that are the user's to fix, not bugs."""


class UsageError(SemcompError):
    """A command-line option or argument is wrong (the CLI exits with status 2)."""


class ConfigError(SemcompError):
    """A study file or method preset is invalid; the message names the key and the file."""


class StoreError(SemcompError):
    """The study database cannot be opened or migrated."""


class StudyBusyError(StoreError):
    """Another process is writing the study (it holds the study's writer lock)."""


class ReadOnlyStudyError(StoreError):
    """A command that writes was given a study folder it cannot write."""


class DiskFullError(StoreError):
    """The disk holding the study is full; nothing committed is lost."""


class ImageError(SemcompError):
    """An image cannot be read or normalised; recorded as a failure, never fatal to a run."""


class PixelLimitError(ImageError):
    """An image is larger than ``images.max_pixels``: raising the limit changes the outcome."""


class ModelUnavailableError(SemcompError):
    """Model weights are neither cached locally nor reachable on the hub."""


class TargetUnreachableError(SemcompError):
    """No codec setting meets a rate target; carries the closest achievable result."""

    def __init__(self, message: str, closest: dict):
        super().__init__(message)
        self.closest = closest


class AnalysisError(SemcompError):
    """An analysis cannot be computed from the data at hand (too few points, no overlap)."""


class MissingExtraError(SemcompError):
    """A command needs an optional dependency set (a pip extra) that is not installed."""
