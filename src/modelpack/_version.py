"""The release of modelpack, in one place (read by the build backend and the manifest writer)."""

__version__ = "0.1.0"
