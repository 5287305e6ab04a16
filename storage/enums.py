"""The closed vocabularies of the service: every status and kind is one of these, never a bare string."""

from __future__ import annotations

import enum


class TicketKind(str, enum.Enum):
    """What a host is asking for, or why a message is not a request at all."""

    EVENT_EDIT = "event_edit"
    EVENT_CANCEL = "event_cancel"
    CERTIFICATE_COUNT = "certificate_count"
    USER_ADD = "user_add"
    USER_REMOVE = "user_remove"
    ACCOUNT_UPDATE = "account_update"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    LOGIN_HELP = "login_help"
    ELIGIBILITY_QUESTION = "eligibility_question"
    OTHER = "other"
    # Not requests: kept for the record, never answered.
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    UNREADABLE = "unreadable"


class TicketStatus(str, enum.Enum):
    """Where a ticket stands. The allowed moves are declared in ``TRANSITIONS``."""

    NEW = "new"  # just read; intake routes it before its transaction commits
    NEEDS_INFO = "needs_info"  # waiting for the host to send a missing piece
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # waiting for the account contact to confirm
    OPEN = "open"  # in front of staff
    WAITING_ON_HOST = "waiting_on_host"  # staff asked the host a question
    APPROVED = "approved"
    REJECTED = "rejected"
    ANSWERED = "answered"  # answered automatically (self-service steps); reopens if the host writes again
    CLOSED = "closed"


OPEN_STATUSES = frozenset(
    {
        TicketStatus.NEW,
        TicketStatus.NEEDS_INFO,
        TicketStatus.AWAITING_CONFIRMATION,
        TicketStatus.OPEN,
        TicketStatus.WAITING_ON_HOST,
    }
)
DECIDED_STATUSES = frozenset({TicketStatus.APPROVED, TicketStatus.REJECTED, TicketStatus.CLOSED})

_S = TicketStatus
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    _S.NEW: frozenset(set(TicketStatus) - {_S.NEW}),
    _S.NEEDS_INFO: frozenset({_S.OPEN, _S.NEEDS_INFO, _S.AWAITING_CONFIRMATION, _S.REJECTED, _S.CLOSED}),
    _S.AWAITING_CONFIRMATION: frozenset({_S.OPEN, _S.REJECTED, _S.CLOSED}),
    _S.OPEN: frozenset({_S.WAITING_ON_HOST, _S.APPROVED, _S.REJECTED, _S.CLOSED, _S.NEEDS_INFO}),
    _S.WAITING_ON_HOST: frozenset({_S.OPEN, _S.APPROVED, _S.REJECTED, _S.CLOSED}),
    _S.ANSWERED: frozenset({_S.OPEN, _S.CLOSED}),
    _S.APPROVED: frozenset({_S.OPEN}),  # undo of an automatically recorded change
    _S.REJECTED: frozenset({_S.OPEN}),
    _S.CLOSED: frozenset({_S.OPEN}),
}


def can_move(current: TicketStatus, target: TicketStatus) -> bool:
    """True when a ticket may move from ``current`` to ``target``."""
    return target in TRANSITIONS[current]


class Direction(str, enum.Enum):
    IN = "in"
    OUT = "out"


class MessageClass(str, enum.Enum):
    """How intake classified an inbound message before any workflow looked at it."""

    REQUEST = "request"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    OWN = "own"  # one of our own messages coming back
    UNREADABLE = "unreadable"
    OUTGOING = "outgoing"


class Source(str, enum.Enum):
    SMTP = "smtp"
    IMAP = "imap"
    FILE = "file"
    SERVICE = "service"


class Channel(str, enum.Enum):
    EMAIL = "email"
    SLACK = "slack"


class OutboxStatus(str, enum.Enum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # permanent failure: stays visible to staff
    SKIPPED = "skipped"  # suppressed recipient, never attempted


class HostKind(str, enum.Enum):
    MULTIPLE = "multiple"
    SINGLE = "single"


class EventStatus(str, enum.Enum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class SubscriberStatus(str, enum.Enum):
    PENDING = "pending"  # asked to join, has not confirmed (double opt-in)
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class JobStatus(str, enum.Enum):
    """A scheduled job's run for one key (a day, a month, a mailing), claimed so only one scheduler runs it."""

    RUNNING = "running"
    DONE = "done"
    WAITING = "waiting"  # did what it could (a mailing with retries pending); the next trigger goes on
    FAILED = "failed"  # may be claimed again on the next trigger


class ReminderKind(str, enum.Enum):
    """Why an event was named in a certificate-count reminder."""

    OVERDUE = "overdue"  # a nag stage, counted in days after the end date
    STAFF = "staff"  # staff were told about the event in Slack
    ENDING = "ending"  # a one-year course ends soon: report, and enter next year's event


class MailingKind(str, enum.Enum):
    INSIDER = "insider"  # the PLP Insider newsletter
    CALL_REMINDER = "call_reminder"  # the Network Collaborative call, the day before


class MailingStatus(str, enum.Enum):
    DRAFT = "draft"  # prepared, waiting for staff approval
    SCHEDULED = "scheduled"  # approved, goes out at send_at
    SENDING = "sending"
    SENT = "sent"  # every delivery row reached a final status


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # permanent failure (5xx); stays visible
    SKIPPED = "skipped"  # unsubscribed or undeliverable by send time


class DocumentKind(str, enum.Enum):
    NEWSLETTER = "newsletter"  # the PDF archive copy of an edition
    REPORT = "report"  # the monthly staff report
