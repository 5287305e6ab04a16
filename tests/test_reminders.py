"""Certificate-count nags: which events are overdue, the stages over simulated days, digests and staff summaries."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.scheduler import Jobs
from bot.settings import Settings
from storage.enums import Channel, EventStatus, JobStatus, ReminderKind, Source, TicketStatus
from storage.jobs import JobRun
from storage.outbox import OutboxItem
from storage.registry import Event
from storage.reminders import ReminderSent
from storage.tickets import Ticket
from tests.factories import MailFactory, add_event, add_host, add_user
from workflows.inbox import receive
from workflows.policy import MailboxPolicy
from workflows.reminders import NagPolicy, overdue_events, send_monthly_reminders, send_reminders

POLICY = NagPolicy()
MAILBOX = MailboxPolicy()
ENDED = dt.date(2026, 10, 1)  # a Thursday


def remind(sessions: sessionmaker[Session], day: dt.date, dry_run: bool = False):
    return send_reminders(sessions, MAILBOX, POLICY, day, dry_run)


def emails(sessions: sessionmaker[Session]) -> list[email.message.EmailMessage]:
    with sessions() as session:
        rows = session.scalars(sa.select(OutboxItem).where(OutboxItem.channel == Channel.EMAIL)
                               .order_by(OutboxItem.id).options(sa.orm.undefer(OutboxItem.body)))
        return [email.message_from_bytes(row.body, policy=email.policy.default) for row in rows]


def slack_posts(sessions: sessionmaker[Session]) -> list[dict]:
    with sessions() as session:
        return [row.payload for row in session.scalars(
            sa.select(OutboxItem).where(OutboxItem.channel == Channel.SLACK).order_by(OutboxItem.id))]


def stages(sessions: sessionmaker[Session], kind: ReminderKind = ReminderKind.OVERDUE) -> list[tuple[str, int]]:
    with sessions() as session:
        rows = session.execute(sa.select(ReminderSent.event_id, ReminderSent.stage)
                               .where(ReminderSent.kind == kind).order_by(ReminderSent.id))
        return [tuple(row) for row in rows]


def one_host_one_event(sessions: sessionmaker[Session], **event: object) -> None:
    with sessions() as session:
        add_host(session)
        add_user(session)
        add_event(session, start_date=ENDED, end_date=ENDED, **event)
        session.commit()


def business_days(start: dt.date, end: dt.date) -> list[dt.date]:
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    return [d for d in days if d.weekday() < 5]


def test_it_selects_only_ended_uncounted_uncancelled_events_of_active_hosts(sessions):
    today = dt.date(2026, 11, 2)
    with sessions() as session:
        add_host(session)
        add_host(session, "H0002", name="Closed District", status="inactive", contact_email="x@closed.org")
        add_event(session, "E1", end_date=dt.date(2026, 11, 1))  # ended yesterday, no count
        add_event(session, "E2", end_date=dt.date(2026, 10, 1), certificates_issued=0)  # counted (zero counts)
        add_event(session, "E3", end_date=dt.date(2026, 10, 1), status=EventStatus.CANCELLED)
        add_event(session, "E4", start_date=today, end_date=today)  # ends today: not yet overdue
        add_event(session, "E5", host_id="H0002", end_date=dt.date(2026, 10, 1))
        session.commit()
        assert [e.event_id for e in overdue_events(session, today)] == ["E1"]


def test_it_moves_through_the_stages_over_the_days_never_repeating_one(sessions):
    one_host_one_event(sessions)
    for day in business_days(ENDED, dt.date(2027, 1, 31)):
        remind(sessions, day)
    # Day 3 is a Sunday, so its digest goes out on Monday; then 14, 30 and monthly after that.
    assert stages(sessions) == [("E10001", 3), ("E10001", 14), ("E10001", 30), ("E10001", 60), ("E10001", 90),
                                ("E10001", 120)]
    with sessions() as session:
        days = list(session.scalars(sa.select(ReminderSent.run_date).where(ReminderSent.kind == ReminderKind.OVERDUE)))
    assert days[0] == dt.date(2026, 10, 5)
    assert len(emails(sessions)) == 6


def test_it_stops_nagging_once_a_count_arrives(sessions):
    one_host_one_event(sessions)
    remind(sessions, dt.date(2026, 10, 5))
    with sessions() as session:
        session.get(Event, "E10001").certificates_issued = 18
        session.commit()
    for day in business_days(dt.date(2026, 10, 6), dt.date(2026, 12, 31)):
        assert remind(sessions, day).digests == []
    assert len(emails(sessions)) == 1


def test_it_sends_one_digest_per_host_to_the_contact_with_active_users_in_copy(sessions):
    with sessions() as session:
        add_host(session)
        add_user(session, "BSmith", email="bsmith@gfps.k12.mt.us")
        add_user(session, "CJones", email="CJones@gfps.k12.mt.us")
        add_user(session, "OldUser", email="old@gfps.k12.mt.us", status="inactive")
        add_event(session, "E1", title="Math Night Part 1", start_date=ENDED, end_date=ENDED, hours=Decimal("3.5"))
        add_event(session, "E2", title="Reading Across Montana", start_date=dt.date(2026, 9, 14),
                  end_date=dt.date(2026, 9, 16), hours=Decimal("12.75"))
        add_host(session, "H0002", name="Lewistown Schools", contact_name="Sam Roe", contact_email="sroe@lps.org")
        add_event(session, "E3", host_id="H0002", start_date=ENDED, end_date=ENDED)
        session.commit()
    run = remind(sessions, dt.date(2026, 10, 5))
    assert [d["host_id"] for d in run.digests] == ["H0001", "H0002"]
    first, second = emails(sessions)
    assert first["To"] == "jdoe@gfps.k12.mt.us"
    assert first["Cc"] == "bsmith@gfps.k12.mt.us, CJones@gfps.k12.mt.us"
    assert first["Auto-Submitted"] == "auto-generated"
    text = first.get_body(preferencelist=("plain",)).get_content()
    assert "Reading Across Montana (event E2), Sep 14 - Sep 16, 2026, 12.75 PDUs" in text
    assert "Math Night Part 1 (event E1), Oct 1, 2026, 3.5 PDUs" in text
    assert "List Events" in text and "reply to this email with the numbers" in text
    assert second["To"] == "sroe@lps.org" and second["Cc"] is None


def test_it_threads_a_hosts_reply_into_a_ticket_that_staff_see(sessions, mail: MailFactory):
    one_host_one_event(sessions)
    remind(sessions, dt.date(2026, 10, 5))
    (digest,) = emails(sessions)
    assert digest["Subject"].startswith("[PDU-")
    reply = mail.raw(subject=f"Re: {digest['Subject']}", in_reply_to=digest["Message-ID"], body="E10001: 24")
    receipt = receive(sessions, reply, Source.FILE, MAILBOX)
    with sessions() as session:
        ticket = session.get(Ticket, Ticket.id_for_number(receipt.ticket_number))
        assert ticket.host_id == "H0001"
        assert ticket.status == TicketStatus.OPEN
        assert ticket.fields["event_ids"] == ["E10001"]
        assert [m.direction.value for m in ticket.messages] == ["out", "in"]
    remind(sessions, dt.date(2026, 10, 14))  # the next stage threads under the same open ticket
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(Ticket.id))) == 1


def test_it_tells_staff_once_when_an_event_is_sixty_days_overdue(sessions):
    one_host_one_event(sessions)
    remind(sessions, dt.date(2026, 11, 27))  # day 57
    assert slack_posts(sessions) == []
    remind(sessions, dt.date(2026, 11, 30))  # day 60
    remind(sessions, dt.date(2026, 12, 1))
    (post,) = slack_posts(sessions)
    assert "Great Falls Public Schools (H0001)" in post["text"]
    assert "E10001 Math Night Part 1" in post["text"] and "60 days overdue" in post["text"]
    assert stages(sessions, ReminderKind.STAFF) == [("E10001", 60)]


def test_it_sends_and_records_nothing_in_a_dry_run(sessions):
    one_host_one_event(sessions)
    run = remind(sessions, dt.date(2026, 12, 1), dry_run=True)
    assert [d["to"] for d in run.digests] == ["jdoe@gfps.k12.mt.us"]
    assert run.staff_summaries == ["H0001"]
    assert emails(sessions) == [] and slack_posts(sessions) == [] and stages(sessions) == []
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(Ticket.id))) == 0


def test_it_runs_the_nag_once_when_two_schedulers_race(sessions, tmp_path):
    one_host_one_event(sessions)
    settings = Settings(PDUBOT_VAR_DIR=str(tmp_path))
    schedulers = [Jobs(settings, sessions, lambda: None, b"k") for _ in range(4)]
    day = dt.date(2026, 10, 5)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda jobs: jobs.certificate_nag(day), schedulers))
    assert sum(r is not None for r in results) == 1
    assert len(emails(sessions)) == 1
    with sessions() as session:
        (run,) = session.scalars(sa.select(JobRun))
        assert (run.job, run.key, run.status) == ("certificate_nag", "2026-10-05", JobStatus.DONE)
    assert schedulers[0].certificate_nag(day) is None  # a finished run is never repeated


def test_it_sends_concurrent_unlocked_runs_one_digest(sessions):
    one_host_one_event(sessions)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: remind(sessions, dt.date(2026, 10, 5)), range(4)))
    assert len(emails(sessions)) == 1
    assert stages(sessions) == [("E10001", 3)]


def test_it_reminds_a_year_long_course_before_it_ends(sessions):
    with sessions() as session:
        add_host(session)
        add_event(session, "E7", title="Self-paced Literacy", online=True,
                  start_date=dt.date(2025, 11, 1), end_date=dt.date(2026, 10, 31))
        add_event(session, "E8", title="Short Course", start_date=dt.date(2026, 10, 20), end_date=dt.date(2026, 10, 30))
        session.commit()
    assert remind(sessions, dt.date(2026, 10, 16)).digests == []  # 15 days before
    run = remind(sessions, dt.date(2026, 10, 19))
    assert run.digests[0]["ending"] == ["E7"]
    assert remind(sessions, dt.date(2026, 10, 20)).digests == []
    text = emails(sessions)[0].get_body(preferencelist=("plain",)).get_content()
    assert "Self-paced Literacy" in text and "add a new event in PDUPS for the next year" in text
    assert "Short Course" not in text


def test_it_sends_the_monthly_reminder_once_to_every_host_with_anything_overdue(sessions):
    day = dt.date(2026, 12, 1)
    with sessions() as session:
        add_host(session)
        add_event(session, "E1", start_date=dt.date(2026, 11, 28), end_date=dt.date(2026, 11, 28))  # day 3 today
        add_host(session, "H0002", name="Lewistown Schools", contact_name="Sam Roe", contact_email="sroe@lps.org")
        add_event(session, "E2", host_id="H0002", start_date=dt.date(2026, 11, 20), end_date=dt.date(2026, 11, 20))
        add_host(session, "H0003", name="Counted District", contact_email="c@cd.org")
        add_event(session, "E3", host_id="H0003", end_date=dt.date(2026, 11, 2), certificates_issued=4)
        session.commit()
    remind(sessions, dt.date(2026, 11, 23))  # H0002's day-3 digest
    remind(sessions, day)  # H0001 gets its day-3 digest this morning; H0002 has nothing new
    run = send_monthly_reminders(sessions, MAILBOX, day)
    assert [d["host_id"] for d in run.digests] == ["H0002"]
    again = send_monthly_reminders(sessions, MAILBOX, day)
    assert (again.digests, again.already_done) == ([], ["H0002"])
    texts = [m.get_body(preferencelist=("plain",)).get_content() for m in emails(sessions)]
    monthly = [t for t in texts if "monthly reminder" in t]
    assert len(monthly) == 1 and "Hello Sam Roe" in monthly[0]


def test_it_finds_stages_given_across_query_chunks(sessions, monkeypatch):
    # Stage lookups go out in chunks of event IDs; a small chunk makes five events span three statements.
    monkeypatch.setattr("storage.reminders.EVENTS_PER_QUERY", 2)
    with sessions() as session:
        add_host(session)
        add_user(session)
        for n in range(5):
            add_event(session, f"E{n}", start_date=ENDED, end_date=ENDED)
        session.commit()
    first = remind(sessions, dt.date(2026, 10, 5))
    assert sorted(first.digests[0]["stages"]) == [f"E{n}" for n in range(5)]
    assert remind(sessions, dt.date(2026, 10, 6)).digests == []  # every event's stage 3 found, whatever its chunk
    with sessions() as session:  # one event's next stage already given by an earlier run
        session.add(ReminderSent(event_id="E3", host_id="H0001", kind=ReminderKind.OVERDUE, stage=14,
                                 run_date=dt.date(2026, 10, 15)))
        session.commit()
    later = remind(sessions, dt.date(2026, 10, 15))
    assert sorted(later.digests[0]["stages"]) == ["E0", "E1", "E2", "E4"]
    assert later.digests[0]["events"] == [f"E{n}" for n in range(5)]  # the digest still lists every overdue event
