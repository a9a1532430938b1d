"""Field-day simulator: synthetic phones for demos, tests, benchmarks and accuracy checks.

A simulated rep-day is planned first (the ground truth: where the rep really was), then the
phone's view of it is rendered with a :class:`~simulator.noise.NoiseProfile` (GPS error,
missing pings, forgotten check-ins, clock skew), then cut into the uploads a phone would send.
The truth never sees the noise, so derived sessions can be scored against it.

Entry point for the CLI: :func:`simulator.run.simulate`; posting: ``simulator.client``
(kept out of this namespace so generation does not import aiohttp).
"""

from simulator.noise import NoiseProfile
from simulator.run import SimulationResult, iter_rep_days, simulate, uploads_for
from simulator.truth import read_truth, write_truth
from simulator.uploads import Upload, merge_uploads
from simulator.world import load_world, pick_reps

__all__ = [
    "NoiseProfile",
    "SimulationResult",
    "Upload",
    "iter_rep_days",
    "load_world",
    "merge_uploads",
    "pick_reps",
    "read_truth",
    "simulate",
    "uploads_for",
    "write_truth",
]
