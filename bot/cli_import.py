"""The ``pdubot import`` commands: load PDUPS CSV exports of hosts, users or events into the registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from bot.runtime import Runtime
from workflows.registry_import import (
    EVENTS,
    HOSTS,
    IMPORT_ORDER,
    USERS,
    FileRejected,
    ImportResult,
    RecordKind,
    actor_for,
    count_rows,
    decode_export,
    import_records,
    kind_of_export,
    text_lines,
)


class PathsOrCommand(TyperGroup):
    """``pdubot import FOLDER`` or ``pdubot import a.csv b.csv`` runs ``files``; a command name runs that command."""

    # The Click types are Typer's own (vendored) from Typer 0.20 on, and click's before: hence Any.
    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "files", self.commands["files"], args
        return super().resolve_command(ctx, args)


import_app = typer.Typer(
    cls=PathsOrCommand,
    help="Import PDUPS CSV exports into the registry, adding or updating rows by id. "
    "`pdubot import FOLDER` imports every export in a folder (hosts first, then users, then events).",
    no_args_is_help=True,
)

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


@dataclass(frozen=True)
class Export:
    """One CSV export, read and its header checked, so every file given is known good before any is imported."""

    kind: RecordKind
    path: Path
    text: str
    rows: int


@import_app.command("files")
def import_files(
    paths: Annotated[list[Path], typer.Argument(help="CSV exports, or folders holding them (*.csv).")],
    as_json: AsJson = False,
) -> None:
    """Any mix of folders and CSV files: each file's kind is told from its columns, and hosts go in first."""
    from bot.cli import print_json, ready_runtime

    exports = [checked_export(path) for path in csv_files(paths)]
    if not exports:
        fail(f"no CSV files in {', '.join(map(str, paths))}")
    rt = ready_runtime()
    in_order = sorted(exports, key=lambda export: IMPORT_ORDER.index(export.kind))  # stable: name order kept
    results = [(export, import_export(rt, export)) for export in in_order]
    if as_json:
        print_json([{"file": export.path.name, "kind": export.kind.name, **result.as_json()}
                    for export, result in results])
    else:
        for export, result in results:
            print_summary(export.path, result)
    raise typer.Exit(1 if any(result.all_rejected for _, result in results) else 0)


def run_import(kind: RecordKind, path: Path, as_json: bool) -> None:
    """Import one file with a progress bar on stderr, then report; exit 1 only when every row was rejected."""
    from bot.cli import print_json, ready_runtime

    export = checked_export(path, kind)
    result = import_export(ready_runtime(), export)
    if as_json:
        print_json(result.as_json())
    else:
        print_summary(path, result)
    raise typer.Exit(1 if result.all_rejected else 0)


def csv_files(paths: list[Path]) -> list[Path]:
    """The files named, and each folder's *.csv in name order; a missing path is an error before any import."""
    files = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv" and p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            fail(f"cannot read {path}: no such file or folder")
    return files


def checked_export(path: Path, kind: RecordKind | None = None) -> Export:
    """The file read and its header checked (its kind told from the header unless given), or exit 2."""
    try:
        text = decode_export(path.read_bytes())
        kind = kind or kind_of_export(text)
        return Export(kind, path, text, count_rows(kind, text))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except FileRejected as exc:
        fail(f"{path.name}: {exc}")


def import_export(rt: Runtime, export: Export) -> ImportResult:
    """Import one checked export with a progress bar on stderr."""
    from bot.cli import err, progress

    with progress() as bar:
        task = bar.add_task(f"importing {export.kind.name} from {export.path.name}", total=export.rows)
        result = import_records(rt.sessions, export.kind, text_lines(export.text), actor_for(export.path.name),
                                lambda done: bar.update(task, completed=done))
    if result.ignored_columns:
        err.print(f"{export.path.name}: ignored columns: {', '.join(result.ignored_columns)}", markup=False,
                  soft_wrap=True)
    return result


def fail(message: str) -> NoReturn:
    """Print the error on stderr and exit 2, the code for a file that could not be imported at all."""
    from bot.cli import err

    err.print(message, style="red", markup=False, soft_wrap=True)
    raise typer.Exit(2)


def print_summary(path: Path, result: ImportResult) -> None:
    typer.echo(
        f"{path.name}: {result.added} added, {result.updated} updated, {result.unchanged} unchanged, "
        f"{len(result.rejected)} rejected"
    )
    for rejection in result.rejected:
        typer.echo(f"  line {rejection.line}: {rejection.reason}")
