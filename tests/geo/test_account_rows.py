"""The account set analysts see in ClickHouse: customers and offices with their territory,
never homes."""

from __future__ import annotations

from streams.geosets import account_rows, build_index, prepare
from tests.conftest import ROOT

SAMPLE = ROOT / "data" / "sample"


def test_customers_and_offices_with_territories_no_homes() -> None:
    sets = {kind: (7, prepare(kind, SAMPLE / f"{kind}.geojson")[0])
            for kind in ("territories", "accounts")}
    index = build_index(sets)
    assert index is not None
    rows = account_rows(index)
    kinds = {r[2] for r in rows}
    assert kinds == {"customer", "office"}
    homes = int((index.accounts.kind == "home").sum())
    assert homes > 0 and len(rows) == len(index.accounts) - homes
    assert len({r[0] for r in rows}) == len(rows)
    with_territory = [r for r in rows if r[3] is not None]
    assert len(with_territory) > 0.9 * len(rows)
    assert all(r[3].startswith("T") and r[4] for r in with_territory)
    assert {r[8] for r in rows} == {index.version}
