"""The ``geotel`` command line. Settings are built here, once, and passed down."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from schemas.errors import GeotelError
from streams.settings import Profile, Settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="geotel: field-sales geo-telemetry pipeline (phones -> Kafka -> Faust "
                  "-> ClickHouse).")
devices_app = typer.Typer(no_args_is_help=True, help="Register, list, revoke and rotate device "
                          "tokens.")
schemas_app = typer.Typer(no_args_is_help=True, help="JSON Schema files of the wire formats.")
config_app = typer.Typer(no_args_is_help=True, help="Settings.")
app.add_typer(devices_app, name="devices")
app.add_typer(schemas_app, name="schemas")
app.add_typer(config_app, name="config")

#: The committed schema files of a checkout (what the staleness test compares with).
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "json"
#: Where `geotel schemas export` writes by default: relative to the current directory, so an
#: installed package is never written into; in a checkout's root it is SCHEMA_DIR.
SCHEMA_OUT = Path("schemas") / "json"


class Noise(StrEnum):
    """Noise profiles of the simulated phones (simulator/noise.py)."""

    clean = "clean"
    realistic = "realistic"


class SqlFormat(StrEnum):
    """Output formats of `geotel sql` (the SQL endpoint's formats)."""

    table = "table"
    csv = "csv"
    tsv = "tsv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("geotel")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"geotel {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version,
                                          is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ")
                            + (f" ({'.'.join(map(str, e['loc']))})" if e.get("loc") else "")
                            for e in exc.errors())
        typer.secho(f"invalid settings: {reasons}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:
        typer.secho(f"invalid settings: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


def _logging(settings: Settings) -> None:
    from streams.logs import configure

    configure(settings)


@app.command()
def up() -> None:
    """Start the whole pipeline on this machine: embedded broker, worker with ingest, chDB.

    Ctrl-C stops all of it.
    """
    from streams.runtime import run_up

    s = _settings()
    _logging(s)
    raise typer.Exit(run_up(s))


@app.command()
def worker(
    no_ingest: Annotated[bool, typer.Option("--no-ingest", help="Serve no /v1/events.")] = False,
) -> None:
    """Run one worker (joins the consumer group) against the configured broker."""
    from streams.runtime import run_worker

    s = _settings()
    _logging(s)
    raise typer.Exit(run_worker(s, ingest=not no_ingest))


@app.command()
def ingest() -> None:
    """Run only the HTTP ingest endpoint (stateless; scale it separately from workers)."""
    from streams.runtime import run_ingest

    s = _settings()
    _logging(s)
    raise typer.Exit(run_ingest(s))


@app.command()
def store(
    port: Annotated[int | None, typer.Option(min=1, max=65535,
                                             help="Port to serve on; default "
                                             "GEOTEL_CLICKHOUSE__STORE_PORT (6067).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; there is no authentication.")
                    ] = "127.0.0.1",
) -> None:
    """Serve the embedded chDB (data_dir/chdb) to several workers on this machine; point
    them at it with GEOTEL_CLICKHOUSE__URL=store://127.0.0.1:PORT."""
    from streams.store import run_store

    s = _settings()
    _logging(s)
    raise typer.Exit(run_store(s, host=host, port=port or s.clickhouse.store_port))


# -- simulation and demo -------------------------------------------------------------------
def _yesterday() -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def _progress_bar(stack: ExitStack) -> Callable[[int, int], None] | None:
    """An upload progress bar when stdout is a terminal, closed with ``stack``; None
    otherwise, so piped output stays plain."""
    if not sys.stdout.isatty():
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = stack.enter_context(Progress(
        TextColumn("uploading"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
        TimeElapsedColumn()))
    task = bar.add_task("uploads", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update


@app.command()
def simulate(
    reps: Annotated[int, typer.Option(min=1, max=250, help="Simulated reps.")] = 20,
    days: Annotated[int, typer.Option(min=1, max=35, help="Field days per rep.")] = 1,
    start_date: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD); default: "
                                                   "yesterday, as a backfill")] = None,
    speedup: Annotated[float, typer.Option(help="Phone time / wall time; 0 = as fast as "
                                           "possible.")] = 600.0,
    seed: Annotated[int, typer.Option()] = 7,
    noise: Annotated[Noise, typer.Option(help="Phone noise profile.")] = Noise.realistic,
    truth: Annotated[Path | None, typer.Option(help="Write the ground truth (JSON lines).")
                     ] = None,
) -> None:
    """Post simulated field days of reps to the running pipeline (`geotel up`).

    Fails at once when nothing answers on the web port; shows a progress bar on a terminal.
    """
    from streams.demo import run_simulation

    try:
        day = dt.date.fromisoformat(start_date) if start_date else _yesterday()
    except ValueError as exc:
        raise typer.BadParameter(f"{start_date!r} is not a date (YYYY-MM-DD)",
                                 param_hint="'--start-date'") from exc
    s = _settings()
    with ExitStack() as stack:
        rep = run_simulation(s, reps=reps, days=days, start_date=day, speedup=speedup,
                             seed=seed, noise=noise.value, truth=truth,
                             progress=_progress_bar(stack))
    typer.echo(f"sent {rep.events_sent} events in {rep.elapsed_s:.1f}s: {rep.accepted} "
               f"accepted, {rep.duplicates} duplicates, {rep.rejected} rejected "
               f"{rep.reject_reasons or ''}")


@app.command()
def demo(
    reps: Annotated[int, typer.Option(min=1, max=250)] = 20,
    speedup: Annotated[float, typer.Option(help="Phone time / wall time.")] = 700.0,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Start the pipeline, replay yesterday's field day of simulated reps (about a minute),
    print per-rep figures from ClickHouse, stop."""
    from rich.console import Console
    from rich.table import Table

    from streams import demo as d

    s = _settings()
    console = Console(width=max(140, Console().width))
    log_path = s.data_dir / "logs" / "demo-up.log"
    console.print(f"starting the pipeline (log: {log_path}) ...")
    t0 = time.monotonic()
    proc = d.start_pipeline(s, log_path)
    try:
        console.print(f"pipeline up in {time.monotonic() - t0:.1f}s: web {s.web_host}:"
                      f"{s.web_port}, broker 127.0.0.1:{s.kafka.embedded_port}, chDB "
                      f"{s.chdb_path}")
        world = d.sample_world(s)
        _load_set("territories", world / "territories.geojson")
        _load_set("accounts", world / "accounts.geojson")
        d.wait_geo(s)
        day = _yesterday()
        console.print(f"simulating {reps} reps on {day} at {speedup:g}x ...")
        with ExitStack() as bar:
            rep = d.run_simulation(s, reps=reps, days=1, start_date=day, speedup=speedup,
                                   seed=seed, noise="realistic",
                                   truth=s.data_dir / "demo-truth.jsonl", world=world,
                                   progress=_progress_bar(bar))
        stored_s = d.wait_stored(s, rep.accepted)
        d.wait_derived(s)
        console.print(f"uploaded {rep.events_sent} events in {rep.elapsed_s:.1f}s "
                      f"({rep.accepted} accepted, {rep.duplicates} duplicates, {rep.rejected} "
                      f"rejected); all accepted events stored {stored_s:.1f}s after the last "
                      "upload")
        for title, rows in d.figures(s, day):
            table = Table(title=title)
            for col in rows[0] if rows else []:
                table.add_column(col)
            for row in rows:
                table.add_row(*[str(v) for v in row.values()])
            console.print(table)
    finally:
        code = d.stop_pipeline(proc)
        console.print(f"pipeline stopped (exit {code})")


# -- devices ------------------------------------------------------------------------------
def _publish(s: Settings, recs: list) -> None:  # type: ignore[type-arg]
    from streams.publish import save_devices

    if not save_devices(s, recs):
        typer.echo("(the pipeline is not running: the device is saved and published "
                   "when `geotel up` starts)", err=True)


def _registry(s: Settings):  # type: ignore[no-untyped-def]
    from streams.devices import DeviceError, DeviceRegistry, decode, device_key
    from streams.runtime import journal

    reg = DeviceRegistry()
    if s.profile is Profile.embedded:
        reg.apply_all(journal(s).read())
        return reg
    from kafka import KafkaConsumer

    from streams.broker import admin_kwargs
    from streams.settings import DEVICES

    consumer = KafkaConsumer(s.topic(DEVICES), auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000,
                             **admin_kwargs(s))  # type: ignore[arg-type]
    key = device_key(s)
    for msg in consumer:
        if msg.value:
            try:
                reg.apply(decode(msg.value, key))
            except DeviceError as exc:
                typer.echo(f"ignoring a device record at offset {msg.offset}: {exc}", err=True)
    consumer.close()
    return reg


@devices_app.command("add")
def devices_add(
    rep: Annotated[str, typer.Option("--rep", help="Rep id the device writes as.")],
    device: Annotated[str, typer.Option("--device", help="Device id.")],
) -> None:
    """Register a device for a rep and print its token (shown once, stored hashed)."""
    from streams.devices import issue

    s = _settings()
    token, rec = issue(device, rep, dt.datetime.now(dt.UTC))
    _publish(s, [rec])
    typer.echo(token)


@devices_app.command("revoke")
def devices_revoke(device: Annotated[str, typer.Option("--device")]) -> None:
    """Revoke every token of a device."""
    from streams.devices import revoke_records

    s = _settings()
    recs = revoke_records(_registry(s), device)
    _publish(s, recs)
    typer.echo(f"revoked {len(recs)} token(s) of {device}")


@devices_app.command("rotate")
def devices_rotate(device: Annotated[str, typer.Option("--device")]) -> None:
    """Issue a new token for a device and revoke its old ones; prints the new token."""
    from streams.devices import issue, revoke_records

    s = _settings()
    reg = _registry(s)
    old = revoke_records(reg, device)
    token, rec = issue(device, old[0].rep_id, dt.datetime.now(dt.UTC))
    _publish(s, [rec, *old])
    typer.echo(token)


@devices_app.command("list")
def devices_list() -> None:
    """Devices with an active token."""
    for dev, rep in sorted(_registry(_settings()).devices().items()):
        typer.echo(f"{dev}\t{rep}")


# -- territory and account sets ---------------------------------------------------------------
def _load_set(kind: str, path: Path) -> None:
    from geo import GeoLoadError
    from streams.broker import port_open
    from streams.geosets import encode_set, journal_path, new_version, prepare
    from streams.runtime import publish_geoset

    s = _settings()
    try:
        geojson, report = prepare(kind, path)
    except GeoLoadError as exc:
        typer.secho(f"{path}: nothing published: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(report.summary())
    jpath = journal_path(s.data_dir, kind)
    version = new_version()
    if jpath.exists():  # keep versions increasing even for two loads in one second
        from streams.geosets import decode_set

        version = max(version, decode_set(jpath.read_bytes())[1] + 1)
    value = encode_set(kind, geojson, version, path.name)
    if s.profile is Profile.embedded:
        jpath.parent.mkdir(parents=True, exist_ok=True)
        jpath.write_bytes(value)
        if not port_open("127.0.0.1", s.kafka.embedded_port):
            typer.echo(f"{kind} version {version} saved; published when `geotel up` starts")
            return
    publish_geoset(s, kind, value)
    typer.echo(f"published {kind} version {version}")


territories_app = typer.Typer(no_args_is_help=True, help="Territory sets.")
accounts_app = typer.Typer(no_args_is_help=True, help="Account (customer site) sets.")
places_app = typer.Typer(no_args_is_help=True, help="Place sets: reps' homes and offices, "
                         "kept apart from the accounts.")
app.add_typer(territories_app, name="territories")
app.add_typer(accounts_app, name="accounts")
app.add_typer(places_app, name="places")


@territories_app.command("load")
def territories_load(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                          help="GeoJSON, GeoPackage or "
                                                          "Shapefile, any CRS.")]) -> None:
    """Validate a territory file and publish it as the new version; workers swap it in live."""
    _load_set("territories", path)


@accounts_app.command("load")
def accounts_load(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                       help="GeoJSON, GeoPackage, Shapefile "
                                                       "or CSV with lat/lon.")]) -> None:
    """Validate an account file and publish it as the new version (replaces the accounts
    set only: the places set, homes and offices, is kept)."""
    _load_set("accounts", path)


@places_app.command("load")
def places_load(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                     help="GeoJSON, GeoPackage, Shapefile or "
                                                     "CSV with lat/lon; columns place_id, kind "
                                                     "(home/office), rep_id (homes), "
                                                     "radius_m.")]) -> None:
    """Validate a file of homes and offices and publish it as the new places set (the
    accounts set is kept; a place replaces an account of the same id)."""
    _load_set("places", path)


# -- schemas ------------------------------------------------------------------------------
def render_schemas() -> dict[str, str]:
    from schemas import json_schemas
    from streams.contracts import TOPIC_TYPES

    return {f"{name}.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
            for name, schema in json_schemas(TOPIC_TYPES).items()}


@schemas_app.command("export")
def schemas_export(
    out: Annotated[Path, typer.Option(help="Directory to write into (relative to the current "
                                      "directory; a checkout's root: the committed files).")
                   ] = SCHEMA_OUT,
    check: Annotated[bool, typer.Option(help="Fail if the files differ instead of "
                                        "writing.")] = False,
) -> None:
    """Write the JSON Schema of every event and derived record."""
    files = render_schemas()
    if check:
        stale = [n for n, text in files.items()
                 if not (out / n).exists() or (out / n).read_text() != text]
        if stale:
            typer.secho(f"stale schema files: {', '.join(stale)}; run `geotel schemas export`",
                        fg="red", err=True)
            raise typer.Exit(1)
        typer.echo("schema files are up to date")
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    typer.echo(f"wrote {len(files)} files to {out}")


# -- sql ----------------------------------------------------------------------------------
@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only statement.")],
    fmt: Annotated[SqlFormat, typer.Option("--format", "-f", help="Output format.")
                   ] = SqlFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write to a file (needed for parquet).")
                      ] = None,
) -> None:
    """Query ClickHouse: through the running service, or chDB directly when it is stopped."""
    from streams.sqlclient import run_sql, terminal_safe

    s = _settings()
    if fmt is SqlFormat.parquet and output is None:
        typer.secho("parquet is binary: give --output FILE", fg="red", err=True)
        raise typer.Exit(2)
    try:
        body = run_sql(s, query, fmt.value)
    except GeotelError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from exc
    if output is not None:
        output.write_bytes(body)
    else:
        text = body.decode("utf-8", "replace")
        # Stored notes are written by phones: never let them drive the terminal.
        sys.stdout.write(terminal_safe(text) if fmt == "table" or sys.stdout.isatty() else text)


# -- config -------------------------------------------------------------------------------
@config_app.command("docs")
def config_docs(
    out: Annotated[Path, typer.Option()] = Path("docs/configuration.md"),
    check: Annotated[bool, typer.Option()] = False,
) -> None:
    """Generate docs/configuration.md from the settings model."""
    from streams.settings_doc import render

    text = render()
    if check:
        if not out.exists() or out.read_text() != text:
            typer.secho(f"{out} is stale; run `geotel config docs`", fg="red", err=True)
            raise typer.Exit(1)
        return
    out.write_text(text)
    typer.echo(f"wrote {out}")


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings (secrets masked)."""
    typer.echo(_settings().model_dump_json(indent=2))


# -- reps: export and erase everything stored about a rep ----------------------------------
reps_app = typer.Typer(no_args_is_help=True, help="Export or erase everything stored about a "
                       "rep (docs/privacy.md).")
app.add_typer(reps_app, name="reps")


def _device_records(s: Settings) -> list:  # type: ignore[type-arg]
    from streams.reps import device_records

    return device_records(s)


@reps_app.command("load")
def reps_load(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                   help="CSV with rep_id (or rep), name, team, "
                                                   "manager, tz (IANA name).")]) -> None:
    """Publish the rep roster: names, teams and managers for grouping (ClickHouse `reps`),
    and the time zone of each rep's days (before the territory's and the position's)."""
    _load_set("reps", path)


@reps_app.command("export")
def reps_export(
    rep: Annotated[str, typer.Argument(help="Rep id.")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write to a file instead of stdout.")
                      ] = None,
) -> None:
    """Write every stored row of a rep (all tables, and its devices) as JSON lines."""
    from streams.reps import ServiceOrStore, all_rep_places, export_rep, rep_devices

    s = _settings()
    runner = ServiceOrStore(s)
    out = output.open("wb") if output is not None else sys.stdout.buffer
    try:
        counts = export_rep(runner, rep, out, page_rows=min(s.query.max_rows, 50_000),
                            devices=rep_devices(_device_records(s), rep),
                            places=all_rep_places(s, rep))
        where = "the store (service stopped)" if runner.direct else "the running service"
    except GeotelError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from exc
    finally:
        runner.close()
        if output is not None:
            out.close()
    typer.echo(f"exported {sum(counts.values())} rows of {rep} from {where}: "
               + ", ".join(f"{t} {n}" for t, n in counts.items()), err=True)


@reps_app.command("erase")
def reps_erase(
    rep: Annotated[str, typer.Argument(help="Rep id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: erasing cannot be undone.")
                   ] = False,
) -> None:
    """Revoke a rep's device tokens, delete every row of the rep from ClickHouse and its
    places (home) from the account set; print what was removed."""
    from streams.reps import check_rep_id, erase_direct, erase_through_service

    s = _settings()
    if not yes:
        typer.secho(f"this deletes everything stored about {rep} and cannot be undone: "
                    "pass --yes", fg="red", err=True)
        raise typer.Exit(2)
    try:
        check_rep_id(rep)
        report = None
        if s.clickhouse.url is None:  # embedded chDB: owned by the service while it runs
            report = erase_through_service(s, rep)
        via = "through the running service"
        if report is None:
            report = erase_direct(s, rep)
            via = "directly"
    except GeotelError as exc:
        # One erase, one behaviour: the service does all of it or, when it refuses, nothing
        # was changed (tokens included); a direct erase that fails part-way says so.
        typer.secho(f"{exc}\n(a refusal of the service changes nothing; run the command "
                    "again once fixed: it is idempotent)", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"erased {rep} ({via}):")
    typer.echo(f"  device tokens revoked: {report.get('revoked_tokens', 0)}")
    typer.echo(f"  places removed from the account set: {report.get('removed_places', 0)}")
    for table, n in report.get("removed", {}).items():
        unit = "(territory, hour) rows recomputed" if table == "territory_hourly_agg" else "rows"
        typer.echo(f"  {table}: {n} {unit}")
    typer.echo("Kafka topics keep the rep's records until their retention, and finished "
               "mutation records name the rep (docs/privacy.md).")


def main() -> None:
    import os

    # Everything geotel writes (chDB files, journals, logs) is for this user only.
    os.umask(0o077)
    try:
        app()
    except GeotelError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
