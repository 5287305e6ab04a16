"""The ``pdubot`` command line: run the service, manage the database and registry, and work tickets."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bot.cli_import import import_app
from bot.cli_mailings import register as register_mailing_commands
from bot.delivery import EmailDeliverer, make_transport
from bot.ingest import default_readers, find_messages, take_in
from bot.runtime import Runtime, SchemaNotCurrent, configure_logging
from bot.service import Part, Service
from storage.enums import MessageClass
from storage.registry import Event
from storage.tickets import Message, Ticket
from workflows.inbox import inspect
from workflows.views import event_view, ticket_detail, ticket_summary

app = typer.Typer(help="pdubot: the PDUPS mailbox service of Montana OPI.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
outbox_app = typer.Typer(help="The outbox of email and Slack posts.", no_args_is_help=True)
tickets_app = typer.Typer(help="Tickets.", no_args_is_help=True)
events_app = typer.Typer(help="Events in the registry.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")
app.add_typer(tickets_app, name="tickets")
app.add_typer(events_app, name="events")
app.add_typer(import_app, name="import")
register_mailing_commands(app)

err = Console(stderr=True)


def runtime() -> Runtime:
    rt = Runtime.from_env()
    configure_logging(rt.settings.log_level)
    return rt


def ready_runtime() -> Runtime:
    """A runtime whose database schema is current, or a clear error and exit code 2."""
    rt = runtime()
    try:
        rt.require_current_schema()
    except SchemaNotCurrent as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    return rt


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=False,
    )


@app.command()
def run(
    only: Annotated[list[Part] | None, typer.Option("--only", help="Run only these parts (repeatable).")] = None,
) -> None:
    """Run the service: SMTP and IMAP intake, outbox delivery, the HTTP server and the scheduler, until SIGTERM."""
    rt = ready_runtime()
    asyncio.run(Service(rt, set(only or list(Part))).run())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every Alembic migration not yet applied."""
    runtime().upgrade_schema()
    err.print("database schema is up to date")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help=".eml files, folders of them, or Maildirs.")],
    acknowledge: Annotated[bool, typer.Option(help="Email hosts an acknowledgement (off for backfill).")] = False,
    readers: Annotated[int | None, typer.Option(
        help="Worker processes that parse and read mail while this one writes (default: one per core for "
             "large backfills, none for a few files; never with --acknowledge).")] = None,
) -> None:
    """Take stored messages through intake, exactly as if they had arrived by SMTP, many per transaction."""
    rt = ready_runtime()
    try:
        found = find_messages(paths)
    except FileNotFoundError as exc:
        err.print(f"[red]no such file or folder: {exc}[/red]")
        raise typer.Exit(2) from exc
    workers = default_readers(len(found)) if readers is None else readers
    counts: dict[str, int] = {"tickets": 0, "follow_ups": 0, "duplicates": 0, "non_requests": 0, "unreadable": 0}
    with progress() as bar:
        task = bar.add_task("ingesting", total=len(found))
        for receipt in take_in(rt.sessions, found, rt.settings.policy, acknowledge, workers):
            counts[_tally(receipt.duplicate, receipt.new_ticket, receipt.classification)] += 1
            bar.advance(task)
    err.print(", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items()))


def _tally(duplicate: bool, new_ticket: bool, classification: MessageClass) -> str:
    if duplicate:
        return "duplicates"
    if classification == MessageClass.UNREADABLE:
        return "unreadable"
    if classification != MessageClass.REQUEST:
        return "non_requests"
    return "tickets" if new_ticket else "follow_ups"


@app.command()
def parse(
    files: Annotated[list[Path], typer.Argument(help="Email files to read.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file, one per line.")] = True,
) -> None:
    """Read emails as intake would, without storing anything."""
    rt = ready_runtime()
    with rt.sessions() as session:
        for path in files:
            try:
                result = inspect(session, path.read_bytes(), rt.settings.policy)
            except OSError as exc:
                result = {"kind": "unreadable", "confidence": 1.0, "host_id": None, "event_id": None,
                          "fields": {}, "missing": [], "flags": [], "reason": f"cannot read file: {exc}"}
            print_json({"file": str(path), **result})


@app.command()
def score(
    corpus: Annotated[Path, typer.Argument(help="A folder with emails/*.eml and expected.json.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read a corpus of emails and print kind, host/event and field accuracy against its expected readings."""
    from workflows.scoring import score_corpus

    rt = ready_runtime()
    with rt.sessions() as session:
        result = score_corpus(session, corpus, rt.settings.policy)
    if as_json:
        print_json(result.as_json())
        return
    for miss in result.misses:
        typer.echo(json.dumps(miss, ensure_ascii=False, default=str))
    typer.echo(
        f"{result.emails} emails: kind accuracy {result.kind_accuracy:.1%}, "
        f"host/event matches {result.match_accuracy:.1%}, field accuracy {result.field_accuracy:.1%}"
    )


@outbox_app.command("deliver")
def outbox_deliver() -> None:
    """Deliver everything due in the outbox once (email, and Slack when it is configured), then exit."""
    rt = ready_runtime()
    s = rt.settings
    relay = s.smtp_relay_url.get_secret_value() if s.smtp_relay_url else None

    async def drain() -> int:
        deliverer = EmailDeliverer(rt.sessions, make_transport(relay, s.outbox_maildir), s.outbox_max_attempts)
        try:
            handled = await deliverer.drain()
        finally:
            await deliverer.transport.close()
        return handled + await drain_slack()

    async def drain_slack() -> int:
        from bot.slack.app import Mode, make_deliverer, mode_of

        if mode_of(s) == Mode.OFF:
            return 0  # Slack posts wait until Slack is configured
        slack = make_deliverer(s, rt.sessions)
        try:
            return await slack.drain()
        finally:
            await slack.close()

    err.print(f"{asyncio.run(drain())} outbox rows handled")


@tickets_app.command("list")
def tickets_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every ticket, newest first."""
    rt = ready_runtime()
    with rt.sessions() as session:
        counts = dict(
            session.execute(
                sa.select(Message.ticket_id, sa.func.count(Message.id)).group_by(Message.ticket_id)
            ).all()
        )
        tickets = session.scalars(sa.select(Ticket).order_by(Ticket.id.desc())).all()
        rows = [ticket_summary(t, counts.get(t.id, 0)) for t in tickets]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        typer.echo(f"PDU-{row['number']}  {row['status']:<22} {row['kind']:<20} {row['requester']}  {row['subject']}")


@tickets_app.command("show")
def tickets_show(number: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One ticket with its messages and audit log."""
    rt = ready_runtime()
    with rt.sessions() as session:
        ticket = session.get(Ticket, Ticket.id_for_number(number))
        if ticket is None:
            err.print(f"[red]no ticket PDU-{number}[/red]")
            raise typer.Exit(1)
        view = ticket_detail(ticket)
    if as_json:
        print_json(view)
        return
    typer.echo(json.dumps(view, indent=2, ensure_ascii=False, default=str))


By = Annotated[str, typer.Option("--by", help="Who is deciding (recorded in the audit log).")]


def decide(action: str, number: int, call: Any) -> None:
    """Run one decision in its own transaction and say what happened."""
    from workflows.decisions import DecisionError, Verdict

    rt = ready_runtime()
    with rt.sessions() as session:
        try:
            decision = call(session, rt.settings.policy)
        except DecisionError as exc:
            session.rollback()
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        session.commit()
    if decision.verdict == Verdict.ALREADY_DECIDED:
        err.print(f"PDU-{number} was already decided ({decision.status.value}); nothing changed")
        return
    err.print(f"PDU-{number} {action}: {decision.summary or decision.status.value}")


@tickets_app.command("approve")
def tickets_approve(number: int, by: By = "staff (command line)") -> None:
    """Apply the ticket's change to the registry once, record it and email the host."""
    from workflows.decisions import approve

    decide("approved", number, lambda session, policy: approve(session, policy, number, by))


@tickets_app.command("reject")
def tickets_reject(
    number: int,
    by: By = "staff (command line)",
    reason: Annotated[str, typer.Option("--reason", help="Why, in words for the host.")] = "",
) -> None:
    """Decide against the request and email the reason to the host."""
    from workflows.decisions import reject

    decide("rejected", number, lambda session, policy: reject(session, policy, number, by, reason))


changes_app = typer.Typer(help="The change log staff use to update PDUPS.", no_args_is_help=True)
app.add_typer(changes_app, name="changes")


@changes_app.command("export")
def changes_export(
    since: Annotated[str, typer.Option("--since", help="YYYY-MM-DD: changes on or after this day (UTC).")],
) -> None:
    """Every approved registry change since a day, as CSV on stdout, one row per changed field."""
    import csv
    import datetime as dt

    from workflows.decisions import changes_since

    try:
        start = dt.datetime.fromisoformat(since).replace(tzinfo=dt.timezone.utc)
    except ValueError as exc:
        err.print(f"[red]--since must be a date like 2026-11-01, not {since!r}[/red]")
        raise typer.Exit(2) from exc
    rt = ready_runtime()
    writer = csv.writer(sys.stdout)
    writer.writerow(["at", "ticket", "actor", "entity", "entity_id", "action", "field", "before", "after", "summary"])
    with rt.sessions() as session:
        for change in changes_since(session, start):
            ticket = f"PDU-{Ticket(id=change.ticket_id).number}" if change.ticket_id else ""
            for field in sorted(set(change.before) | set(change.after)) or [""]:
                writer.writerow([change.at.isoformat(), ticket, change.actor, change.entity, change.entity_id,
                                 change.action, field, change.before.get(field, ""), change.after.get(field, ""),
                                 change.summary])


@events_app.command("show")
def events_show(event_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One event from the registry."""
    rt = ready_runtime()
    with rt.sessions() as session:
        event = session.get(Event, event_id)
        if event is None:
            err.print(f"[red]no event {event_id}[/red]")
            raise typer.Exit(1)
        view = event_view(event)
    if as_json:
        print_json(view)
        return
    typer.echo(json.dumps(view, indent=2, ensure_ascii=False))


def main() -> None:
    app()
