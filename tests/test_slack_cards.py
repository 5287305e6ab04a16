"""What a card shows staff, rendered from the ticket's current state, with nothing from email able to ping or link."""

from __future__ import annotations

import email.policy
import json
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage.tickets import Ticket
from tests.slack_fake import block_text
from tests.slack_harness import STRANGER, USER, SlackRig, seed_registry, slack_rig, take

HOSTILE = "Hi <!channel> <@U123> <https://evil.example|click here> & thanks"


@pytest.fixture
def rig(sessions: sessionmaker[Session], db_url: str) -> Iterator[SlackRig]:
    seed_registry(sessions)
    with slack_rig(sessions, db_url) as rig:
        yield rig


def only_card(rig: SlackRig) -> tuple[str, dict]:
    rig.deliver()
    (card,) = rig.fake.cards()
    return block_text(card.args["blocks"]), card.args


def test_it_escapes_what_an_email_says_so_it_cannot_ping_mention_or_link(rig, mail):
    number = take(rig.sessions, mail.raw(body=f"Please remove our cancelled workshop. {HOSTILE}",
                                         sender='"<!here> Pat" <pat.jones.mt@gmail.com>', subject="<!everyone> cancel"))
    text, args = only_card(rig)
    assert "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|click here&gt; &amp; thanks" in text
    assert "&lt;!everyone&gt; cancel" in text and "&lt;!everyone&gt; cancel" in args["text"]
    payload = json.dumps(args)
    for raw in ("<!channel>", "<@U123>", "<https://evil", "<!everyone>", "<!here>"):
        assert raw not in payload

    take(rig.sessions, mail.raw(body=f"One more thing: {HOSTILE}", sender=STRANGER,
                                subject=f"Re: [PDU-{number}] cancel"))
    rig.deliver()
    (line,) = [c for c in rig.fake.posts() if c.args.get("thread_ts")]
    assert "&lt;!channel&gt; &lt;@U123&gt;" in line.args["text"] and "<!channel>" not in json.dumps(line.args)


def test_it_shows_the_change_against_the_registry_and_folds_long_text(rig, mail):
    body = ("The hours on Math Night Part 1 are wrong, it should be 4.5 hours. It already ended.\n\n"
            + "More detail. " * 300)
    take(rig.sessions, mail.raw(body=body, sender=USER, subject="Math Night hours"))
    text, args = only_card(rig)
    assert "*Requested change*\n\u2022 hours: 3.5 \u2192 4.5" in text
    assert "Math Night Part 1 (`E10001`)" in text and "Great Falls Public Schools (`H0001`)" in text
    assert "Bob Smith bsmith@gfps.k12.mt.us\non file" in text
    quoted = next(b["text"]["text"] for b in args["blocks"] if b.get("text", {}).get("text", "").startswith("*bsmith"))
    assert quoted.endswith("\u2026") and len(quoted) < 1700


def test_it_flags_a_sender_whose_mail_fails_dmarc_and_shows_the_account_change(rig, mail):
    take(rig.sessions, mail.raw(body="Please update our main phone number to (406) 555-0199.",
                                sender="Jane Doe <jdoe@gfps.k12.mt.us>", subject="Phone",
                                headers={"Authentication-Results": "mx.mt.gov; dmarc=fail header.from=gfps.k12.mt.us"}))
    text, _ = only_card(rig)
    assert "DMARC failed" in text
    assert "phone: (406) 555-0100 \u2192 +14065550199" in text
    assert "Waiting for the account contact to confirm" in text


def test_it_shows_hints_low_confidence_the_person_and_the_attachments(rig, mail):
    message = mail.message(body="Please add Kevin Miller (kmiller@gfps.k12.mt.us) as a new user for Great Falls "
                                "Public Schools. Roster attached.", sender=STRANGER, subject="New user")
    message.add_attachment(b"name,email\n", maintype="text", subtype="csv", filename="roster <1>.csv")
    number = take(rig.sessions, message.as_bytes(policy=email.policy.SMTP))
    with rig.sessions() as session:
        ticket = session.get(Ticket, Ticket.id_for_number(number))
        ticket.confidence = 0.31
        ticket.flags = [*ticket.flags, "hint: CPR / First Aid: needs careful judgement"]
        session.commit()
    text, _ = only_card(rig)
    assert "person: Kevin Miller &lt;kmiller@gfps.k12.mt.us&gt;" in text
    assert "sender not on file" in text and "not on file" in text
    assert "hint: CPR / First Aid: needs careful judgement" in text
    assert "low confidence in the reading (0.31)" in text
    assert "\u2022 roster &lt;1&gt;.csv (text/csv, 11 B)" in text


def test_it_shows_what_an_automatic_count_changed(rig, mail):
    take(rig.sessions, mail.raw(body="We issued 23 certificates for Math Night Part 1.", sender=USER, subject="Counts"))
    text, _ = only_card(rig)
    assert "*Changed*\n\u2022 certificates issued: (blank) \u2192 23" in text
    assert "approved by pdubot (automatic)" in text
