"""PLP Insider editions and Network Collaborative call reminders: prepare, approve and schedule bulk mailings.

Staff write an edition in Markdown. ``prepare_edition`` renders it once (HTML email, plain text, PDF
archive copy), stores it as a draft and shows staff a Slack preview with an "Approve & schedule" button;
``approve_edition`` schedules it. The bulk sender (``bot/mailout.py``) then delivers it.
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import markdown as markdown_lib
import sqlalchemy as sa
from markupsafe import Markup
from sqlalchemy.orm import Session

from storage.base import utcnow
from storage.documents import StoredDocument, file_reference, store_document
from storage.enums import DocumentKind, MailingKind, MailingStatus, SubscriberStatus
from storage.mailing import Subscriber
from storage.mailouts import Mailing, find_mailing
from templates import render
from workflows.bulkmail import UNSUBSCRIBE_PLACEHOLDER
from workflows.calendar import call_window
from workflows.pdf import render_pdf
from workflows.policy import MailboxPolicy
from workflows.staff import StaffPost, post_to_staff
from workflows.ticket_actions import SYSTEM_ACTOR, audit

logger = logging.getLogger(__name__)

INSIDER_MASTHEAD = "Professional Learning Provider Insider"
CALL_MASTHEAD = "Professional Learning Provider Network Collaborative"
APPROVE_ACTION = "newsletter_approve"  # the Slack button's action_id; its value is the edition key
MARKDOWN_EXTENSIONS = ("extra", "sane_lists")


class EditionError(ValueError):
    """An edition that cannot be prepared or approved as asked (unknown, already sent, changed)."""


def render_markdown(source: str) -> Markup:
    """Staff-written Markdown as HTML. Staff are trusted authors, so their HTML is kept as written."""
    return Markup(markdown_lib.markdown(source, extensions=list(MARKDOWN_EXTENSIONS), output_format="html"))


def render_edition(source: str, subject: str, edition_key: str, mailbox: MailboxPolicy) -> tuple[str, str, bytes]:
    """The text and HTML bodies (with the unsubscribe placeholder) and the PDF archive copy of an edition."""
    content = render_markdown(source)
    common = {"subject": subject, "masthead": INSIDER_MASTHEAD, "mailbox": mailbox.address,
              "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER}
    text = render("email/insider.txt", markdown=source.strip(), **common)
    html = render("email/insider.html", content=content, **common)
    today = dt.datetime.now(mailbox.timezone).date()
    prepared = f"{today:%B} {today.day}, {today.year}"
    pdf = render_pdf("newsletter", subject=subject, content=content, edition_key=edition_key, prepared=prepared)
    return text, html, pdf


def prepare_edition(
    session: Session, markdown: str, edition_key: str, subject: str, mailbox: MailboxPolicy | None = None,
    actor: str = SYSTEM_ACTOR,
) -> Mailing:
    """Render and store the edition as a draft, and queue its Slack preview with an approve button.

    Preparing the same key again replaces a draft; an approved or sent edition cannot change. Who prepared
    it (``slack:U123 (Ann)``, or the command line's ``--by``) is audited and named in the preview. The
    caller commits.
    """
    mailbox = mailbox or MailboxPolicy()
    edition_key = edition_key.strip()
    if not edition_key or not subject.strip() or not markdown.strip():
        raise EditionError("an edition needs a key, a subject and some Markdown")
    mailing = find_mailing(session, MailingKind.INSIDER, edition_key)
    if mailing is not None and mailing.status != MailingStatus.DRAFT:
        if mailing.source == markdown and mailing.subject == subject:
            return mailing
        raise EditionError(f"edition {edition_key} is already {mailing.status.value}; use a new edition key")
    text, html, pdf = render_edition(markdown, subject, edition_key, mailbox)
    document = store_document(session, DocumentKind.NEWSLETTER, edition_key, f"plp-insider-{edition_key}.pdf", pdf)
    before = edition_fields(mailing) if mailing is not None else {}
    if mailing is None:
        mailing = Mailing(kind=MailingKind.INSIDER, key=edition_key)
        session.add(mailing)
    mailing.status = MailingStatus.DRAFT
    mailing.subject = subject
    mailing.source = markdown
    mailing.text_body = text
    mailing.html_body = html
    mailing.document_id = document.id
    session.flush()
    audit(session, None, "edition_prepared", actor, before, edition_fields(mailing))
    queue_preview(session, mailing, document, actor)
    return mailing


def edition_fields(mailing: Mailing) -> dict[str, object]:
    """What the audit log keeps of an edition: enough to tell one version from another, not the whole text."""
    return {"mailing_id": mailing.id, "edition": mailing.key, "status": mailing.status.value,
            "subject": mailing.subject, "document_id": mailing.document_id,
            "send_at": mailing.send_at.isoformat() if mailing.send_at else None}


def confirmed_count(session: Session) -> int:
    query = sa.select(sa.func.count()).select_from(Subscriber).where(Subscriber.status == SubscriberStatus.CONFIRMED)
    return int(session.scalar(query) or 0)


def slack_escape(text: str) -> str:
    """Slack's three control characters (its "Formatting text" guide)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def queue_preview(session: Session, mailing: Mailing, document: StoredDocument, actor: str) -> None:
    """A staff post showing the edition, its PDF, and the button that approves and schedules it."""
    excerpt = mailing.source.strip()
    excerpt = excerpt if len(excerpt) <= 2500 else excerpt[:2500] + "..."
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"PLP Insider preview: {mailing.subject}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(excerpt)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"Edition `{slack_escape(mailing.key)}` prepared by {slack_escape(actor)} \u00b7 "
            f"{confirmed_count(session)} confirmed subscribers \u00b7 the PDF archive copy is attached")}]},
        {"type": "actions", "elements": [{
            "type": "button", "style": "primary", "action_id": APPROVE_ACTION, "value": mailing.key,
            "text": {"type": "plain_text", "text": "Approve & schedule"},
        }]},
    ]
    post_to_staff(
        session, StaffPost.NOTICE, text=f"PLP Insider edition {mailing.key} is ready for review: {mailing.subject}",
        blocks=blocks, files=[file_reference(document, f"PLP Insider {mailing.key}")],
        dedupe_key=f"insider-preview:{mailing.key}:{document.created_at.isoformat()}",
    )


