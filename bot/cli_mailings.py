"""The scheduled-work commands: ``remind``, ``newsletter``, ``subscribers``, ``certificate`` and ``report``."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import selectinload

from storage.registry import Event

newsletter_app = typer.Typer(help="The PLP Insider newsletter.", no_args_is_help=True)
subscribers_app = typer.Typer(help="The mailing list.", no_args_is_help=True)

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _cli() -> Any:
    # bot.cli imports this module to register the commands, so its helpers are looked up when one runs.
    import bot.cli

    return bot.cli


def parse_day(value: str | None, fallback: dt.date) -> dt.date:
    if value is None:
        return fallback
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a date like 2026-11-17") from exc


def remind(
    today: Annotated[str | None, typer.Option("--today", help="Run as if it were this day (YYYY-MM-DD).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; send and record nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Run the certificate-count nag for a day: one digest per host with events at a new stage."""
    from bot.scheduler import Jobs

    cli = _cli()
    rt = cli.ready_runtime()
    jobs = Jobs.from_runtime(rt)
    day = parse_day(today, jobs.now().date())
    result = jobs.certificate_nag(day, dry_run=dry_run)
    if result is None:
        cli.err.print(f"the nag for {day.isoformat()} already ran; nothing to do")
        return
    if as_json:
        cli.print_json(result)
        return
    verb = "would send" if dry_run else "queued"
    for digest in result["digests"]:
        cc = f" (cc {', '.join(digest['cc'])})" if digest["cc"] else ""
        typer.echo(f"{digest['host_id']}: {verb} a digest to {digest['to']}{cc} for {', '.join(digest['events'])}")
    for host_id in result["staff_summaries"]:
        typer.echo(f"{host_id}: {'would tell' if dry_run else 'told'} staff "
                   f"(overdue {rt.settings.nag_staff_days}+ days)")
    for host_id in result["unreachable"]:
        typer.echo(f"{host_id}: no deliverable address; nothing sent")
    cli.err.print(f"{len(result['digests'])} digests, {len(result['staff_summaries'])} staff summaries")


