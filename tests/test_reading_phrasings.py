"""Ways of asking that the corpora met only once or not at all: each read as staff would read it.

The registry is the factories' one: Great Falls Public Schools, whose Math Night Part 1 (E10001, Great
Falls, 3.5 hours, taught by Ann Lee) ended twenty days ago.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import MailFactory, seed_registry
from workflows.inbox import inspect
from workflows.parsing import parse_message
from workflows.policy import MailboxPolicy

USER = "Bob Smith <bsmith@gfps.k12.mt.us>"


@pytest.fixture
def reading(sessions: sessionmaker[Session], mail: MailFactory):
    seed_registry(sessions)

    def read(body: str, subject: str = "Math Night", html: str | None = None) -> dict[str, Any]:
        with sessions() as session:
            return inspect(session, mail.raw(body=body, subject=subject, sender=USER, html=html), MailboxPolicy())

    return read


def test_a_hyphen_list_is_new_text_not_a_signature(mail: MailFactory):
    parsed = parse_message(mail.raw(body="Changes for Math Night Part 1:\n\n- hours: 3 (not 3.5)\n- instructor: Kim Ode\n\n"
                                         "Thanks,\nBob Smith\n(406) 555-0118"))
    assert "- instructor: Kim Ode" in parsed.new_text
    assert "(406) 555-0118" in parsed.signature


@pytest.mark.parametrize("body, count", [
    ("For Math Night Part 1 we had 87 Montana educators request the OPI certificate.", 87),
    ("At Math Night Part 1 we had 22 people complete both sessions and get certificates.", 22),
    ("We did hold Math Night Part 1, but not a single Montana educator asked for the certificate, so we "
     "issued none. How should I record that?", 0),
])
def test_it_reads_a_count_however_the_certificates_were_taken_up(reading, body: str, count: int):
    read = reading(body)
    assert (read["kind"], read["event_id"], read["fields"]) == ("certificate_count", "E10001", {"count": count})


def test_it_reads_whether_a_session_could_be_offered_for_pdus_as_an_eligibility_question(reading):
    read = reading("Our staff do mandatory reporting training every year. This year it is a 2-hour session "
                   "instead of the usual video. Could that session be offered for PDUs? I know some trainings "
                   "don't count.", subject="Mandatory reporter training for PDUs?")
    assert read["kind"] == "eligibility_question"


def test_it_reads_a_bulleted_list_of_changes(reading):
    read = reading("Please fix our Math Night Part 1:\n\n- hours: 3 (not 3.5)\n- instructor: Kim Ode\n\nBob",
                   subject="Math Night correction")
    assert read["kind"] == "event_edit"
    assert read["fields"]["changes"] == {"hours": 3, "instructor": "Kim Ode"}


def test_it_reads_a_table_of_changes_by_its_headings(reading):
    # The first row is long enough to look like a wrapped line; it must not swallow the row after it.
    new_title = "Family Math Night Part 1: Fractions, Decimals and Games to Play at Home"
    table = ("<p>A correction to a past event:</p><table><tr><th>Event</th><th>Field</th><th>Currently</th>"
             "<th>Should be</th></tr><tr><td rowspan='2'>Math Night Part 1 (held last month at Longfellow "
             "Elementary)</td><td>Hours</td><td>3.5</td><td>3</td></tr><tr><td>Title</td><td>Math Night Part 1"
             f"</td><td>{new_title}</td></tr></table>")
    read = reading("", subject="Math Night correction", html=table)
    assert read["kind"] == "event_edit"
    assert read["fields"]["changes"] == {"hours": 3, "title": new_title}


def test_it_reads_a_move_between_towns(reading):
    read = reading("We moved Math Night Part 1 from Great Falls to our office in Belt (zip 59412) because of "
                   "the road work. Can you update the location?", subject="Math Night location")
    assert read["fields"]["changes"] == {"location": "Belt, MT 59412"}


def test_it_reads_who_will_present_instead(reading):
    read = reading("Two changes for Math Night Part 1: Kim Ode will present instead of Ann, and it ran 3 hours.",
                   subject="Change to Math Night")
    assert read["fields"]["changes"] == {"instructor": "Kim Ode", "hours": 3}
