"""IMAP intake: every message in one IMAP folder goes through the inbox pipeline once, then is marked done there.

Position is kept by UIDVALIDITY and UID (RFC 3501 section 2.3.1.1), never by \\Seen: staff read the same
mailbox, and a message someone has opened must still become a ticket. Bodies are fetched with BODY.PEEK[]
so reading them changes no flag. A message is marked done (a flag, a move, or both) only after ``receive``
has committed it; the cursor is saved in between, and ``receive`` drops a message it has already stored,
so a crash at any point re-reads at most one message and never makes a second ticket.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from sqlalchemy.orm import Session, sessionmaker

from storage.enums import Source
from storage.mailstate import ImapCursor
from workflows.inbox import Receipt, receive
from workflows.policy import MailboxPolicy

if TYPE_CHECKING:
    from bot.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"imap": 143, "imaps": 993}
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 120.0
# One idle_check blocks this long at most, so a stop request is noticed within a second.
IDLE_CHECK_SECONDS = 0.5
# RFC 2177 section 3: servers may log out a client idle for 30 minutes; re-issue IDLE well before 29.
MAX_IDLE_SECONDS = 25 * 60
DELETED = b"\\Deleted"
# RFC 3501 section 6.4.4: system flags have their own search keys; keywords are searched with KEYWORD.
# \Seen belongs to the people reading the mailbox, and \Deleted and \Recent mean something else.
SYSTEM_FLAG_SEARCH_KEYS = {"\\answered": "ANSWERED", "\\flagged": "FLAGGED", "\\draft": "DRAFT"}
# RFC 3501 section 9: a keyword is an atom, which excludes spaces, controls and ( ) { % * " \ ].
KEYWORD = re.compile(r'[^\x00-\x20\x7f(){%*"\\\]]+')


@dataclass(frozen=True)
class ImapUrl:
    """Where the mailbox is: ``imap[s]://USER:PASSWORD@HOST[:PORT][/FOLDER]``, user and password percent-encoded.

    ``imap://`` is plain text and only fit for a server on the same host; use ``imaps://`` for anything else.
    """

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    tls: bool = True

    @classmethod
    def parse(cls, url: str) -> ImapUrl:
        """Parse ``url``; errors never quote it, because it holds the password."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError("IMAP_URL must start with imap:// or imaps://")
        if not parts.hostname or not parts.username:
            raise ValueError("IMAP_URL must name a user and a host: imaps://USER:PASSWORD@HOST/FOLDER")
        return cls(
            host=parts.hostname,
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
            tls=parts.scheme == "imaps",
        )

    @property
    def mailbox_key(self) -> str:
        """The cursor's key: one position per user, host and folder."""
        return f"{self.user}@{self.host}/{self.folder}"

    def message_ref(self, uidvalidity: int, uid: int) -> str:
        """An RFC 5092 IMAP URL for one message, without the password, kept as the message's source."""
        where = f"{quote(self.user, safe='')}@{self.host}:{self.port}/{quote(self.folder)}"
        return f"imap://{where};UIDVALIDITY={uidvalidity}/;UID={uid}"

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.folder}"


@dataclass(frozen=True)
class DoneMarking:
    """How a committed message is marked on the server: a flag, a move to another folder, or both."""

    flag: str = "$PdubotDone"
    folder: str = ""

    def __post_init__(self) -> None:
        if self.flag.startswith("\\") and self.flag.lower() not in SYSTEM_FLAG_SEARCH_KEYS:
            raise ValueError(r"IMAP_DONE_FLAG must be a keyword such as $PdubotDone, or \Flagged, \Answered or \Draft")
        if self.flag and not self.flag.startswith("\\") and not KEYWORD.fullmatch(self.flag):
            raise ValueError("IMAP_DONE_FLAG must be one IMAP keyword, without spaces or brackets")

    @property
    def marks_anything(self) -> bool:
        return bool(self.flag or self.folder)

    def without_flag(self) -> DoneMarking:
        return DoneMarking("", self.folder)

    def flag_search(self) -> list[str]:
        if self.flag.startswith("\\"):
            return [SYSTEM_FLAG_SEARCH_KEYS[self.flag.lower()]]
        return ["KEYWORD", self.flag]

    def new_mail_search(self, last_uid: int) -> list[str]:
        """Messages after ``last_uid`` not yet marked done."""
        criteria = ["UID", f"{last_uid + 1}:*"]
        return criteria + ["NOT", *self.flag_search()] if self.flag else criteria

    def unfinished_search(self, last_uid: int) -> list[str]:
        """Messages up to ``last_uid`` (so already committed) that were never marked done."""
        criteria = ["UID", f"1:{last_uid}", "NOT", "DELETED"]
        if self.folder:
            return criteria  # anything committed and still here was never moved
        return criteria + ["NOT", *self.flag_search()]


