"""badged: the badge-card daemon of a French engineering school."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("badged")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
