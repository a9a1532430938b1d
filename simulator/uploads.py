"""Cut a rep-day's phone events into the uploads a phone would send.

The phone wakes every 1-5 minutes of its own time; if it is online and has queued events it
sends them in batches of at most :data:`MAX_EVENTS_PER_UPLOAD`. While offline the queue
grows, and the first wake-up after coming back online sends the backlog in bulk (events that
arrive hours late, which is what the pipeline's lateness handling must absorb). Some uploads
are sent twice: the server got them, the phone never saw the answer, and the app retried.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from simulator.ids import sub_seed
from simulator.noise import NoiseProfile
from simulator.phone import PhoneEvent

MAX_EVENTS_PER_UPLOAD = 100
WAKE_MIN_S, WAKE_MAX_S = 60.0, 300.0


@dataclass(frozen=True, slots=True)
class Upload:
    """One POST to ``/v1/events``: ``{"events": events}`` sent at ``send_at`` (true UTC)."""

    send_at: dt.datetime
    device_id: str
    rep_id: str
    events: list[dict[str, Any]]
    resend: bool = False  # a duplicate of an earlier upload (same events, same ids)

    def body(self) -> dict[str, Any]:
        return {"events": self.events}


def build_uploads(
    events: list[PhoneEvent],
    device_id: str,
    rep_id: str,
    *,
    seed: int,
    day: dt.date,
    noise: NoiseProfile,
    offline: Iterable[tuple[float, float]] = (),
) -> list[Upload]:
    """The uploads of one rep-day, ordered by ``send_at``.

    ``events`` must be sorted by ``recorded_at``; ``offline`` lists (start, end) windows in
    epoch seconds during which nothing is sent.
    """
    if not events:
        return []
    rng = random.Random(sub_seed(seed, "upload", rep_id, day.isoformat()))
    windows = sorted(offline)

    def is_offline(t: float) -> bool:
        return any(a <= t < b for a, b in windows)

    out: list[tuple[float, Upload]] = []

    def send(t: float, batch: list[dict[str, Any]], resend: bool = False) -> None:
        when = dt.datetime.fromtimestamp(t, dt.UTC)
        out.append((t, Upload(when, device_id, rep_id, batch, resend)))

    queue: list[dict[str, Any]] = []
    i, n = 0, len(events)
    t = events[0].recorded_at + rng.uniform(WAKE_MIN_S, WAKE_MAX_S)
    while i < n or queue:
        while i < n and events[i].recorded_at <= t:
            queue.append(events[i].payload)
            i += 1
        if queue and not is_offline(t):
            for j in range(0, len(queue), MAX_EVENTS_PER_UPLOAD):
                at = t + j / MAX_EVENTS_PER_UPLOAD * 0.5  # back-to-back requests
                batch = queue[j : j + MAX_EVENTS_PER_UPLOAD]
                send(at, batch)
                if rng.random() < noise.duplicate_upload_prob:
                    send(at + rng.uniform(5, 60), batch, resend=True)
            queue = []
        t += rng.uniform(WAKE_MIN_S, WAKE_MAX_S)
    out.sort(key=lambda x: x[0])
    return [u for _, u in out]


def merge_uploads(streams: Iterable[Iterable[Upload]]) -> Iterator[Upload]:
    """Merge per-device upload streams (each ordered) into one stream ordered by ``send_at``.

    Ties break on device id so the merged order is deterministic.
    """
    return heapq.merge(*streams, key=lambda u: (u.send_at, u.device_id))
