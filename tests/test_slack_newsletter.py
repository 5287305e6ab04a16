"""Staff write a PLP Insider edition in Slack: in the ``/pdu newsletter`` modal, or as a Markdown file or message
for the bot."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker, undefer

from bot.slack import modals
from bot.slack.editions import MESSAGE_HELP, Draft, read_markdown_file, read_message
from storage.base import utcnow
from storage.enums import Channel, MailingKind, MailingStatus
from storage.mailouts import Mailing
from storage.outbox import OutboxItem
from storage.tickets import AuditEntry
from tests.servers import wait_until
from tests.slack_fake import action_ids, block_text, file_message
from tests.slack_harness import ANN, BEA, EVE, SlackRig, slack_rig
from workflows.newsletter import APPROVE_ACTION, approve_edition, prepare_edition

SUBJECT = "PLP Insider, December 2026"
BODY = "## Winter planning\n\nProfessional learning works best when it is **sustained**."
EDITION = {"key": "2026-12", "subject": SUBJECT, "markdown": BODY}


@pytest.fixture
def rig(sessions: sessionmaker[Session], db_url: str) -> Iterator[SlackRig]:
    with slack_rig(sessions, db_url) as rig:
        yield rig


def mailing(rig: SlackRig, key: str = "2026-12") -> Mailing | None:
    query = sa.select(Mailing).where(Mailing.kind == MailingKind.INSIDER, Mailing.key == key).options(
        undefer(Mailing.source), undefer(Mailing.html_body))
    with rig.sessions() as session:
        return session.scalar(query)


def mailing_count(rig: SlackRig) -> int:
    with rig.sessions() as session:
        return int(session.scalar(sa.select(sa.func.count(Mailing.id))) or 0)


def previews(rig: SlackRig) -> list[OutboxItem]:
    with rig.sessions() as session:
        rows = session.scalars(sa.select(OutboxItem).where(OutboxItem.channel == Channel.SLACK).order_by(OutboxItem.id))
        return [row for row in rows if action_ids(row.payload["blocks"]) == [APPROVE_ACTION]]


def opened_views(rig: SlackRig) -> list[dict]:
    views = [c.args["view"] for c in rig.fake.calls_to("views.open")]
    return [v for v in views if v["callback_id"] == modals.NEW_EDITION]


def replies_in(rig: SlackRig, channel: str, count: int = 1) -> list[str]:
    assert wait_until(lambda: len([c for c in rig.fake.posts() if c.args["channel"] == channel]) >= count)
    return [c.args["text"] for c in rig.fake.posts() if c.args["channel"] == channel]


def send_file(rig: SlackRig, name: str, data: bytes, user_id: str) -> str:
    """Share a file with the bot in ``user_id``'s direct message; the DM's channel ID."""
    channel = f"D{user_id[1:]}"
    assert rig.event(file_message([rig.fake.share(name, data, user_id)], user_id, channel)) == 200
    return channel


def test_it_opens_the_edition_modal_for_staff(rig):
    assert rig.command("newsletter 2026-12", BEA) == 200
    assert wait_until(lambda: bool(opened_views(rig)))
    (view,) = opened_views(rig)
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert list(blocks) == ["key", "subject", "markdown"]
    assert blocks["key"]["element"]["initial_value"] == "2026-12"
    assert blocks["markdown"]["element"]["multiline"] is True
    assert "at most 3,000 characters" in blocks["markdown"]["hint"]["text"]


def test_it_refuses_the_edition_modal_to_someone_not_staff(rig):
    rig.command("newsletter", EVE, key="e")
    assert wait_until(lambda: bool(rig.fake.calls_to("response_url")))
    (answer,) = [c.args for c in rig.fake.calls_to("response_url")]
    assert "Only OPI Professional Learning staff" in answer["text"]
    assert opened_views(rig) == []

    rig.submit(modals.NEW_EDITION, EDITION, {}, user_id=EVE)  # a modal they could not have opened
    assert wait_until(lambda: bool(rig.fake.ephemerals()))
    assert rig.fake.ephemerals()[0].args["user"] == EVE and mailing_count(rig) == 0


def test_it_prepares_a_draft_from_the_modal_and_queues_its_preview_once(rig):
    status, body = rig.submit(modals.NEW_EDITION, EDITION, {})
    assert status == 200 and "errors" not in body  # the modal closes

    assert wait_until(lambda: bool(previews(rig)))
    edition = mailing(rig)
    assert (edition.status, edition.subject, edition.source) == (MailingStatus.DRAFT, SUBJECT, BODY)
    assert "<strong>sustained</strong>" in edition.html_body and edition.document_id is not None
    (preview,) = previews(rig)
    assert preview.kind == "slack_notice" and preview.payload["files"][0]["document_id"] == edition.document_id
    assert preview.payload["blocks"][-1]["elements"][0]["value"] == "2026-12"
    assert wait_until(lambda: any("Edition 2026-12 is prepared" in c.args["text"] for c in rig.fake.ephemerals()))

    rig.submit(modals.NEW_EDITION, EDITION, {})  # submitted twice: still one preview
    assert wait_until(lambda: len(rig.fake.ephemerals()) == 2)
    assert "already has this subject and text" in rig.fake.ephemerals()[-1].args["text"]
    assert len(previews(rig)) == 1
    rig.deliver_all()
    assert SUBJECT in block_text(rig.fake.posts()[0].args["blocks"])


def test_it_shows_what_is_wrong_beside_the_input_and_prepares_nothing(rig):
    status, body = rig.submit(modals.NEW_EDITION, {**EDITION, "key": "December 2026"}, {})
    answer = json.loads(body)
    assert status == 200 and answer["response_action"] == "errors"
    assert list(answer["errors"]) == ["key"] and "for example 2026-12" in answer["errors"]["key"]
    assert mailing_count(rig) == 0

    with rig.sessions() as session:
        prepare_edition(session, BODY, "2026-12", SUBJECT)
        approve_edition(session, "2026-12", "slack:U0ANN0001 (Ann)", utcnow())
        session.commit()
    _, body = rig.submit(modals.NEW_EDITION, {**EDITION, "markdown": BODY + "\n\nA late change."}, {})
    assert json.loads(body)["errors"] == {"key": "Edition 2026-12 is already scheduled; use a new edition key."}
    assert mailing(rig).source == BODY


def test_it_prepares_an_edition_from_a_markdown_file_staff_send_the_bot(rig):
    channel = send_file(rig, "2026-12.md", f"# {SUBJECT}\n\n{BODY}\n".encode(), ANN)

    (reply,) = replies_in(rig, channel)
    assert reply.startswith("Edition 2026-12 is prepared: \u201cPLP Insider, December 2026\u201d.")
    edition = mailing(rig)
    assert (edition.status, edition.subject, edition.source) == (MailingStatus.DRAFT, SUBJECT, BODY)
    assert len(previews(rig)) == 1
    (download,) = rig.fake.calls_to("download")
    assert download.args["authorized"] is True  # fetched from url_private with the bot token


def test_it_reads_the_key_and_subject_from_lines_at_the_top_of_a_file():
    text = "\ufeffKey: 2026-12\nSubject: PLP Insider, December 2026\n\n# Winter planning\n\nText.\n"
    assert read_markdown_file("draft (2).md", text) == Draft("2026-12", SUBJECT, "# Winter planning\n\nText.")
    assert read_markdown_file("2026-12.markdown", "Text only.") == Draft("2026-12", "", "Text only.")


def test_it_refuses_a_file_from_someone_not_staff_and_prepares_nothing(rig):
    channel = send_file(rig, "2026-12.md", f"# {SUBJECT}\n\n{BODY}\n".encode(), EVE)
    (reply,) = replies_in(rig, channel)
    assert "Only OPI Professional Learning staff can send me PLP Insider editions" in reply
    time.sleep(0.2)  # nothing else follows the refusal
    assert rig.fake.calls_to("files.info") == [] and rig.fake.calls_to("download") == []
    assert mailing_count(rig) == 0 and previews(rig) == []


def test_it_refuses_a_file_over_200_kb(rig):
    big = f"# {SUBJECT}\n\n".encode() + b"x" * 200 * 1024
    channel = send_file(rig, "2026-12.md", big, ANN)
    (reply,) = replies_in(rig, channel)
    assert reply == "I could not take 2026-12.md: The file is larger than 200 KB, so it is not an edition I can take."
    assert rig.fake.calls_to("download") == []

    understated = rig.fake.share("2026-12.md", big, ANN)
    rig.fake.shared[understated["id"]][0]["size"] = 100  # the download itself stops at the limit too
    rig.event(file_message([understated], ANN, channel), event_id="Ev2")
    assert "larger than 200 KB" in replies_in(rig, channel, 2)[-1]
    assert mailing_count(rig) == 0


def dm_message(text: str, user_id: str) -> dict:
    """The message event of text someone writes to the bot in their direct message with it."""
    return {"type": "message", "channel": f"D{user_id[1:]}", "channel_type": "im", "user": user_id, "text": text,
            "ts": f"{time.time():.6f}", "event_ts": f"{time.time():.6f}"}


def send_text(rig: SlackRig, text: str, user_id: str, event_id: str = "Ev0001") -> str:
    """Write ``text`` to the bot in ``user_id``'s direct message; the DM's channel ID."""
    event = dm_message(text, user_id)
    assert rig.event(event, event_id=event_id) == 200
    return event["channel"]


def edition_actors(rig: SlackRig) -> list[str]:
    with rig.sessions() as session:
        return list(session.scalars(sa.select(AuditEntry.actor).where(AuditEntry.action == "edition_prepared")))


# What Slack sends for Markdown pasted into a message: its own escapes, links in angle brackets, bullets.
PASTED = ("Key: 2026-12\n# PLP Insider, December 2026\n\n## Winter planning\n\nProfessional learning works best "
          "when it is **sustained** &amp; shared.\n\n\u2022 Plan a series\n\u2022 Ask teachers\n\n"
          "Read more on <https://opi.mt.gov/|the OPI site> or write to <mailto:OPIPDUPS@mt.gov|OPIPDUPS@mt.gov>.")


def test_it_prepares_an_edition_from_markdown_staff_write_to_the_bot(rig):
    channel = send_text(rig, PASTED, BEA)

    (reply,) = replies_in(rig, channel)
    assert reply.startswith("Edition 2026-12 is prepared: \u201cPLP Insider, December 2026\u201d.")
    edition = mailing(rig)
    assert (edition.status, edition.subject) == (MailingStatus.DRAFT, SUBJECT)
    assert edition.source.startswith("## Winter planning\n\nProfessional learning works best when it is "
                                     "**sustained** & shared.\n\n- Plan a series\n- Ask teachers")
    assert "<li>Plan a series</li>" in edition.html_body and "sustained</strong> &amp; shared" in edition.html_body
    assert '<a href="https://opi.mt.gov/">the OPI site</a>' in edition.html_body
    assert edition.document_id is not None and len(previews(rig)) == 1
    assert edition_actors(rig) == [f"slack:{BEA} (Bea)"]
    rig.deliver_all()
    assert "prepared by slack:U0BEA0002 (Bea)" in block_text(rig.fake.posts()[-1].args["blocks"])

    send_text(rig, PASTED, BEA, event_id="Ev0002")  # sent again: nothing changes
    assert "already has this subject and text" in replies_in(rig, channel, 2)[-1]
    assert len(previews(rig)) == 1 and mailing_count(rig) == 1


def test_it_refuses_a_message_from_someone_not_staff_and_prepares_nothing(rig):
    channel = send_text(rig, PASTED, EVE)
    (reply,) = replies_in(rig, channel)
    assert reply.startswith("Thank you for your message. I only take PLP Insider editions from OPI Professional "
                            "Learning staff") and "OPIPDUPS@mt.gov" in reply
    time.sleep(0.2)  # nothing else follows the refusal
    assert mailing_count(rig) == 0 and previews(rig) == [] and edition_actors(rig) == []


def test_it_tells_staff_how_to_write_an_edition_when_a_message_is_not_one(rig):
    channel = send_text(rig, "Hi! Can you send the December edition for me?", ANN)
    (reply,) = replies_in(rig, channel)
    assert reply == MESSAGE_HELP

    send_text(rig, "# PLP Insider, December 2026\n\nNo key yet.", ANN, event_id="Ev0002")
    no_key = replies_in(rig, channel, 2)[-1]
    assert no_key.startswith("I could not prepare an edition from your message: The edition needs a key")
    assert mailing_count(rig) == 0 and previews(rig) == []


def test_it_reads_a_message_as_an_edition_only_when_it_starts_like_one():
    assert read_message("Thanks for the help yesterday.\n# Not a subject") is None
    assert read_message("#general is busy today") is None  # a channel name, not a heading
    assert read_message("\n\n# PLP Insider, December 2026\n\nText.") == Draft("", SUBJECT, "Text.")
    assert read_message("Subject: PLP Insider, December 2026\nKey: 2026-12\n\nText &lt;b&gt;") == Draft(
        "2026-12", SUBJECT, "Text <b>")
