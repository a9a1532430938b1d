"""Field-day simulator: synthetic phones for demos, tests, benchmarks and accuracy checks.

A simulated rep-day is planned first (the ground truth: where the rep really was), then the
phone's view of it is rendered with a :class:`~simulator.noise.NoiseProfile` (GPS error,
missing pings, forgotten check-ins, clock skew), then cut into the uploads a phone would send.
The truth never sees the noise, so derived sessions can be scored against it.

Entry point for the CLI: :func:`simulator.run.simulate`.
"""

from simulator.noise import NoiseProfile
from simulator.run import SimulationResult, simulate

__all__ = ["NoiseProfile", "SimulationResult", "simulate"]
