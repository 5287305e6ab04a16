"""Bulk mail to the subscriber list: a mailing rendered once, made personal per subscriber by cheap substitution.

Every message follows the bulk-sender rules of RFC 8058 and the large mailbox providers: a
List-Unsubscribe header with an https one-click URL and a mailto address, List-Unsubscribe-Post, a
visible unsubscribe link in the body, List-Id (RFC 2919) and Precedence: bulk (so, by RFC 3834 section 2,
auto-responders do not answer). The relay is expected to DKIM-sign the message including these
headers, which RFC 8058 section 4 requires for one-click to be honoured.
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import uuid
from dataclasses import dataclass
from email.message import EmailMessage

from markupsafe import escape

from workflows.policy import MailboxPolicy
from workflows.unsubscribe import make_token, unsubscribe_url

# Rendered into the bodies in place of each subscriber's own link. Only characters that neither HTML
# escaping nor URL handling changes, so it survives the templates byte for byte.
UNSUBSCRIBE_PLACEHOLDER = "@@PDUBOT_UNSUBSCRIBE_URL@@"
LIST_ID = "PLP Insider <plp-insider.{domain}>"
LINE_BYTES = 57  # base64 makes each 57 bytes one line of 76 characters


def _fold(name: str, value: str) -> bytes:
    return email.policy.SMTP.fold_binary(name, value)


def _base64_lines(data: bytes) -> bytes:
    """Base64 in lines of 76 characters, ending in CRLF (RFC 2045 section 6.8, RFC 5321 section 2.3.8)."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class SplitBody:
    """A body part, split where each subscriber's unsubscribe URL goes, with what every copy shares encoded once.

    Base64 encodes each line of 57 bytes on its own, so the whole lines before the first URL are the same in
    every copy; only the rest is encoded per subscriber (most of an edition comes before its footer link).
    """

    encoded_start: bytes
    pieces: tuple[bytes, ...]  # the rest of the body, split where the URL goes

    @classmethod
    def of(cls, body: str) -> SplitBody:
        pieces = _split(body.replace("\r\n", "\n").replace("\n", "\r\n"))
        shared = len(pieces[0]) // LINE_BYTES * LINE_BYTES
        return cls(_base64_lines(pieces[0][:shared]), (pieces[0][shared:], *pieces[1:]))

    def encode(self, url: str) -> bytes:
        """The part in base64 with ``url`` in place, exactly as encoding the whole of it would give."""
        return self.encoded_start + _base64_lines(url.encode("utf-8").join(self.pieces))


@dataclass(frozen=True)
class BulkMessage:
    """One mailing, rendered once. ``personalize`` makes a subscriber's copy with no template work."""

    head: bytes  # the header fields every copy shares
    text: SplitBody  # the plain-text body
    html: SplitBody
    boundary: bytes
    id_domain: str
    mailbox: str
    public_url: str
    secret: bytes

    @property
    def sender(self) -> str:
        return self.mailbox

    def personalize(self, address: str, name: str = "") -> bytes:
        """The complete message for one subscriber: their To, Message-ID and unsubscribe links."""
        token = make_token(self.secret, address)
        url = unsubscribe_url(self.public_url, token)
        mailto = f"mailto:{self.mailbox}?subject=unsubscribe%20{token}"
        head = b"".join((
            self.head,
            _fold("To", email.utils.formataddr((name, address)) if name else address),
            f"Message-ID: <{uuid.uuid4().hex}@{self.id_domain}>\r\n".encode("ascii"),
            # RFC 8058 section 3.1: the https URI for the one-click POST, and a mailto for older clients.
            f"List-Unsubscribe: <{url}>,\r\n <{mailto}>\r\n".encode("utf-8"),
        ))
        b = self.boundary
        return b"".join((
            head, b"\r\n",
            b"--", b, b"\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            self.text.encode(url),
            b"--", b, b"\r\nContent-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            self.html.encode(str(escape(url))),
            b"--", b, b"--\r\n",
        ))


def build_bulk_message(
    policy: MailboxPolicy, subject: str, text: str, html: str, public_url: str, secret: bytes
) -> BulkMessage:
    """Prepare ``text`` and ``html`` (each holding ``UNSUBSCRIBE_PLACEHOLDER``) for fast personal copies."""
    boundary = f"==pdubot-{uuid.uuid4().hex}=="
    shared = EmailMessage(policy=email.policy.SMTP)
    shared["From"] = email.utils.formataddr((policy.display_name, policy.address))
    shared["Subject"] = subject
    shared["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    shared["MIME-Version"] = "1.0"
    shared["List-Id"] = LIST_ID.format(domain=policy.domain)
    # RFC 8058 section 3.1: announces that a POST to the List-Unsubscribe URL unsubscribes at once.
    shared["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    shared["Precedence"] = "bulk"
    # X-Loop lets the non-request rules recognise our own mail if it ever comes back to the mailbox.
    shared["X-Loop"] = policy.address
    shared["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    head = b"".join(_fold(name, str(value)) for name, value in shared.items())
    return BulkMessage(
        head=head,
        text=SplitBody.of(text),
        html=SplitBody.of(html),
        boundary=boundary.encode("ascii"),
        id_domain=policy.domain,
        mailbox=policy.address,
        public_url=public_url,
        secret=secret,
    )


def _split(body: str) -> tuple[bytes, ...]:
    if UNSUBSCRIBE_PLACEHOLDER not in body:
        raise ValueError("a bulk mailing must show its unsubscribe link in the body")
    return tuple(piece.encode("utf-8") for piece in body.split(UNSUBSCRIBE_PLACEHOLDER))
