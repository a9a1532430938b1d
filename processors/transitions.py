"""Territory and account transitions of one rep-day: enter/exit and arrive/leave events.

:func:`derive_transitions` runs two independent state machines over the rep's usable,
enriched fixes in time order: one over ``geo.territory_id`` (None = outside every
territory), one over ``geo.account_id`` (None = at no account). A new value becomes the
confirmed state only once it has held for ``min_pings`` consecutive fixes spanning at least
``min_dwell_s``; shorter runs (jitter along a border, one stray fix) change nothing. A
confirmed change from A to B emits exit(A) then enter(B), both at the first fix of the B
run. The day starts "nowhere", so its first confirmed state is an enter/arrive; the day's
last state is not closed by an exit.

Like :func:`processors.rep_day.derive_rep_day` this is a pure function of the SET of the
rep-day's events: duplicates are removed by ``event_id`` with the same rule, fixes are
sorted by ``(ts, event_id)``, and arrival order is never looked at.

>>> import datetime as dt, uuid
>>> from schemas.derived import EnrichedPing, Enrichment
>>> t0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
>>> def fix(k, terr):
...     return EnrichedPing(event_id=uuid.uuid5(uuid.NAMESPACE_URL, str(k)), device_id="d",
...                         rep_id="r", ts=t0 + dt.timedelta(seconds=30 * k), lat=52.52,
...                         lon=13.40 + 1e-5 * k, accuracy_m=10,
...                         geo=Enrichment(territory_id=terr, geo_version=3))
>>> pings = [fix(k, "T1" if k < 5 else "T2") for k in range(10)]
>>> [(t.kind.value, t.subject_id, t.at.strftime("%H:%M:%S"))
...  for t in derive_transitions("r", dt.date(2026, 11, 2), pings)]
[('territory_enter', 'T1', '08:00:00'), ('territory_exit', 'T1', '08:02:30'), \
('territory_enter', 'T2', '08:02:30')]
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from processors.config import DEFAULT_PARAMS, SessionParams
from processors.day_columns import PingColumns, filter_view
from processors.gps_filter import filter_pings
from processors.records import ID_NAMESPACE
from processors.rep_day import AnyEvent, unique_events
from schemas.derived import EnrichedPing
from schemas.records import Transition, TransitionKind


class TransitionParams(BaseModel):
    """Knobs of transition detection (seconds, metres)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_dwell_s: float = Field(
        60.0, ge=0, description="A new territory/account state is confirmed only when its run "
        "of fixes spans at least this long (first to last fix of the run).")
    min_pings: int = Field(
        2, ge=1, description="... and holds for at least this many consecutive usable fixes, "
        "so one stray fix never makes a transition.")
    max_accuracy_m: float = Field(
        100.0, gt=0, description="Fixes whose reported accuracy is worse than this are not "
        "used (a 150 m cell fix cannot place a rep on either side of a street border).")


DEFAULT_TRANSITION_PARAMS = TransitionParams()


#: Order of kinds at one instant: leave the inner place first, enter the outer one first.
_KIND_ORDER = {
    TransitionKind.account_leave: 0,
    TransitionKind.territory_exit: 1,
    TransitionKind.territory_enter: 2,
    TransitionKind.account_arrive: 3,
}


def transition_id(rep_id: str, local_date: dt.date, kind: str, subject_id: str,
                  at: dt.datetime) -> uuid.UUID:
    stamp = at.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return uuid.uuid5(
        ID_NAMESPACE, f"transition|{rep_id}|{local_date.isoformat()}|{kind}|{subject_id}|{stamp}")


@dataclass(frozen=True, slots=True)
class _Machine:
    enter: TransitionKind
    exit: TransitionKind
    value: Callable[[EnrichedPing], str | None]


_MACHINES = (
    _Machine(TransitionKind.territory_enter, TransitionKind.territory_exit,
             lambda p: p.geo.territory_id),
    _Machine(TransitionKind.account_arrive, TransitionKind.account_leave,
             lambda p: p.geo.account_id),
)


def usable_fixes(
    rep_id: str, events: Iterable[AnyEvent], params: TransitionParams,
    filter_params: SessionParams = DEFAULT_PARAMS, *, compiled: bool = True,
) -> list[EnrichedPing]:
    """The rep's enriched fixes that may place it, one per event_id, sorted by (ts, event_id).

    Bad fixes are dropped by :func:`processors.gps_filter.filter_pings` (invalid position,
    mock, in the future, accuracy worse than ``params.max_accuracy_m``, same instant as a
    better fix, speed jumps, spikes), so transitions see the same track as the rep-day.
    """
    enriched = [e for e in events if isinstance(e, EnrichedPing) and e.rep_id == rep_id]
    # Plain pings are dropped before deduplication so that a copy without geo never
    # shadows the enriched one.
    pings: list[EnrichedPing] = [e for e in unique_events(enriched)
                                 if isinstance(e, EnrichedPing)]
    fparams = filter_params.model_copy(update={"max_accuracy_m": params.max_accuracy_m})
    kept = set(filter_pings(pings, fparams, compiled=compiled).kept.event_id.tolist())
    return [p for p in pings if str(p.event_id) in kept]


