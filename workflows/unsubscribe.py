"""Unsubscribe links: an HMAC token per subscriber that cannot be forged, and leaving the list at once.

RFC 8058 one-click unsubscription needs a URL that works without a login or cookies, so the token
itself must prove which address it unsubscribes: it carries the address and an HMAC-SHA256 of it under
the service's secret key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from sqlalchemy.orm import Session

from storage.changes import ChangeRecord
from storage.enums import SubscriberStatus
from storage.mailing import find_subscriber

TOKEN_PURPOSE = b"pdubot-unsubscribe-v1:"
# The List-Unsubscribe mailto (RFC 2369) puts "unsubscribe <token>" in the subject of the email it opens.
SUBJECT_TOKEN = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.IGNORECASE)
MAC_BYTES = 16  # 128 bits: far beyond guessing, and keeps the URL short


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, email: str) -> bytes:
    return hmac.new(secret, TOKEN_PURPOSE + email.encode("utf-8"), hashlib.sha256).digest()[:MAC_BYTES]


def make_token(secret: bytes, email: str) -> str:
    """``<address>.<mac>``, both base64url, safe in a URL path and in HTML without escaping."""
    email = email.strip().lower()
    return f"{_b64(email.encode('utf-8'))}.{_b64(_mac(secret, email))}"


def read_token(secret: bytes, token: str) -> str | None:
    """The address a genuine token names, or None for anything forged, altered or malformed."""
    encoded, dot, mac = token.partition(".")
    if not dot or len(token) > 1000:
        return None
    try:
        email = _unb64(encoded).decode("utf-8")
        given = _unb64(mac)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return email if hmac.compare_digest(given, _mac(secret, email)) else None


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"


def unsubscribe(session: Session, email: str, actor: str) -> bool:
    """Take ``email`` off the list now and log it; True when the address was on the list. The caller commits."""
    subscriber = find_subscriber(session, email)
    if subscriber is None or subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return False
    before = subscriber.status
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    session.add(ChangeRecord(actor=actor, entity="subscriber", entity_id=subscriber.email, action="unsubscribe",
                             before={"status": before.value}, after={"status": SubscriberStatus.UNSUBSCRIBED.value},
                             summary=f"{subscriber.email} left the mailing list"))
    return True


def address_in_subject(secret: bytes, subject: str) -> str | None:
    """The address a List-Unsubscribe mailto message unsubscribes, when its subject carries a genuine token."""
    match = SUBJECT_TOKEN.search(subject)
    return read_token(secret, match.group(1)) if match else None
