"""semcomp — a toolkit for studying semantic image compression.

Importing this package is cheap: torch, open_clip and matplotlib are imported
only by the stages that need them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("semcomp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