def approve_edition(session: Session, edition_key: str, actor: str, send_at: dt.datetime) -> Mailing:
    """Schedule a prepared edition to go out at ``send_at`` (aware). Re-approving reschedules it. The caller commits."""
    if send_at.tzinfo is None:
        raise EditionError("send_at must carry a time zone")
    mailing = find_mailing(session, MailingKind.INSIDER, edition_key)
    if mailing is None:
        raise EditionError(f"no edition {edition_key}; prepare it first")
    if mailing.status not in (MailingStatus.DRAFT, MailingStatus.SCHEDULED):
        raise EditionError(f"edition {edition_key} is already {mailing.status.value}")
    before = edition_fields(mailing)
    mailing.status = MailingStatus.SCHEDULED
    mailing.send_at = send_at
    mailing.approved_by = actor
    mailing.approved_at = utcnow()
    audit(session, None, "edition_approved", actor, before, edition_fields(mailing))
    post_to_staff(session, StaffPost.NOTICE,
                  text=f"PLP Insider edition {edition_key} approved by {actor}; it goes out {send_at.isoformat()}.",
                  dedupe_key=f"insider-approved:{edition_key}:{send_at.isoformat()}")
    logger.info("edition %s approved by %s for %s", edition_key, actor, send_at.isoformat())
    return mailing


def call_when(start: dt.datetime, end: dt.datetime) -> str:
    """``Tuesday, November 17, 3:30-4:30 p.m. MST``: the abbreviation shows MST or MDT for that date."""
    return f"{start:%A, %B} {start.day}, {_clock(start)}-{_clock(end)} p.m. {start:%Z}"


def _clock(moment: dt.datetime) -> str:
    return f"{moment.hour % 12 or 12}:{moment.minute:02d}"


def prepare_call_reminder(
    session: Session, year: int, month: int, tz: ZoneInfo, details: str, mailbox: MailboxPolicy
) -> Mailing:
    """The month's call reminder as a mailing due now; the same month twice gives the same mailing."""
    start, end = call_window(year, month, tz)
    key = start.date().isoformat()
    mailing = find_mailing(session, MailingKind.CALL_REMINDER, key)
    if mailing is not None:
        return mailing
    when = call_when(start, end)
    subject = f"Reminder: Network Collaborative call tomorrow, {when}"
    common = {"subject": subject, "masthead": CALL_MASTHEAD, "mailbox": mailbox.address, "when": when,
              "details": details, "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER}
    mailing = Mailing(kind=MailingKind.CALL_REMINDER, key=key, status=MailingStatus.SCHEDULED, subject=subject,
                      text_body=render("email/call_reminder.txt", **common),
                      html_body=render("email/call_reminder.html", **common),
                      send_at=utcnow(), approved_by="pdubot", approved_at=utcnow())
    session.add(mailing)
    session.flush()
    return mailing


def due_mailings(session: Session, now: dt.datetime) -> list[int]:
    """Mailings approved to go out by ``now`` that have not finished."""
    query = sa.select(Mailing.id).where(
        Mailing.status.in_([MailingStatus.SCHEDULED, MailingStatus.SENDING]), Mailing.send_at <= now
    ).order_by(Mailing.send_at, Mailing.id)
    return list(session.scalars(query))
