"""Certificates and the monthly staff report as PDFs: one valid page each, with the registry's data on it."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
from decimal import Decimal

import sqlalchemy as sa
from pypdf import PdfReader

from bot.scheduler import Jobs
from bot.settings import Settings
from storage.documents import StoredDocument
from storage.enums import Channel, TicketKind, TicketStatus
from storage.outbox import OutboxItem
from storage.registry import Event
from storage.tickets import Ticket
from tests.factories import add_event, add_host
from workflows.certificates import CERTIFICATE_MIME, certificate_filename, render_certificate
from workflows.outgoing import Draft, build_email
from workflows.policy import MailboxPolicy
from workflows.staff_report import gather_figures, percentile, render_report


def pdf_text(data: bytes) -> tuple[int, str]:
    """The page count and the text of a PDF, with whitespace runs made single spaces."""
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    text = " ".join(page.extract_text() for page in reader.pages)
    return len(reader.pages), " ".join(text.split())


def test_it_fills_section_two_of_the_certificate_from_the_registry(sessions):
    with sessions() as session:
        add_host(session)
        event = add_event(session, title="Math Night Part 1", instructor="Ann Lee", start_date=dt.date(2026, 10, 14),
                          end_date=dt.date(2026, 10, 15), hours=Decimal("3.50"))
        session.commit()
        pages, text = pdf_text(render_certificate(event))
    assert pages == 1
    for expected in ("OPI Professional Development Unit Certificate", "Section II", "Math Night Part 1", "Ann Lee",
                     "Oct 14, 2026", "Oct 15, 2026", "Great Falls Public Schools", "(406) 555-0100",
                     "Great Falls, MT", "3.5", "Section III", "PARTICIPANT NAME", "EDUCATOR LICENSE NUMBER",
                     "Section IV", "SIGNATURE OF HOST", "DATE", "E10001"):
        assert expected.lower() in text.lower(), expected


def test_it_prints_online_as_the_location_of_an_online_event(sessions):
    with sessions() as session:
        add_host(session)
        event = add_event(session, online=True, city="", state="", zip="")
        session.commit()
        assert "Location (city, state) Online".lower() in pdf_text(render_certificate(event))[1].lower()


def test_it_attaches_a_regenerated_certificate_to_an_email(sessions):
    with sessions() as session:
        add_host(session)
        event = add_event(session)
        session.commit()
        pdf = render_certificate(event)
    draft = Draft(to="jdoe@gfps.k12.mt.us", subject="Your event was updated", template="certificate_reminder",
                  context={"name": "", "host_name": "GFPS", "overdue": [], "ending": [], "monthly": False},
                  kind="reply", attachments=((certificate_filename(event), CERTIFICATE_MIME, pdf),))
    message = email.message_from_bytes(build_email(MailboxPolicy(), draft, None).as_bytes(), policy=email.policy.default)
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "pdu-certificate-E10001.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == pdf


def seed_month(sessions) -> None:
    created = dt.datetime(2026, 10, 5, 15, tzinfo=dt.timezone.utc)
    with sessions() as session:
        add_host(session)
        add_host(session, "H0002", name="Lewistown Schools", contact_email="sroe@lps.org")
        add_event(session, "E1", end_date=dt.date(2026, 9, 1))
        add_event(session, "E2", end_date=dt.date(2026, 9, 20))
        add_event(session, "E3", host_id="H0002", end_date=dt.date(2026, 10, 2))
        for n, decided_hours in enumerate((2, 4, 6, 30, 50)):
            session.add(Ticket(kind=TicketKind.EVENT_EDIT if n % 2 else TicketKind.USER_ADD, status=TicketStatus.APPROVED,
                               created_at=created, decided_at=created + dt.timedelta(hours=decided_hours)))
        session.add(Ticket(kind=TicketKind.LOGIN_HELP, status=TicketStatus.OPEN, created_at=created))
        session.commit()


def test_it_reports_a_month_of_tickets_decisions_and_overdue_counts(sessions):
    seed_month(sessions)
    with sessions() as session:
        figures = gather_figures(session, 2026, 10, MailboxPolicy().timezone)
    assert figures.ticket_total == 6
    assert figures.tickets["user_add"]["approved"] == 3
    assert (figures.median_hours, figures.p90_hours) == (6, 50)
    assert [(r["host_id"], r["count"]) for r in figures.overdue_by_host] == [("H0001", 2), ("H0002", 1)]
    pages, text = pdf_text(render_report(figures))
    assert pages == 1
    for expected in ("October 2026", "Tickets opened", "user add", "event edit", "6.0 h", "2.1 days",
                     "Great Falls Public Schools", "Lewistown Schools", "Mailings"):
        assert expected in text, expected


def test_it_takes_the_nearest_rank_percentile():
    assert percentile([], 90) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([float(n) for n in range(1, 11)], 90) == 9.0


def test_it_posts_last_months_report_to_staff_with_the_pdf_once(sessions, tmp_path):
    seed_month(sessions)
    jobs = Jobs(Settings(PDUBOT_VAR_DIR=str(tmp_path)), sessions, lambda: None, b"k")
    assert jobs.monthly_report(dt.date(2026, 11, 2))["filename"] == "pdubot-report-2026-10.pdf"
    assert jobs.monthly_report(dt.date(2026, 11, 3)) is None
    with sessions() as session:
        (post,) = session.scalars(sa.select(OutboxItem).where(OutboxItem.channel == Channel.SLACK))
        assert post.kind == "slack_notice"
        assert "Monthly report for October 2026: 6 tickets" in post.payload["text"]
        document = session.get(StoredDocument, post.payload["files"][0]["document_id"])
        assert pdf_text(document.data)[0] == 1
        assert session.get(Event, "E1") is not None