@newsletter_app.command("send")
def newsletter_send(
    file: Annotated[Path, typer.Argument(help="The edition, written in Markdown.")],
    edition: Annotated[str, typer.Option("--edition", help="The edition key, for example 2026-11.")],
    subject: Annotated[str, typer.Option("--subject", help="The email subject.")],
    yes: Annotated[bool, typer.Option("--yes", help="Send without asking.")] = False,
    by: Annotated[str, typer.Option("--by", help="Who prepares and approves it (recorded in the audit log).")] = (
        "staff (command line)"),
) -> None:
    """Render the edition, approve it and send it now to every confirmed subscriber, with a progress bar.

    Running it again with the same edition resumes an interrupted send; nobody gets the edition twice.
    """
    from bot.scheduler import Jobs
    from storage.base import utcnow
    from storage.enums import MailingStatus
    from workflows.newsletter import EditionError, approve_edition, confirmed_count, prepare_edition

    cli = _cli()
    rt = cli.ready_runtime()
    try:
        markdown = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        cli.err.print(f"[red]cannot read {file}: {exc}[/red]")
        raise typer.Exit(2) from exc
    with rt.sessions() as session:
        try:
            mailing = prepare_edition(session, markdown, edition, subject, rt.settings.policy, actor=by)
            if mailing.status == MailingStatus.SENT:
                cli.err.print(f"edition {edition} was already sent; nobody gets it twice")
                raise typer.Exit(0)
            audience = confirmed_count(session)
            if not yes and not typer.confirm(f"Send edition {edition} to {audience} confirmed subscribers now?"):
                raise typer.Exit(1)
            if mailing.approved_at is None:
                approve_edition(session, edition, by, utcnow())
            session.commit()
        except EditionError as exc:
            cli.err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
        mailing_id = mailing.id
    jobs = Jobs.from_runtime(rt)
    with cli.progress() as bar:
        task = bar.add_task(f"sending {edition}", total=None)
        report = asyncio.run(jobs.send_one_mailing(
            mailing_id, lambda done, total: bar.update(task, completed=done, total=total)))
    if report is None:
        cli.err.print(f"[red]edition {edition} is being sent by another process[/red]")
        raise typer.Exit(1)
    cli.err.print(f"{report['sent']} sent, {report['failed']} failed, {report['skipped']} skipped, "
                  f"{report['deferred']} to retry, {report['remaining']} not finished")
    raise typer.Exit(0 if report["remaining"] == 0 else 1)


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[Path, typer.Argument(help="CSV with the columns email, name, organization.")],
    confirmed: Annotated[bool, typer.Option("--confirmed", help="They already opted in: add them as confirmed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Add or update subscribers from a CSV file; people who unsubscribed or bounced are never put back."""
    from workflows.subscribers import CsvRejected, decode_csv, import_subscribers

    cli = _cli()
    rt = cli.ready_runtime()
    try:
        text = decode_csv(file.read_bytes())
        with rt.sessions() as session:
            result = import_subscribers(session, text, confirmed, f"import {file.name}")
            session.commit()
    except OSError as exc:
        cli.err.print(f"[red]cannot read {file}: {exc.strerror or exc}[/red]")
        raise typer.Exit(2) from exc
    except CsvRejected as exc:
        cli.err.print(f"[red]{file.name}: {exc}[/red]")
        raise typer.Exit(2) from exc
    if as_json:
        cli.print_json(result.as_json())
    else:
        typer.echo(f"{file.name}: {result.added} added, {result.updated} updated, {result.unchanged} unchanged, "
                   f"{len(result.rejected)} rejected")
        for row in result.rejected:
            typer.echo(f"  line {row['line']}: {row['email']!r}: {row['reason']}")


@subscribers_app.command("list")
def subscribers_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every subscriber: email, name, organization and status."""
    from workflows.subscribers import list_subscribers

    cli = _cli()
    rt = cli.ready_runtime()
    with rt.sessions() as session:
        rows = list_subscribers(session)
    if as_json:
        cli.print_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['email']:<40} {row['status']:<13} {row['name']}  {row['organization']}")


def certificate(
    event_id: Annotated[str, typer.Argument(help="The PDUPS event id.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the PDF.")],
) -> None:
    """Write the OPI Professional Development Unit Certificate of an event as a one-page PDF."""
    from workflows.certificates import render_certificate

    cli = _cli()
    rt = cli.ready_runtime()
    with rt.sessions() as session:
        event = session.get(Event, event_id, options=[selectinload(Event.host)])
        if event is None:
            cli.err.print(f"[red]no event {event_id}[/red]")
            raise typer.Exit(1)
        pdf = render_certificate(event)
    output.write_bytes(pdf)
    cli.err.print(f"wrote {output} ({len(pdf)} bytes)")


def report(
    month: Annotated[str, typer.Option("--month", help="The month, YYYY-MM.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the PDF.")],
) -> None:
    """Write the monthly staff report (tickets, time to decision, overdue counts, mailings) as a PDF."""
    from zoneinfo import ZoneInfo

    from workflows.staff_report import gather_figures, render_report

    match = MONTH.match(month)
    if not match:
        raise typer.BadParameter(f"{month!r} is not a month like 2026-11", param_hint="--month")
    cli = _cli()
    rt = cli.ready_runtime()
    with rt.sessions() as session:
        figures = gather_figures(session, int(match.group(1)), int(match.group(2)), ZoneInfo(rt.settings.timezone))
    pdf = render_report(figures)
    output.write_bytes(pdf)
    cli.err.print(f"wrote {output} ({len(pdf)} bytes)")


def register(app: typer.Typer) -> None:
    """Add these commands to the ``pdubot`` command line."""
    app.command("remind")(remind)
    app.command("certificate")(certificate)
    app.command("report")(report)
    app.add_typer(newsletter_app, name="newsletter")
    app.add_typer(subscribers_app, name="subscribers")
