"""The rep roster: who a rep is (name, team, manager) and the rep's time zone.

``geotel reps load roster.csv`` reads a CSV (or a list of mappings) with the columns
``rep_id`` (or ``rep``), ``name``, ``team``, ``manager`` and ``tz`` (or ``time_zone`` /
``timezone``). A row without a rep id, or repeating one, is rejected with its reason; an
unknown time zone is dropped from its row (the rep keeps the territory's zone or the one
of its position) and reported, so nothing valid is lost.

>>> roster, report = load_roster([{"rep": "r1", "team": "North", "time_zone": "Asia/Shanghai"},
...                               {"rep_id": "r2", "tz": "Mars/Base"}, {"name": "nobody"}])
>>> roster["r1"].tz, roster["r1"].team, roster["r2"].tz
('Asia/Shanghai', 'North', None)
>>> print(report.summary())
roster: 2 reps loaded, 1 repaired, 1 rejected
  repaired r2: unknown time zone 'Mars/Base' (dropped)
  rejected #2: no rep_id
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from geo.errors import GeoLoadError
from geo.report import Issue, LoadReport

_ALIASES = {"rep": "rep_id", "rep_id": "rep_id", "name": "name", "team": "team",
            "manager": "manager", "tz": "tz", "time_zone": "tz", "timezone": "tz"}


@dataclass(frozen=True, slots=True)
class RosterEntry:
    rep_id: str
    name: str | None = None
    team: str | None = None
    manager: str | None = None
    tz: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"rep_id": self.rep_id, "name": self.name, "team": self.team,
                "manager": self.manager, "tz": self.tz}


def _text(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def load_roster(source: Path | str | Iterable[Mapping[str, Any]],
                ) -> tuple[dict[str, RosterEntry], LoadReport]:
    """Roster entries by rep id and the load report; :class:`GeoLoadError` when the source
    cannot be read, has no rep id column or no valid row."""
    name = "roster"
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = path.name
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise GeoLoadError(f"{path}: cannot read the roster: {exc}") from exc
        rows: list[Mapping[str, Any]] = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = list(source)
    report = LoadReport(source=name, kind="reps")
    out: dict[str, RosterEntry] = {}
    for k, raw in enumerate(rows):
        row = {_ALIASES[c.strip().lower()]: v for c, v in raw.items()
               if c is not None and c.strip().lower() in _ALIASES}
        unknown = sorted(str(c) for c in raw if c is None or c.strip().lower() not in _ALIASES)
        if unknown and k == 0:
            report.warnings.append(f"ignored columns: {', '.join(unknown)}")
        rep = _text(row.get("rep_id"))
        if rep is None:
            report.rejected.append(Issue(f"#{k}", "no rep_id"))
            continue
        if rep in out:
            report.rejected.append(Issue(rep, f"rep_id repeated (row {k})"))
            continue
        tz = _text(row.get("tz"))
        if tz is not None:
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                report.repaired.append(Issue(rep, f"unknown time zone {tz!r} (dropped)"))
                tz = None
        out[rep] = RosterEntry(rep, _text(row.get("name")), _text(row.get("team")),
                               _text(row.get("manager")), tz)
    report.loaded = len(out)
    if not out:
        raise GeoLoadError(f"{name}: no valid roster row", report)
    return out, report
