"""The project's exception root. Each package subclasses it together with the builtin that fits."""

from __future__ import annotations


class GeotelError(Exception):
    """Root of every error geotel raises on purpose."""


class ConfigError(GeotelError, ValueError):
    """Settings or command-line arguments that cannot work."""