@dataclass
class Backoff:
    """Exponential backoff with jitter: about 1 s, doubling to at most 5 minutes."""

    first: float = 1.0
    cap: float = 300.0
    failures: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures = min(self.failures + 1, 30)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Position:
    """How far intake has got in one folder: UIDs are only comparable under the same UIDVALIDITY."""

    uidvalidity: int
    last_uid: int = 0


@dataclass
class OpenFolder:
    """The selected folder on one connection, and how messages in it are marked done."""

    client: IMAPClient
    position: Position
    marking: DoneMarking


def load_position(sessions: sessionmaker[Session], mailbox_key: str) -> Position | None:
    with sessions() as session:
        cursor = session.get(ImapCursor, mailbox_key)
        return Position(cursor.uidvalidity, cursor.last_uid) if cursor else None


def save_position(sessions: sessionmaker[Session], mailbox_key: str, position: Position) -> None:
    """Persist ``position`` in its own short transaction, right after each committed message."""
    with sessions() as session:
        session.merge(ImapCursor(mailbox=mailbox_key, uidvalidity=position.uidvalidity, last_uid=position.last_uid))
        session.commit()


def keeps_flag(select_response: dict[bytes, Any], flag: str) -> bool:
    """Whether the folder stores ``flag`` for good, per the PERMANENTFLAGS of its SELECT (RFC 3501 section 7.1)."""
    permanent = select_response.get(b"PERMANENTFLAGS")
    if permanent is None:
        return True  # RFC 3501: without PERMANENTFLAGS, assume every flag can be changed permanently
    names = {bytes(f).lower() for f in permanent}
    return flag.encode().lower() in names or (not flag.startswith("\\") and b"\\*" in names)


def fetch_raw(client: IMAPClient, uid: int) -> bytes | None:
    """The message's bytes, read with BODY.PEEK[] so \\Seen stays as the people reading the mailbox left it."""
    response = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {})
    raw = response.get(b"BODY[]")
    return bytes(raw) if raw is not None else None


def move_messages(client: IMAPClient, uids: list[int], folder: str) -> None:
    """MOVE (RFC 6851) when the server has it, else COPY, \\Deleted and an EXPUNGE of these UIDs only."""
    if client.has_capability("MOVE"):
        client.move(uids, folder)
        return
    client.copy(uids, folder)
    client.add_flags(uids, [DELETED], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)  # RFC 4315 section 2.1
    # Without UIDPLUS a plain EXPUNGE would also remove every other \Deleted message, even ones not yet
    # read into a ticket, so the original stays behind marked \Deleted for the owner's client to purge.


def heard_of_new_mail(client: IMAPClient) -> bool:
    """Whether the server reported new mail (EXISTS, RFC 3501 section 7.3.1) in a reply to an earlier command.

    Mail arriving while we search or store is announced in those replies and not again in IDLE, so without
    this check it would wait for the next IDLE re-issue. imapclient keeps such replies only in imaplib's store.
    """
    return bool(client._imap.untagged_responses.pop("EXISTS", None))


def is_new_mail(response: tuple[Any, ...]) -> bool:
    return len(response) > 1 and response[1] == b"EXISTS"


def wait_in_idle(client: IMAPClient) -> bool:
    """Wait up to IDLE_CHECK_SECONDS; True when mail arrived or the connection looks closed."""
    started = time.monotonic()
    responses = client.idle_check(timeout=IDLE_CHECK_SECONDS)
    if any(is_new_mail(r) for r in responses):
        return True
    # idle_check returns nothing at once when the server has closed the socket; leaving IDLE then lets
    # idle_done raise the connection error instead of spinning here until the deadline.
    return not responses and time.monotonic() - started < IDLE_CHECK_SECONDS / 2


def idle_until_mail(client: IMAPClient, stop: threading.Event, seconds: float) -> None:
    """IDLE (RFC 2177) until new mail, ``stop``, or ``seconds`` pass, whichever is first."""
    deadline = time.monotonic() + min(seconds, MAX_IDLE_SECONDS)
    client.idle()
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if wait_in_idle(client):
                break
    finally:
        client.idle_done()


