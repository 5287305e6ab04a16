"""The ``pdubot import`` commands: load PDUPS CSV exports of hosts, users or events into the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workflows.registry_import import (
    EVENTS,
    HOSTS,
    USERS,
    FileRejected,
    ImportResult,
    RecordKind,
    actor_for,
    count_rows,
    decode_export,
    import_records,
    text_lines,
)

import_app = typer.Typer(help="Import PDUPS CSV exports into the registry, adding or updating rows by id.",
                         no_args_is_help=True)

CsvFile = Annotated[Path, typer.Argument(help="The CSV export: UTF-8, or Windows-1252 as Excel saves it.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]


@import_app.command("hosts")
def import_hosts(file: CsvFile, as_json: AsJson = False) -> None:
    """Hosts by host_id: name, kind, phone, contact_name, contact_email, contact_phone, status."""
    run_import(HOSTS, file, as_json)


@import_app.command("users")
def import_users(file: CsvFile, as_json: AsJson = False) -> None:
    """Users by username (any case): full_name, email, phone, host_id, status."""
    run_import(USERS, file, as_json)


@import_app.command("events")
def import_events(file: CsvFile, as_json: AsJson = False) -> None:
    """Events by event_id: host_id, title, dates, location, hours, certificates_issued, status and more."""
    run_import(EVENTS, file, as_json)


def run_import(kind: RecordKind, path: Path, as_json: bool) -> None:
    """Import one file with a progress bar on stderr, then report; exit 1 only when every row was rejected."""
    # bot.cli imports this module to register the commands, so its helpers are looked up when one runs.
    from bot.cli import err, print_json, progress, ready_runtime

    rt = ready_runtime()
    try:
        text = decode_export(path.read_bytes())
        total = count_rows(kind, text)
    except OSError as exc:
        err.print(f"cannot read {path}: {exc.strerror or exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    except FileRejected as exc:
        err.print(f"{path.name}: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    with progress() as bar:
        task = bar.add_task(f"importing {kind.name}", total=total)
        result = import_records(rt.sessions, kind, text_lines(text), actor_for(path.name),
                                lambda done: bar.update(task, completed=done))
    if result.ignored_columns:
        err.print(f"ignored columns: {', '.join(result.ignored_columns)}", markup=False, soft_wrap=True)
    if as_json:
        print_json(result.as_json())
    else:
        print_summary(path, result)
    raise typer.Exit(1 if result.all_rejected else 0)


def print_summary(path: Path, result: ImportResult) -> None:
    typer.echo(
        f"{path.name}: {result.added} added, {result.updated} updated, {result.unchanged} unchanged, "
        f"{len(result.rejected)} rejected"
    )
    for rejection in result.rejected:
        typer.echo(f"  line {rejection.line}: {rejection.reason}")
