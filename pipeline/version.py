"""The package version, recorded in every row's provenance."""

__version__ = "0.3.0"