def derive_transitions(
    rep_id: str,
    local_date: dt.date,
    events: Iterable[AnyEvent],
    params: TransitionParams = DEFAULT_TRANSITION_PARAMS,
    *,
    filter_params: SessionParams = DEFAULT_PARAMS,
    version: int = 0,
    compiled: bool = True,
) -> list[Transition]:
    """Territory enter/exit and account arrive/leave transitions of one rep-day.

    ``events`` are the rep-day's events in any order, duplicates and other kinds allowed;
    only :class:`~schemas.derived.EnrichedPing` s of ``rep_id`` are used. ``filter_params``
    supplies the GPS filter's other settings (its ``max_accuracy_m`` is replaced by
    ``params.max_accuracy_m``). Sorted by ``at``; at one instant account_leave,
    territory_exit, territory_enter, account_arrive. ``compiled=False`` runs the Python
    reference of the filter and the state machines instead of their kernels
    (:mod:`processors.kernels`; the same transitions).
    """
    fixes = usable_fixes(rep_id, events, params, filter_params, compiled=compiled)
    out: list[Transition] = []

    def emit(kind: TransitionKind, subject: str, p: EnrichedPing) -> None:
        out.append(Transition(
            transition_id=transition_id(rep_id, local_date, kind.value, subject, p.ts),
            rep_id=rep_id, local_date=local_date, kind=kind, subject_id=subject, at=p.ts,
            lon=p.lon, lat=p.lat, geo_version=p.geo.geo_version, version=version))

    if compiled:
        _compiled_machines(fixes, params, emit)
        out.sort(key=lambda t: (t.at, _KIND_ORDER[t.kind], t.subject_id))
        return out
    for m in _MACHINES:
        confirmed: str | None = None  # the day starts nowhere
        run_value: str | None = None
        run_first: EnrichedPing | None = None  # None: no pending change
        run_len = 0
        for p in fixes:
            v = m.value(p)
            if v == confirmed:
                run_first, run_len = None, 0  # back in the confirmed state: jitter
                continue
            if run_first is None or v != run_value:
                run_value, run_first, run_len = v, p, 0
            run_len += 1
            if (run_len >= params.min_pings
                    and (p.ts - run_first.ts).total_seconds() >= params.min_dwell_s):
                if confirmed is not None:
                    emit(m.exit, confirmed, run_first)
                if v is not None:
                    emit(m.enter, v, run_first)
                confirmed, run_first, run_len = v, None, 0
    out.sort(key=lambda t: (t.at, _KIND_ORDER[t.kind], t.subject_id))
    return out


def derive_transitions_columns(
    rep_id: str,
    local_date: dt.date,
    pings: PingColumns,
    params: TransitionParams = DEFAULT_TRANSITION_PARAMS,
    *,
    filter_params: SessionParams = DEFAULT_PARAMS,
    version: int = 0,
) -> list[Transition]:
    """:func:`derive_transitions` of a rep-day whose pings are held as columns (one copy per
    event_id, see :mod:`processors.day_columns`): the same transitions, with the kernels."""
    view = pings.view()
    view = view.take(np.flatnonzero(view.enriched))
    fparams = filter_params.model_copy(update={"max_accuracy_m": params.max_accuracy_m})
    _, kept = filter_view(view, fparams)
    idx = np.flatnonzero(kept)
    fixes = view.event[idx].tolist()
    out: list[Transition] = []

    def emit(kind: TransitionKind, subject: str, p: EnrichedPing) -> None:
        out.append(Transition(
            transition_id=transition_id(rep_id, local_date, kind.value, subject, p.ts),
            rep_id=rep_id, local_date=local_date, kind=kind, subject_id=subject, at=p.ts,
            lon=p.lon, lat=p.lat, geo_version=p.geo.geo_version, version=version))

    _run_machines(fixes, view.ts_us[idx],
                  (view.territory_id[idx].tolist(), view.account_id[idx].tolist()), params,
                  emit)
    out.sort(key=lambda t: (t.at, _KIND_ORDER[t.kind], t.subject_id))
    return out


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def _compiled_machines(fixes: list[EnrichedPing], params: TransitionParams,
                       emit: Callable[[TransitionKind, str, EnrichedPing], None]) -> None:
    """The state machines of :func:`derive_transitions` as :func:`kernels.transition_runs`
    over value codes and exact microseconds (what ``timedelta.total_seconds`` divides)."""
    if not fixes:
        return
    ts_us = np.array([(p.ts - _EPOCH) // _US for p in fixes], dtype=np.int64)
    _run_machines(fixes, ts_us, tuple([m.value(p) for p in fixes] for m in _MACHINES),
                  params, emit)


def _run_machines(fixes: list[EnrichedPing], ts_us: npt.NDArray[np.int64],
                  values_of: tuple[list[str | None], ...], params: TransitionParams,
                  emit: Callable[[TransitionKind, str, EnrichedPing], None]) -> None:
    """:func:`kernels.transition_runs` of each machine of ``_MACHINES`` over its values of
    the fixes (``values_of``, one list per machine)."""
    if not fixes:
        return
    import processors.kernels as kernels  # on first use: numba is slow to import

    for m, fix_values in zip(_MACHINES, values_of, strict=True):
        names: dict[str, int] = {}
        codes = np.array([-1 if v is None else names.setdefault(v, len(names))
                          for v in fix_values], dtype=np.int64)
        values = list(names)
        at, kind, subject = kernels.transition_runs(codes, ts_us, params.min_pings,
                                                    params.min_dwell_s)
        for i, k, s in zip(at.tolist(), kind.tolist(), subject.tolist(), strict=True):
            emit(m.enter if k else m.exit, values[s], fixes[i])


__all__ = [
    "DEFAULT_TRANSITION_PARAMS",
    "Transition",
    "TransitionKind",
    "TransitionParams",
    "derive_transitions",
    "derive_transitions_columns",
    "transition_id",
    "usable_fixes",
]
