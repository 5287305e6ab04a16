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
        TicketStatus.NEEDS_INFO,
        TicketStatus.AWAITING_CONFIRMATION,
        TicketStatus.OPEN,
        TicketStatus.WAITING_ON_HOST,
    }
)
DECIDED_STATUSES = frozenset({TicketStatus.APPROVED, TicketStatus.REJECTED, TicketStatus.CLOSED})

_S = TicketStatus
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
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
