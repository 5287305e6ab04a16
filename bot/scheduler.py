"""The scheduler: certificate-count nags each business morning, the monthly mailings, call reminders and report.

Every job is a plain method of ``Jobs`` that the command line and the tests call directly; APScheduler
only decides when. Each run is claimed in the job_runs table under its key (the day, the month, the
mailing), so two schedulers on one database never run the same job, and a finished run never repeats.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.orm import Session, sessionmaker

from bot.delivery import MailTransport
from bot.mailout import MailoutReport, bulk_transport, send_mailing
from bot.runtime import Runtime
from bot.secret_key import load_secret_key
from bot.settings import Settings
from bot.slack.digest import queue_digest
from storage.base import utcnow
from storage.jobs import claim_job, fail_job, finish_job, pause_job
from workflows.calendar import (
    call_reminder_day,
    first_business_day,
    is_business_day,
    month_key,
    previous_month,
    third_tuesday,
)
from workflows.newsletter import due_mailings, prepare_call_reminder
from workflows.reminders import NagPolicy, send_monthly_reminders, send_reminders
from workflows.staff_report import post_monthly_report

logger = logging.getLogger(__name__)

JOB_LEASE = dt.timedelta(hours=1)  # a scheduler that dies mid-job frees it after this long
MONTHLY_CATCH_UP_DAYS = 7  # a monthly job missed on its day (downtime, failure) still runs within a week
MAILOUT_POLL_SECONDS = 60


def nag_policy(settings: Settings) -> NagPolicy:
    return NagPolicy(stages=tuple(settings.nag_stages), repeat_days=settings.nag_repeat_days,
                     staff_days=settings.nag_staff_days, ending_lead_days=settings.nag_ending_lead_days)


def parse_clock(text: str) -> dt.time:
    """``HH:MM`` (24-hour) from a setting."""
    hour, _, minute = text.strip().partition(":")
    return dt.time(int(hour), int(minute or 0))


def monthly_due(today: dt.date) -> bool:
    """From the first business day of the month, for a week, on business days."""
    first = first_business_day(today.year, today.month)
    return is_business_day(today) and first <= today < first + dt.timedelta(days=MONTHLY_CATCH_UP_DAYS)


class Jobs:
    """The scheduled work, each job claimed in the database before it runs."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        transport_factory: Callable[[], MailTransport],
        secret: bytes,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.transport_factory = transport_factory
        self.secret = secret
        self.on_queued = on_queued  # wakes outbox delivery when it runs in the same process
        self.tz = ZoneInfo(settings.timezone)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @classmethod
    def from_runtime(cls, runtime: Runtime, on_queued: Callable[[], None] = lambda: None) -> Jobs:
        s = runtime.settings
        relay = s.smtp_relay_url.get_secret_value() if s.smtp_relay_url else None
        return cls(s, runtime.sessions, lambda: bulk_transport(relay, s.outbox_maildir), load_secret_key(s), on_queued)

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.tz)

    def claim(self, job: str, key: str) -> bool:
        with self.sessions() as session:
            won = claim_job(session, job, key, self.owner, JOB_LEASE)
        if not won:
            logger.info("%s for %s: already done or running elsewhere", job, key)
        return won

    def locked(self, job: str, key: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run ``work`` once for (job, key) across every scheduler; None when another run has it."""
        if not self.claim(job, key):
            return None
        try:
            result = work()
        except Exception as exc:
            logger.exception("%s for %s failed", job, key)
            with self.sessions() as session:
                fail_job(session, job, key, self.owner, f"{type(exc).__name__}: {exc}")
            raise
        with self.sessions() as session:
            finish_job(session, job, key, self.owner, result)
        self.on_queued()
        return result

    def certificate_nag(self, today: dt.date, dry_run: bool = False) -> dict[str, Any] | None:
        """The certificate-count nag for ``today`` (``pdubot remind``). A dry run takes no lock and writes nothing."""
        run = lambda: send_reminders(  # noqa: E731
            self.sessions, self.settings.policy, nag_policy(self.settings), today, dry_run).as_json()
        return run() if dry_run else self.locked("certificate_nag", today.isoformat(), run)

    def monthly_reminder(self, today: dt.date) -> dict[str, Any] | None:
        return self.locked("monthly_reminder", month_key(today),
                           lambda: send_monthly_reminders(self.sessions, self.settings.policy, today).as_json())

    def monthly_report(self, today: dt.date) -> dict[str, Any] | None:
        """Last month's staff report, posted to Slack on the first business day."""
        year, month = previous_month(today)
        return self.locked("monthly_report", f"{year:04d}-{month:02d}", lambda: self._report(year, month))

    def _report(self, year: int, month: int) -> dict[str, Any]:
        with self.sessions() as session:
            document = post_monthly_report(session, year, month, self.tz)
            session.commit()
            return {"document_id": document.id, "filename": document.filename}

    def call_reminder(self, today: dt.date) -> dict[str, Any] | None:
        """Create the month's call reminder mailing; the mail-out job sends it within a minute."""
        call = third_tuesday(today.year, today.month)
        return self.locked("call_reminder", call.isoformat(), lambda: self._call_mailing(today))

    def _call_mailing(self, today: dt.date) -> dict[str, Any]:
        with self.sessions() as session:
            mailing = prepare_call_reminder(session, today.year, today.month, self.tz,
                                            self.settings.call_details, self.settings.policy)
            session.commit()
            return {"mailing_id": mailing.id, "key": mailing.key}

    async def send_due_mailings(self) -> list[dict[str, Any]]:
        """Send every approved mailing whose time has come, each under its own lock."""
        with self.sessions() as session:
            due = due_mailings(session, utcnow())
        return [report for mailing_id in due if (report := await self.send_one_mailing(mailing_id)) is not None]

    async def send_one_mailing(
        self, mailing_id: int, on_progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any] | None:
        key = str(mailing_id)
        if not await asyncio.to_thread(self.claim, "mailout", key):
            return None
        try:
            report = await send_mailing(self.sessions, mailing_id, self.settings.policy, self.settings.public_url,
                                        self.secret, self.transport_factory, self.settings.bulk_connections,
                                        on_progress)
        except Exception as exc:
            logger.exception("mail-out of mailing %s failed", mailing_id)
            await asyncio.to_thread(self._settle_mailout, key, None, f"{type(exc).__name__}: {exc}")
            raise
        await asyncio.to_thread(self._settle_mailout, key, report, "")
        return report.as_json()

    def _settle_mailout(self, key: str, report: MailoutReport | None, error: str) -> None:
        with self.sessions() as session:
            if report is None:
                fail_job(session, "mailout", key, self.owner, error)
            elif report.finished:
                finish_job(session, "mailout", key, self.owner, report.as_json())
            else:
                pause_job(session, "mailout", key, self.owner, report.as_json())

    # What the triggers call: each decides whether today is its day.

    def morning_nag(self) -> None:
        today = self.now().date()
        if is_business_day(today):
            self.certificate_nag(today)

    def morning_mailings(self) -> None:
        today = self.now().date()
        if monthly_due(today):
            self.monthly_reminder(today)
            self.monthly_report(today)
        if today == call_reminder_day(today.year, today.month):
            self.call_reminder(today)

    def staff_digest(self, today: dt.date) -> dict[str, Any] | None:
        """The Slack digest of tickets that have waited on staff more than SLACK_DIGEST_DAYS business days."""
        return self.locked("staff_digest", today.isoformat(), self._digest)

    def _digest(self) -> dict[str, Any]:
        with self.sessions() as session:
            count = queue_digest(session, self.now(), self.tz, self.settings.slack_digest_days)
            session.commit()
            return {"tickets": count}

    def morning_digest(self) -> None:
        today = self.now().date()
        # Without Slack there is no channel to read it in, and a stale digest is no use once Slack is set up.
        if is_business_day(today) and self.settings.slack_bot_token is not None:
            self.staff_digest(today)

    def catch_up(self) -> None:
        """At start-up, run what today's triggers would already have run (a restart at 8:01 misses nothing)."""
        now = self.now()
        if now.time() >= parse_clock(self.settings.nag_at):
            self.morning_nag()
        if now.time() >= parse_clock(self.settings.mailings_at):
            self.morning_mailings()
        if now.time() >= parse_clock(self.settings.slack_digest_at):
            self.morning_digest()


def build_scheduler(jobs: Jobs, settings: Settings) -> AsyncIOScheduler:
    """An APScheduler on the configured time zone; the triggers follow Mountain Time across DST changes."""
    tz = ZoneInfo(settings.timezone)
    scheduler = AsyncIOScheduler(
        timezone=tz,
        # A run delayed by a busy or suspended process still happens (within the grace time), and
        # several missed runs collapse into one.
        job_defaults={"coalesce": True, "misfire_grace_time": settings.misfire_grace_seconds, "max_instances": 1},
    )
    nag_at, mailings_at = parse_clock(settings.nag_at), parse_clock(settings.mailings_at)
    scheduler.add_job(jobs.morning_nag, CronTrigger(day_of_week="mon-fri", hour=nag_at.hour, minute=nag_at.minute,
                                                    timezone=tz), id="certificate_nag")
    scheduler.add_job(jobs.morning_mailings, CronTrigger(day_of_week="mon-fri", hour=mailings_at.hour,
                                                         minute=mailings_at.minute, timezone=tz), id="mailings")
    digest_at = parse_clock(settings.slack_digest_at)
    scheduler.add_job(jobs.morning_digest, CronTrigger(day_of_week="mon-fri", hour=digest_at.hour,
                                                       minute=digest_at.minute, timezone=tz), id="staff_digest")
    scheduler.add_job(jobs.send_due_mailings, IntervalTrigger(seconds=MAILOUT_POLL_SECONDS, timezone=tz),
                      id="mailouts")
    scheduler.add_job(jobs.catch_up, "date", run_date=dt.datetime.now(tz) + dt.timedelta(seconds=2), id="catch_up")
    return scheduler


def start_scheduler(runtime: Runtime, on_queued: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    """Start the scheduler on the running loop; returns the coroutine function that stops it."""
    scheduler = build_scheduler(Jobs.from_runtime(runtime, on_queued), runtime.settings)
    scheduler.start()
    logger.info("scheduler running in %s", runtime.settings.timezone)

    async def stop() -> None:
        scheduler.shutdown(wait=False)

    return stop
