"""File intake: .eml files, folders of them and Maildirs, for backfill and tests.

A backfill is filed in batches (one transaction per ``BATCH_SIZE`` messages), optionally with worker
processes parsing and reading the mail ahead of the process that writes it.
"""

from __future__ import annotations

import logging
import mailbox
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storage.db import make_engine, make_sessionmaker
from storage.enums import MessageClass, Source
from workflows.inbox import Arrival, Receipt, receive_batch, understand
from workflows.policy import MailboxPolicy
from workflows.matching import registry_index
from workflows.reading import Reading, read

logger = logging.getLogger(__name__)

BATCH_SIZE = 100  # messages per transaction: a failure in one costs a retry of the others, one by one
READ_CHUNK = 16  # messages a worker reads per task
CHUNKS_IN_FLIGHT = 4  # per worker: enough to keep it busy, few enough to bound memory
READERS_FROM = 500  # starting a reader process takes a second or two; below this many messages it is not worth it


@dataclass(frozen=True)
class StoredMessage:
    """One message on disk: a plain file, or a key inside a Maildir."""

    path: Path
    maildir_key: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.path}#{self.maildir_key}" if self.maildir_key else str(self.path)

    def read(self) -> bytes:
        if self.maildir_key is None:
            return self.path.read_bytes()
        box = mailbox.Maildir(self.path, factory=None, create=False)
        with box.get_file(self.maildir_key) as handle:
            return handle.read()


def is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def find_messages(paths: list[Path]) -> list[StoredMessage]:
    """Every message under ``paths``, in a stable order; listing reads no message bodies."""
    found: list[StoredMessage] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(path)
        if path.is_dir() and is_maildir(path):
            found.extend(_maildir_messages(path))
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() == ".eml":
                    found.append(StoredMessage(child))
                elif child.is_dir() and is_maildir(child):
                    found.extend(_maildir_messages(child))
        else:
            found.append(StoredMessage(path))
    return found


def _maildir_messages(path: Path) -> list[StoredMessage]:
    box = mailbox.Maildir(path, factory=None, create=False)
    return [StoredMessage(path, key) for key in sorted(box.keys())]


def default_readers(count: int) -> int:
    """One reader per core for a large backfill (the writing process mostly waits for them), none for a few files."""
    return (os.cpu_count() or 1) if count >= READERS_FROM else 0


def take_in(
    sessions: sessionmaker[Session],
    found: list[StoredMessage],
    policy: MailboxPolicy,
    acknowledge: bool = False,
    readers: int = 0,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Receipt]:
    """File ``found`` in order, ``batch_size`` messages per transaction, and say what became of each.

    With ``readers`` > 0 (and no acknowledgements), that many worker processes parse and read the mail
    while this one writes. Reading ahead is safe because filing quietly never changes the registry the
    reader matches against; answering can (a certificate count recorded at once), so it reads here.
    """
    arrivals = read_ahead(found, policy, sessions, readers) if readers and not acknowledge else (
        understand(stored.read(), policy, stored.ref) for stored in found)
    while batch := list(islice(arrivals, batch_size)):
        yield from receive_batch(sessions, batch, Source.FILE, policy, acknowledge)


def read_ahead(
    found: list[StoredMessage], policy: MailboxPolicy, sessions: sessionmaker[Session], readers: int
) -> Iterator[Arrival]:
    """Arrivals for ``found``, in order, parsed and read by ``readers`` worker processes.

    At most a few chunks per reader are in flight, so a backfill far larger than memory streams through.
    """
    engine: sa.Engine = sessions.kw["bind"]
    chunks = [found[i:i + READ_CHUNK] for i in range(0, len(found), READ_CHUNK)]
    with ProcessPoolExecutor(readers, mp_context=reader_context(sessions),
                             initializer=start_reader, initargs=(engine.url, policy)) as pool:
        in_flight: deque[Future[list[Arrival]]] = deque()
        for chunk in chunks:
            in_flight.append(pool.submit(read_chunk, chunk))
            if len(in_flight) >= readers * CHUNKS_IN_FLIGHT:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()


def reader_context(sessions: sessionmaker[Session]) -> BaseContext:
    """Readers are forked where the platform can, after the registry index is built, so each starts at once
    with the index in hand; spawning would import the service and build the index again in every reader.

    The engine's pooled connections are closed first: a forked child must never hold a copy of a parent's
    connection, whose socket or file it would share.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    with sessions() as session:
        registry_index(session)
    sessions.kw["bind"].dispose()
    return multiprocessing.get_context("fork")


_reader: tuple[sessionmaker[Session], MailboxPolicy] | None = None


def start_reader(url: sa.URL, policy: MailboxPolicy) -> None:
    """A worker's own engine: the registry it reads against is the one the main process writes to."""
    global _reader
    _reader = (make_sessionmaker(make_engine(url.render_as_string(hide_password=False))), policy)


def read_chunk(chunk: list[StoredMessage]) -> list[Arrival]:
    assert _reader is not None, "start_reader runs first in every worker"
    sessions, policy = _reader
    arrivals = [understand(stored.read(), policy, stored.ref) for stored in chunk]
    with sessions() as session:
        for arrival in arrivals:
            if arrival.verdict.classification == MessageClass.REQUEST:
                arrival.reading = read_or_none(session, arrival)
    return arrivals


def read_or_none(session: Session, arrival: Arrival) -> Reading | None:
    """The reading, or None when the reader fails: the main process then reads it again inside the
    message's transaction, where a failure quarantines the message as it would any intake failure."""
    try:
        return read(session, arrival.parsed)
    except Exception:
        logger.exception("reading ahead failed for %s; it is read again when filed", arrival.ref)
        session.rollback()
        return None
