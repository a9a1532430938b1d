"""What a load did: how many features were kept, which were repaired or rejected, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Issue(NamedTuple):
    """One repaired or rejected feature.

    ``ref`` is the feature's id when it has one, else ``"#<index>"`` (0-based position in
    the source), so a report line can always be traced back to the input.
    """

    ref: str
    reason: str


@dataclass(slots=True)
class LoadReport:
    """Outcome of :func:`geo.loader.load_territories` or :func:`geo.loader.load_accounts`.

    Examples
    --------
    >>> r = LoadReport(source="t.geojson", kind="territories")
    >>> r.rejected.append(Issue("#3", "empty geometry"))
    >>> r.ok
    False
    >>> print(r.summary())
    t.geojson: 0 territories loaded, 0 repaired, 1 rejected
      rejected #3: empty geometry
    """

    source: str
    kind: str
    loaded: int = 0
    source_crs: str | None = None
    repaired: list[Issue] = field(default_factory=list)
    rejected: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was rejected (repairs and warnings are allowed)."""
        return not self.rejected

    def summary(self) -> str:
        """A human-readable multi-line summary, one line per issue."""
        lines = [
            f"{self.source}: {self.loaded} {self.kind} loaded, {len(self.repaired)} repaired, "
            f"{len(self.rejected)} rejected"
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  repaired {i.ref}: {i.reason}" for i in self.repaired]
        lines += [f"  rejected {i.ref}: {i.reason}" for i in self.rejected]
        return "\n".join(lines)