def log_failure(exc: Exception, where: ImapUrl, delay: float) -> None:
    """Say what went wrong naming only user, host and folder: never the URL, the password or the token."""
    if isinstance(exc, LoginError):
        logger.error("IMAP login as %s was refused (%s); check IMAP_URL or IMAP_XOAUTH2_TOKEN. Retrying in %.0f s",
                     where, exc, delay)
    elif isinstance(exc, (OSError, IMAPClientAbortError)):
        logger.warning("IMAP connection to %s failed (%s: %s); reconnecting in %.0f s",
                       where, type(exc).__name__, exc, delay)
    elif isinstance(exc, IMAPClientError):
        logger.error("IMAP server for %s refused a command (%s); retrying in %.0f s", where, exc, delay)
    else:
        logger.exception("IMAP intake for %s failed; retrying in %.0f s", where, delay)


class ImapIntake:
    """Reads one IMAP folder into the inbox pipeline, with IDLE when the server offers it, else by polling."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy: MailboxPolicy,
        url: ImapUrl,
        marking: DoneMarking,
        on_receipt: Callable[[Receipt], None] | None = None,
        oauth2_token: str | None = None,
        idle_seconds: float = 600,
        poll_seconds: float = 30,
    ) -> None:
        if not url.password and not oauth2_token:
            raise ValueError("IMAP_URL has no password and IMAP_XOAUTH2_TOKEN is not set")
        if not marking.marks_anything:
            raise ValueError("set IMAP_DONE_FLAG or IMAP_DONE_FOLDER (or both) so done mail is marked on the server")
        self.sessions = sessions
        self.policy = policy
        self.url = url
        self.marking = marking
        self.on_receipt = on_receipt
        self.oauth2_token = oauth2_token
        self.idle_seconds = idle_seconds
        self.poll_seconds = poll_seconds

    @classmethod
    def from_settings(
        cls, sessions: sessionmaker[Session], settings: Settings, on_receipt: Callable[[Receipt], None] | None = None
    ) -> ImapIntake:
        if settings.imap_url is None:
            raise ValueError("IMAP_URL is not set")
        token = settings.imap_oauth2_token
        return cls(
            sessions,
            settings.policy,
            ImapUrl.parse(settings.imap_url.get_secret_value()),
            DoneMarking(settings.imap_done_flag, settings.imap_done_folder),
            on_receipt=on_receipt,
            oauth2_token=token.get_secret_value() if token else None,
            idle_seconds=settings.imap_idle_seconds,
            poll_seconds=settings.imap_poll_seconds,
        )

    def run_forever(self, stop: threading.Event) -> None:
        """Read new mail until ``stop`` is set. Failures are logged and retried with backoff, never raised."""
        logger.info("IMAP intake reading %s", self.url)
        backoff = Backoff()
        while not stop.is_set():
            try:
                self.serve(stop, backoff)
            except Exception as exc:
                delay = backoff.next_delay()
                log_failure(exc, self.url, delay)
                stop.wait(delay)
        logger.info("IMAP intake for %s stopped", self.url)

    def run_once(self) -> int:
        """Connect, read everything new, disconnect; return how many messages went through the pipeline."""
        with self.connect() as client:
            return self.ingest_new(self.open_folder(client), threading.Event())

    def serve(self, stop: threading.Event, backoff: Backoff) -> None:
        """One connection: catch up, then wait for mail and read it, until ``stop`` is set."""
        with self.connect() as client:
            folder = self.open_folder(client)
            while not stop.is_set():
                self.ingest_new(folder, stop)
                backoff.reset()
                if not heard_of_new_mail(client):
                    self.wait_for_mail(client, stop)

    def connect(self) -> IMAPClient:
        """A logged-in client; as a context manager it logs out at the end."""
        client = IMAPClient(self.url.host, self.url.port, ssl=self.url.tls,
                            timeout=SocketTimeout(CONNECT_TIMEOUT, READ_TIMEOUT))
        try:
            self.login(client)
        except BaseException:
            client.shutdown()
            raise
        return client

    def login(self, client: IMAPClient) -> None:
        if self.oauth2_token:
            # Microsoft 365 has switched basic authentication off; it takes an OAuth 2.0 bearer token (XOAUTH2).
            client.oauth2_login(self.url.user, self.oauth2_token)
        else:
            client.login(self.url.user, self.url.password)

    def open_folder(self, client: IMAPClient) -> OpenFolder:
        """Select the folder, settle the position, and finish marking what an earlier run committed."""
        if self.marking.folder and not client.folder_exists(self.marking.folder):
            client.create_folder(self.marking.folder)
        response = client.select_folder(self.url.folder)
        folder = OpenFolder(client, self.settle_position(int(response[b"UIDVALIDITY"])), self.usable_marking(response))
        self.finish_interrupted(folder)
        return folder

    def usable_marking(self, select_response: dict[bytes, Any]) -> DoneMarking:
        """The marking, less a flag the server would not keep (storing it would fail on every message)."""
        if not self.marking.flag or keeps_flag(select_response, self.marking.flag):
            return self.marking
        logger.error("the IMAP server does not keep the flag %s in %s; set IMAP_DONE_FLAG to \\Flagged, or empty "
                     "with IMAP_DONE_FOLDER set. Relying on the saved position alone.", self.marking.flag, self.url)
        return self.marking.without_flag()

    def settle_position(self, uidvalidity: int) -> Position:
        """The saved position, or a fresh one from UID 1 when UIDVALIDITY changed (RFC 3501 section 2.3.1.1)."""
        saved = load_position(self.sessions, self.url.mailbox_key)
        if saved is not None and saved.uidvalidity == uidvalidity:
            return saved
        if saved is not None:
            logger.warning("UIDVALIDITY of %s changed from %s to %s: reading the folder again; messages marked "
                           "done are skipped and the rest are recognised as duplicates",
                           self.url, saved.uidvalidity, uidvalidity)
        position = Position(uidvalidity)
        save_position(self.sessions, self.url.mailbox_key, position)
        return position

    def finish_interrupted(self, folder: OpenFolder) -> None:
        """Mark done what was committed but not marked, after a crash or a lost connection, without reading it again."""
        last_uid = folder.position.last_uid
        if last_uid == 0 or not folder.marking.marks_anything:
            return
        uids = [uid for uid in folder.client.search(folder.marking.unfinished_search(last_uid)) if uid <= last_uid]
        if uids:
            logger.info("marking %d message(s) already stored from %s as done", len(uids), self.url)
            self.mark_done(folder, uids)

    def find_new(self, folder: OpenFolder) -> list[int]:
        last_uid = folder.position.last_uid
        # "N:*" always matches the highest UID in the folder, even one below N (RFC 3501 section 6.4.8).
        found = folder.client.search(folder.marking.new_mail_search(last_uid))
        return sorted(uid for uid in found if uid > last_uid)

    def ingest_new(self, folder: OpenFolder, stop: threading.Event) -> int:
        """Read every message not yet read, oldest first, until done or ``stop`` is set."""
        count = 0
        for uid in self.find_new(folder):
            if stop.is_set():
                break
            count += self.ingest(folder, uid)
        return count

    def ingest(self, folder: OpenFolder, uid: int) -> int:
        """Commit one message, then move the cursor past it, then mark it done; 0 when it vanished meanwhile."""
        raw = fetch_raw(folder.client, uid)
        if raw is None:
            return 0  # expunged by someone between SEARCH and FETCH
        ref = self.url.message_ref(folder.position.uidvalidity, uid)
        receipt = receive(self.sessions, raw, Source.IMAP, self.policy, source_ref=ref)
        folder.position.last_uid = uid
        save_position(self.sessions, self.url.mailbox_key, folder.position)
        self.mark_done(folder, [uid])
        logger.info("IMAP UID %s of %s stored as message %s", uid, self.url, receipt.message_pk)
        if self.on_receipt is not None:
            self.on_receipt(receipt)
        return 1

    def mark_done(self, folder: OpenFolder, uids: list[int]) -> None:
        """Flag first, so the moved copy carries the flag too."""
        if folder.marking.flag:
            folder.client.add_flags(uids, [folder.marking.flag], silent=True)
        if folder.marking.folder:
            move_messages(folder.client, uids, folder.marking.folder)

    def wait_for_mail(self, client: IMAPClient, stop: threading.Event) -> None:
        if client.has_capability("IDLE"):
            idle_until_mail(client, stop, self.idle_seconds)
        elif not stop.wait(self.poll_seconds):
            client.noop()  # RFC 3501 section 6.1.2: lets the server report new mail before the next SEARCH
