"""Errors of the sink layer, under the project's one exception root."""

from __future__ import annotations

from schemas.errors import GeotelError


class SinkError(GeotelError, RuntimeError):
    """A ClickHouse write or migration failed."""


class SinkBackpressureError(SinkError):
    """The store cannot take writes now; retry after ``retry_after_s`` without committing."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
