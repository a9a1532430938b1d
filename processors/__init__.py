"""Pure field-time session logic: GPS filtering, stops, visits, work days, per-rep state.

No Kafka, no ClickHouse, no clock reads, no environment: time comes in as event time and
the rep's watermark. See ``docs/sessions.md``.
"""

from processors.config import DEFAULT_PARAMS, SessionParams
from processors.gps_filter import FilterResult, Track, filter_pings
from processors.places import InMemoryPlaces, NoPlaces, Place, PlaceLookup
from processors.records import (
    Rejected,
    RejectReason,
    RepDay,
    RepDayUpdate,
    Segment,
    SegmentKind,
    SessionOutput,
    VisitSource,
)
from processors.rep_day import derive_rep_day, event_time, local_day_bounds
from processors.session import RepSessionState
from processors.stops import Move, Stop, detect_stops, travel_between

__all__ = [
    "DEFAULT_PARAMS",
    "FilterResult",
    "InMemoryPlaces",
    "Move",
    "NoPlaces",
    "Place",
    "PlaceLookup",
    "RejectReason",
    "Rejected",
    "RepDay",
    "RepDayUpdate",
    "RepSessionState",
    "Segment",
    "SegmentKind",
    "SessionOutput",
    "SessionParams",
    "Stop",
    "Track",
    "VisitSource",
    "derive_rep_day",
    "detect_stops",
    "event_time",
    "filter_pings",
    "local_day_bounds",
    "travel_between",
]
