"""PLP Insider editions and call reminders: preview, approval, exactly-once bulk delivery, one-click unsubscribe."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import re
import urllib.error
import urllib.request
from collections import Counter

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.delivery import RelayAddress, SmtpRelay
from bot.scheduler import Jobs
from bot.settings import Settings
from bot.web import make_web_app, start_web
from bot.web_unsubscribe import register
from storage.base import utcnow
from storage.changes import ChangeRecord
from storage.documents import StoredDocument
from storage.enums import Channel, DeliveryStatus, MailingKind, MailingStatus, SubscriberStatus
from storage.mailing import Subscriber, find_subscriber
from storage.mailouts import Delivery, Mailing, find_mailing
from storage.mailstate import suppress
from storage.outbox import OutboxItem
from storage.tickets import AuditEntry
from tests.servers import free_port, loop_thread, run_on, smtp_sink
from workflows.newsletter import APPROVE_ACTION, EditionError, approve_edition, prepare_edition
from workflows.unsubscribe import address_in_subject, make_token, read_token

SECRET = b"test-secret-key"
EDITION = """# November: planning for sustained learning

Professional learning works best when it is **sustained**, collaborative and job-embedded.

- Plan a series, not a single workshop
- Ask teachers what they need

Read more on the [OPI site](https://opi.mt.gov/).
"""


def add_subscribers(sessions: sessionmaker[Session], count: int, status: SubscriberStatus = SubscriberStatus.CONFIRMED,
                    prefix: str = "reader") -> list[str]:
    with sessions() as session:
        addresses = [f"{prefix}{n}@example.org" for n in range(count)]
        session.add_all(Subscriber(email=a, name=f"Reader {n}", status=status) for n, a in enumerate(addresses))
        session.commit()
    return addresses


def approved_edition(sessions: sessionmaker[Session], key: str = "2026-11") -> int:
    with sessions() as session:
        mailing = prepare_edition(session, EDITION, key, "PLP Insider, November 2026")
        approve_edition(session, key, "U123 (Ana)", utcnow())
        session.commit()
        return mailing.id


def jobs_for(sessions: sessionmaker[Session], port: int, tmp_path, transport=None) -> Jobs:
    settings = Settings(PDUBOT_VAR_DIR=str(tmp_path), PUBLIC_URL="https://pdubot.opi.mt.gov")
    factory = transport or (lambda: SmtpRelay(RelayAddress.parse(f"smtp://127.0.0.1:{port}")))
    return Jobs(settings, sessions, factory, SECRET)


def delivered_to(relay) -> Counter[str]:
    return Counter(rcpt for _, rcpts, _ in relay.received for rcpt in rcpts)


def test_it_prepares_an_edition_with_a_slack_preview_to_approve(sessions):
    add_subscribers(sessions, 3)
    with sessions() as session:
        mailing = prepare_edition(session, EDITION, "2026-11", "PLP Insider, November 2026")
        session.commit()
        assert mailing.status == MailingStatus.DRAFT
        assert "<strong>sustained</strong>" in mailing.html_body  # Markdown rendered inside the layout
        post = session.scalars(sa.select(OutboxItem).where(OutboxItem.channel == Channel.SLACK)).one()
        (button,) = post.payload["blocks"][-1]["elements"]
        assert (button["action_id"], button["value"]) == (APPROVE_ACTION, "2026-11")
        assert "3 confirmed subscribers" in post.payload["blocks"][2]["elements"][0]["text"]
        document = session.get(StoredDocument, post.payload["files"][0]["document_id"])
        assert document.data.startswith(b"%PDF-")
        approve_edition(session, "2026-11", "U123 (Ana)", dt.datetime(2026, 11, 20, 9, tzinfo=dt.timezone.utc))
        session.commit()
        assert mailing.status == MailingStatus.SCHEDULED
        with pytest.raises(EditionError):
            prepare_edition(session, EDITION + "\nA late change.", "2026-11", "PLP Insider, November 2026")


def test_it_escapes_the_subject_but_keeps_staff_markdown_html(sessions):
    with sessions() as session:
        mailing = prepare_edition(session, "Hello <em>all</em>", "x1", "Tips & <tricks>")
        assert "Tips &amp; &lt;tricks&gt;" in mailing.html_body
        assert "<em>all</em>" in mailing.html_body


class CrashAfter:
    """The relay connection of a process that dies (an unexpected error) when it reaches message ``n``."""

    def __init__(self, port: int, counter: list[int], n: int) -> None:
        self.relay = SmtpRelay(RelayAddress.parse(f"smtp://127.0.0.1:{port}"))
        self.counter = counter
        self.n = n

    async def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        self.counter[0] += 1
        if self.counter[0] == self.n:
            raise RuntimeError("simulated crash")
        await self.relay.send(raw, sender, recipients)

    async def close(self) -> None:
        await self.relay.close()


def test_it_sends_each_subscriber_an_edition_exactly_once_across_a_crash(sessions, tmp_path):
    readers = add_subscribers(sessions, 40)
    add_subscribers(sessions, 2, SubscriberStatus.PENDING, "pending")
    add_subscribers(sessions, 2, SubscriberStatus.UNSUBSCRIBED, "gone")
    with sessions() as session:
        suppress(session, readers[-1], "bounced: 550 no such user")  # hard bounce seen at intake
        session.commit()
    mailing_id = approved_edition(sessions)
    with smtp_sink() as (relay, port):
        counter = [0]
        crashing = jobs_for(sessions, port, tmp_path, lambda: CrashAfter(port, counter, 15))
        with pytest.raises(RuntimeError, match="simulated crash"):
            asyncio.run(crashing.send_one_mailing(mailing_id))
        assert 10 <= len(relay.received) < 40
        with sessions() as session:  # the dead process's lease runs out
            session.execute(sa.update(Delivery).where(Delivery.status == DeliveryStatus.SENDING)
                            .values(claimed_until=utcnow() - dt.timedelta(seconds=1)))
            session.commit()
        report = asyncio.run(jobs_for(sessions, port, tmp_path).send_one_mailing(mailing_id))
        assert report["remaining"] == 0
        assert asyncio.run(jobs_for(sessions, port, tmp_path).send_one_mailing(mailing_id)) is None  # done
    assert delivered_to(relay) == Counter(readers[:-1])
    with sessions() as session:
        assert session.get(Mailing, mailing_id).status == MailingStatus.SENT
        statuses = Counter(session.scalars(sa.select(Delivery.status)))
        assert statuses == {DeliveryStatus.SENT: 39}


def test_it_retries_a_deferred_delivery_without_resending_the_others(sessions, tmp_path):
    readers = add_subscribers(sessions, 5)
    mailing_id = approved_edition(sessions)
    with smtp_sink() as (relay, port):
        relay.script = ["451 4.3.0 try again later"]
        first = asyncio.run(jobs_for(sessions, port, tmp_path).send_one_mailing(mailing_id))
        assert (first["sent"], first["deferred"], first["remaining"]) == (4, 1, 1)
        with sessions() as session:
            session.execute(sa.update(Delivery).values(next_attempt_at=utcnow()))
            session.commit()
        second = asyncio.run(jobs_for(sessions, port, tmp_path).send_one_mailing(mailing_id))
        assert (second["sent"], second["remaining"]) == (1, 0)
    assert delivered_to(relay) == Counter(readers)


def test_it_puts_one_click_unsubscribe_headers_and_a_visible_link_on_every_copy(sessions, tmp_path):
    add_subscribers(sessions, 2)
    mailing_id = approved_edition(sessions)
    with smtp_sink() as (relay, port):
        asyncio.run(jobs_for(sessions, port, tmp_path).send_one_mailing(mailing_id))
    for _, (rcpt,), raw in relay.received:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["To"].addresses[0].addr_spec == rcpt
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
        assert https.startswith("https://pdubot.opi.mt.gov/unsubscribe/")
        assert mailto.startswith("mailto:OPIPDUPS@mt.gov?subject=unsubscribe")
        assert read_token(SECRET, https.rsplit("/", 1)[1]) == rcpt
        assert message["Precedence"] == "bulk" and message["List-Id"]
        html = message.get_body(preferencelist=("html",)).get_content()
        text = message.get_body(preferencelist=("plain",)).get_content()
        assert f'href="{https}"' in html and https in text
        assert "<strong>sustained</strong>" in html


def test_it_refuses_forged_and_altered_tokens():
    token = make_token(SECRET, "Reader@Example.org")
    assert read_token(SECRET, token) == "reader@example.org"
    address, mac = token.split(".")
    other = make_token(SECRET, "someone@else.org").split(".")[0]
    for forged in (f"{other}.{mac}", f"{address}.{mac[:-2]}AA", address, "", "!!!.???", make_token(b"other", "reader@example.org")):
        assert read_token(SECRET, forged) is None
    assert address_in_subject(SECRET, f"Re: unsubscribe {token}") == "reader@example.org"
    assert address_in_subject(SECRET, f"unsubscribe {other}.{mac}") is None


@pytest.fixture
def web(sessions):
    with loop_thread() as loop:
        app = make_web_app(sessions)
        register(app, sessions, SECRET)
        port = free_port()
        runner = run_on(loop, start_web(app, "127.0.0.1", port))
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            run_on(loop, runner.cleanup())


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_it_unsubscribes_with_one_click_over_http_and_ignores_forged_tokens(sessions, web):
    first, second = add_subscribers(sessions, 2)
    forged = f"{make_token(SECRET, first).split('.')[0]}.{make_token(SECRET, second).split('.')[1]}"
    assert http("POST", f"{web}/unsubscribe/{forged}", b"List-Unsubscribe=One-Click")[0] == 404
    status, page = http("GET", f"{web}/unsubscribe/{make_token(SECRET, first)}")
    assert status == 200 and 'method="post"' in page
    with sessions() as session:
        assert find_subscriber(session, first).status == SubscriberStatus.CONFIRMED  # neither changed anything
    status, page = http("POST", f"{web}/unsubscribe/{make_token(SECRET, first)}", b"List-Unsubscribe=One-Click")
    assert status == 200 and "unsubscribed" in page
    with sessions() as session:
        assert find_subscriber(session, first).status == SubscriberStatus.UNSUBSCRIBED
        assert find_subscriber(session, second).status == SubscriberStatus.CONFIRMED
        assert session.scalar(sa.select(ChangeRecord.action)) == "unsubscribe"


def test_it_reminds_subscribers_of_the_call_the_day_before(sessions, tmp_path):
    readers = add_subscribers(sessions, 3)
    with smtp_sink() as (relay, port):
        jobs = jobs_for(sessions, port, tmp_path)
        jobs.call_reminder(dt.date(2026, 11, 16))
        assert jobs.call_reminder(dt.date(2026, 11, 16)) is None  # one reminder per call
        asyncio.run(jobs.send_due_mailings())
    assert delivered_to(relay) == Counter(readers)
    message = email.message_from_bytes(relay.received[0][2], policy=email.policy.default)
    assert message["Subject"] == ("Reminder: Network Collaborative call tomorrow, "
                                  "Tuesday, November 17, 3:30-4:30 p.m. MST")
    with sessions() as session:
        assert find_mailing(session, MailingKind.CALL_REMINDER, "2026-11-17").status == MailingStatus.SENT


def edition_audit(session: Session) -> list[tuple[str, str, dict, dict]]:
    entries = session.scalars(sa.select(AuditEntry).where(AuditEntry.ticket_id.is_(None),
                                                          AuditEntry.action.like("edition_%")).order_by(AuditEntry.id))
    return [(e.action, e.actor, e.before, e.after) for e in entries]


def test_it_records_who_prepared_and_who_approved_each_version_of_an_edition(sessions):
    with sessions() as session:
        first = prepare_edition(session, EDITION, "2026-11", "PLP Insider, November", actor="slack:U123 (Ana)")
        first_document = first.document_id
        prepare_edition(session, EDITION, "2026-11", "PLP Insider, November 2026", actor="Bo Lee")
        approve_edition(session, "2026-11", "slack:U456 (Cy)", dt.datetime(2026, 11, 20, 9, tzinfo=dt.timezone.utc))
        session.commit()
        (prepared, replaced, approved) = edition_audit(session)
        previews = session.scalars(sa.select(OutboxItem).where(OutboxItem.channel == Channel.SLACK)
                                   .order_by(OutboxItem.id)).all()
    assert prepared[:3] == ("edition_prepared", "slack:U123 (Ana)", {})
    assert prepared[3]["subject"] == "PLP Insider, November" and prepared[3]["document_id"] == first_document
    assert replaced[:2] == ("edition_prepared", "Bo Lee")
    assert replaced[2]["subject"] == "PLP Insider, November" and replaced[3]["subject"] == "PLP Insider, November 2026"
    assert approved[:2] == ("edition_approved", "slack:U456 (Cy)")
    assert (approved[2]["status"], approved[3]["status"]) == ("draft", "scheduled")
    assert approved[3]["send_at"].startswith("2026-11-20T09:00")
    context = [p.payload["blocks"][2]["elements"][0]["text"] for p in previews[:2]]
    assert "prepared by slack:U123 (Ana)" in context[0] and "prepared by Bo Lee" in context[1]
