"""The demo's sample world comes from the seeded generator, so an installed package (which
has no data/ directory) simulates the same world as a checkout."""

from __future__ import annotations

from pathlib import Path

from streams.demo import sample_world
from streams.settings import Settings
from tests.conftest import ROOT


def test_the_generated_sample_world_is_the_committed_one(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "var")
    world = sample_world(s)
    assert world == tmp_path / "var" / "sample"
    for name in ("territories.geojson", "accounts.geojson"):
        assert (world / name).read_bytes() == (ROOT / "data" / "sample" / name).read_bytes()
    stamp = (world / "accounts.geojson").stat().st_mtime_ns
    assert sample_world(s) == world  # written once, then reused
    assert (world / "accounts.geojson").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "var").iterdir()] == ["sample"]  # no temporary left
