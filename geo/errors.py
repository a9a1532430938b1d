"""Exceptions of the geo package.

Each subclasses the builtin that fits, so callers that only know ``ValueError`` still catch
bad input, and callers that care can catch :class:`GeoError` for everything from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geo.report import LoadReport


class GeoError(Exception):
    """Root of every error raised by :mod:`geo`."""


class GeoLoadError(GeoError, ValueError):
    """A territory or account source cannot be used as a whole.

    Per-feature problems are not raised: they are rejected with a reason in the
    :class:`~geo.report.LoadReport`. This is raised when the source itself is unusable
    (missing file, unreadable format, no id column, nothing left after rejections) or when
    ``strict=True`` and anything was rejected. ``report`` carries what was found so far.
    """

    def __init__(self, message: str, report: LoadReport | None = None) -> None:
        super().__init__(message)
        self.report = report
