"""Ways of asking that the corpora met only once or not at all: each read as staff would read it.

The registry is the factories' one: Great Falls Public Schools, whose Math Night Part 1 (E10001, Great
Falls, 3.5 hours, taught by Ann Lee) ended twenty days ago.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import TODAY, MailFactory, add_event, seed_registry
from workflows.inbox import inspect
from workflows.kinds.people import username_base
from workflows.matching import forget_registry_index
from workflows.parsing import parse_message
from workflows.policy import MailboxPolicy

USER = "Bob Smith <bsmith@gfps.k12.mt.us>"
CONTACT = "Jane Doe <jdoe@gfps.k12.mt.us>"


@pytest.fixture
def reading(sessions: sessionmaker[Session], mail: MailFactory):
    seed_registry(sessions)

    def read(body: str, subject: str = "Math Night", html: str | None = None, sender: str = USER) -> dict[str, Any]:
        with sessions() as session:
            return inspect(session, mail.raw(body=body, subject=subject, sender=sender, html=html), MailboxPolicy())

    return read


def add_events(sessions: sessionmaker[Session], *events: tuple[str, int, int], **values: Any) -> None:
    """Events E10003, E10004... of the seeded host, each (title, first day, last day) with the days counted
    from today, so that a test can ask which of two alike events a message means."""
    with sessions() as session:
        for n, (title, start, end) in enumerate(events, 10003):
            add_event(session, f"E{n}", title=title, start_date=TODAY + dt.timedelta(days=start),
                      end_date=TODAY + dt.timedelta(days=end), **values)
        session.commit()
    forget_registry_index()


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


@pytest.mark.parametrize("body, count", [
    ("We had 23 teachers complete Math Night Part 1 last month. Can you record that for us?", 23),
    ("Twelve of our new principals finished Math Night Part 1 and received certificates.", 12),
])
def test_it_reads_counts_of_people_who_completed(reading, body: str, count: int):
    read = reading(body, subject="Math Night numbers")
    assert (read["kind"], read["fields"]) == ("certificate_count", {"count": count})


@pytest.mark.parametrize("body, subject", [
    # Thanks for a change already made, in a reply whose thread was about that change.
    ("Thank you so much for fixing the date on Math Night Part 1 so quickly. Everything looks right now.",
     "RE: Math Night date"),
    # One teacher's certificate is not a count of certificates.
    ("One of our teachers says Math Night Part 1 is not on her record. I gave her the certificate in "
     "September, so what should I tell her?", "certificate question"),
    # A forwarded question about one teacher's record, with a count already reported in passing.
    ("Can you help with this? She went to Math Night Part 1. We reported 30 certificates back in September.\n\n"
     "I'm trying to renew my license and the units from Math Night don't show up on my educator profile.",
     "Fwd: my PDUs not showing"),
    # How the system works, not a change to an event.
    ("Is there a way to upload events into PDUPS from a spreadsheet instead of entering them one at a time?",
     "Bulk upload?"),
    # A host that was made inactive asking how to come back.
    ("We stopped hosting PDU events last spring and I believe our account was made inactive. What do we need "
     "to do to get the account reactivated?", "Reactivating our account?"),
    # Thanks, in a reply, for a change already made.
    ("Thank you, that was quick! I logged in with the new email and everything looks good.", "Re: email change"),
    # The certificate's design, or a copy for a teacher who lost hers.
    ("We're redesigning our certificate template for 2027. Is it allowed to include the OPI logo?",
     "Question re: certificate branding"),
    ("A teacher who attended Math Night Part 1 in February 2026 has lost her certificate. Can I reissue her one "
     "even though our account is inactive?", "old certificate question"),
    # How certificates are signed is a question about the process.
    ("For our field courses the instructors are away for days afterward. Can the Section IV verification be a "
     "digital signature, and does it have to be the instructor who signs?", "Question about certificate signatures"),
    # Counting people under an event is not asking whether an activity counts.
    ("Our course runs as a one-year event. Does it matter which one we count them under when we report?",
     "process question"),
])
def test_it_leaves_what_asks_for_no_change_to_staff(reading, body: str, subject: str):
    assert reading(body, subject=subject)["kind"] == "other"


def test_it_reads_an_office_move_as_a_new_mailing_address(reading):
    read = reading("Hello,\n\nOur district office has moved. Please update the mailing address for Great Falls "
                   "Public Schools to:\n\n1100 4th St S\nGreat Falls, MT 59405\n\nPhone numbers are unchanged.",
                   subject="Address update")
    assert read["kind"] == "account_update"
    assert read["fields"]["changes"] == {"address": "1100 4th St S, Great Falls, MT 59405"}


def test_it_takes_someone_off_the_mailing_list_at_their_request(reading):
    read = reading("Dana Ruiz asked me to have her taken off the PLP Insider mailing list. Her email is "
                   "druiz@gfps.k12.mt.us.", subject="Remove from list")
    assert read["kind"] == "unsubscribe"
    assert read["fields"]["person"]["email"] == "druiz@gfps.k12.mt.us"


def test_it_reads_whether_time_counts_toward_renewal_units_as_an_eligibility_question(reading):
    read = reading("Our principal says teachers can count the time they spend in parent-teacher conferences toward "
                   "their renewal units if we enter it as a PDU event. Is that right?", subject="Quick question")
    assert read["kind"] == "eligibility_question"


def test_it_finds_the_event_a_cancellation_points_back_to(sessions, reading):
    webinar = "AI Tools for Lesson Planning"
    add_events(sessions, (webinar, -30, -30), (webinar, 18, 18), online=True)  # held once, and once to come
    coming = (TODAY + dt.timedelta(days=18)).strftime("%B %-d")
    held = (TODAY - dt.timedelta(days=30)).strftime("%B %-d")
    read = reading(f"Our presenter for the {coming} AI Tools for Lesson Planning webinar has had a family emergency. "
                   f"Please delete that event from PDUPS.\n\n(The {held} session did take place.)",
                   subject=f"Cancel {coming} webinar")
    assert (read["kind"], read["event_id"]) == ("event_cancel", "E10004")


CHANGES_ASKED_FOR = {
    "a move between towns": (
        "We moved Math Night Part 1 from Great Falls to our office in Belt (zip 59412) because of "
        "the road work. Can you update the location?",
        "Math Night location",
        {"location": "Belt, MT 59412"},
    ),
    "who will present instead": (
        "Two changes for Math Night Part 1: Kim Ode will present instead of Ann, and it ran 3 hours.",
        "Change to Math Night",
        {"instructor": "Kim Ode", "hours": 3},
    ),
    "a new name the host has taken": (
        "As of November 1, Great Falls Public Schools has officially changed its name to the Great Falls "
        "Unified School District. Could you update our host name?",
        "Our new name",
        {"name": "Great Falls Unified School District"},
    ),
    "an address set out as old and new": (
        "The district changed my email address. Please update my PDUPS user account:\n\n"
        "old: bsmith@gfps.k12.mt.us\nnew: Bob.Smith@gfps.k12.mt.us\n",
        "Updated email address",
        {"email": "bob.smith@gfps.k12.mt.us"},
    ),
    "the instructor line as the host quotes it": (
        'For Math Night Part 1, Kim co-presented, so please list the instructor as "Ann Lee and Kim Ode".',
        "Math Night instructor",
        {"instructor": "Ann Lee and Kim Ode"},
    ),
    "the instructor changed from one quoted name to another": (
        'For Math Night Part 1: Instructor: please change from "Ann Lee" to "Dr. Alan Reese". I was a placeholder.',
        "Correction request",
        {"instructor": "Dr. Alan Reese"},
    ),
    "a move to another building and town": (
        "Because of a boiler failure we are moving Math Night Part 1 to the Belt School gym, Belt MT 59412.",
        "Math Night location change",
        {"location": "Belt, MT 59412"},
    ),
    "a title set out as a form line under the changes asked for": (
        "Math Night Part 1 turned into a two-part family night, so two changes please:\n\n"
        "Title: Math and Science Family Night Part 1\nHours: 4\n\nThank you",
        "Math Night correction",
        {"title": "Math and Science Family Night Part 1", "hours": 4},
    ),
    "a second category it should be listed under": (
        "Math Night Part 1 should also be listed under Science in addition to Mathematics, since half of it "
        "was on measurement.",
        "Math Night correction",
        {"categories": ["Mathematics", "Science"]},
    ),
    "hours said in words, against hours said in words": (
        "For Math Night Part 1 we added a make-and-take, so it was two and a half hours instead of an hour and a half.",
        "Math Night hours",
        {"hours": 2.5},
    ),
    "hours given in minutes": (
        "PDUPS shows 3.5 hours for Math Night Part 1, but the session was only 90 minutes. Please correct the hours.",
        "Math Night hours",
        {"hours": 1.5},
    ),
    "hours as a fraction beside clock times": (
        "For Math Night Part 1, the hours should be 3 3/4, not 3.5. We ran 4:00 to 7:45 with no break.",
        "Math Night hours",
        {"hours": 3.75},
    ),
    "the instructor line the host says it should read": (
        "For Math Night Part 1, Kim Ode co-led with me, so the instructor should read Ann Lee and Kim Ode.",
        "Math Night instructor",
        {"instructor": "Ann Lee and Kim Ode"},
    ),
    "who it was presented by, not the one listed": (
        "One correction: Math Night Part 1 was presented by Dr. Pieter van der Linden from MSU, not Ann Lee. "
        "Could you update the instructor?",
        "Math Night instructor correction",
        {"instructor": "Dr. Pieter van der Linden"},
    ),
    "a town named with its zip": (
        "Before I print certificates for Math Night Part 1: PDUPS has it in Great Falls, but we were at the "
        "library in Belt the whole evening (zip 59412). Can you get that fixed?",
        "Math Night location",
        {"location": "Belt, MT 59412"},
    ),
    "the categories it should just be": (
        "Two corrections for Math Night Part 1: please remove Mathematics from the categories. It should just be "
        "Science and Technology.",
        "Math Night categories",
        {"categories": ["Science", "Technology"]},
    ),
    "the instructor line quoted after 'should read', with a note after it": (
        'Math Night Part 1 needs a correction:\n\n1. Instructor should read "Ann Lee and Kim Ode" (Kim co-facilitated '
        'the whole evening).',
        "Correction to Math Night",
        {"instructor": "Ann Lee and Kim Ode"},
    ),
    "form lines that say more than the value": (
        'Two corrections to Math Night Part 1:\n\n- Title: please change it to "Family Math Night Part 1"\n'
        "- Instructor: Kim Ode taught it, not Ann Lee (Ann only set up the room)\n\nDate and hours are correct.",
        "Math Night - 2 corrections",
        {"title": "Family Math Night Part 1", "instructor": "Kim Ode"},
    ),
    "the presenter named after 'was me'": (
        "We mixed up two presenters. On Math Night Part 1 the presenter was me, Ruth Ann Galloway, not Ann Lee.",
        "Math Night instructor fix",
        {"instructor": "Ruth Ann Galloway"},
    ),
    "a town with its zip in brackets": (
        "Math Night Part 1 was entered as Great Falls, but we ended up doing it at the library in Belt (59412). "
        "Can you fix the location?",
        "Math Night was in Belt",
        {"location": "Belt, MT 59412"},
    ),
    "someone stepping in as the instructor, and fewer hours": (
        "Two changes for Math Night Part 1:\n\n- Ann can't lead it after all. Jesse Ruiz from the Belt Library is "
        "stepping in as the instructor.\n- We're cutting it to 3 hours because of the early sunset.",
        "Math Night changes",
        {"instructor": "Jesse Ruiz", "hours": 3},
    ),
    "a rename from one quoted title to another": (
        'Please rename our "Math Night Part 1" to "Family Math Night: Fractions". Nothing else changes.',
        "Rename Math Night",
        {"title": "Family Math Night: Fractions"},
    ),
    "the title it should be titled": (
        'One fix: the Math Night Part 1 we held should be titled "Family Math Night: Fractions and Games" '
        "(the presenter asked for the full name).",
        "Math Night fix",
        {"title": "Family Math Night: Fractions and Games"},
    ),
    "a new description set out after its label": (
        "Could you update the description for our Math Night Part 1? We reworked it. New description:\n\n"
        "An evening of fraction games for families, with take-home kits aligned to the Montana math standards.\n\n"
        "Thanks!",
        "Updated description",
        {"description": "An evening of fraction games for families, with take-home kits aligned to the Montana math "
                        "standards."},
    ),
    "a move between towns with the zip after a venue": (
        "Math Night Part 1 is moving from Great Falls to Belt (Belt Library), 59412. Same date and agenda.",
        "Location change",
        {"location": "Belt, MT 59412"},
    ),
    "a numbered form line and hours beside a clock time ending in :30": (
        "Two updates for Math Night Part 1:\n\n1. New title: Family Math Night: Fractions\n2. The hours should be 3, "
        "not 3.5 - we ran 8:00 to 11:30.",
        "Math Night updates",
        {"title": "Family Math Night: Fractions", "hours": 3},
    ),
    "a description to replace the old with": (
        "For Math Night Part 1 please replace the description with: An evening of fraction games for families, with "
        "take-home kits.\n\nThanks",
        "Math Night description",
        {"description": "An evening of fraction games for families, with take-home kits."},
    ),
    "the instructor who led it in the listed one's place, with a title": (
        "Math Night Part 1 was entered with Ann Lee as the instructor, but Ann was ill that day and Dr. Alana "
        "Whitcomb led the workshop in her place. Could you please update the event?",
        "Correction needed",
        {"instructor": "Dr. Alana Whitcomb"},
    ),
    "a move to a town with the venue and zip in brackets": (
        "Two changes for Math Night Part 1:\n\n1) It's moving to Belt (Belt High School, zip 59412) because our gym "
        "floor is being redone.\n2) It will be 3 hours instead of 3.5.",
        "Math Night changes",
        {"location": "Belt, MT 59412", "hours": 3},
    ),
    "a title the host wants it to read": (
        'We\'d like to drop "Part 1" from the title of Math Night Part 1 so it reads just "Math Night".',
        "Update to listing",
        {"title": "Math Night"},
    ),
    "a title that should now read": (
        'Two corrections on Math Night Part 1:\n\n1) We added a module, so the title should now read "Math and '
        'Science Night Part 1".\n2) With the new module it is 4 hours, not 3.5.',
        "Math Night - title and hours",
        {"title": "Math and Science Night Part 1", "hours": 4},
    ),
    "a misspelt instructor name": (
        "On Math Night Part 1 the instructor's name is spelled wrong -- it says Lee, should be Leigh. Several "
        "teachers noticed it on their certificates.",
        "Re: Math Night certificates",
        {"instructor": "Ann Leigh"},
    ),
    "a description to replace with the following": (
        "The description of Math Night Part 1 is only one line. Could you replace the description with the "
        "following?\n\nAn evening of fraction games for families, with take-home kits.\n\nEverything else is correct.",
        "Description update",
        {"description": "An evening of fraction games for families, with take-home kits."},
    ),
}
# The writer is the instructor now: "put me as the instructor".
CHANGES_ASKED_FOR_BY_THE_USER = {
    "I'll be the instructor": (
        "Two updates for Math Night Part 1: I'll be the instructor - Ann has a conflict that day.",
        "Math Night updates",
        {"instructor": "Bob Smith"},
    ),
    "the writer as the instructor": (
        "For Math Night Part 1, can you put me as the instructor instead of Ann? Ann was going to teach it but "
        "I ended up doing it.",
        "Fix for Math Night",
        {"instructor": "Bob Smith"},
    ),
}


@pytest.mark.parametrize("body, subject, changes", {**CHANGES_ASKED_FOR, **CHANGES_ASKED_FOR_BY_THE_USER}.values(),
                         ids=[*CHANGES_ASKED_FOR, *CHANGES_ASKED_FOR_BY_THE_USER])
def test_it_reads_the_change_asked_for(reading, body: str, subject: str, changes: dict[str, object]):
    assert reading(body, subject=subject)["fields"]["changes"] == changes


def test_it_counts_those_who_earned_certificates_not_those_who_registered(reading):
    read = reading("For Math Night Part 1: 52 people registered and 41 attended the full hour and received certificates.")
    assert read["fields"] == {"count": 41}


# The Winter Literacy Institute runs from 40 to 41 days from now; each text moves its end to a later day.
@pytest.mark.parametrize("template", [
    "Please change the end date of the Winter Literacy Institute: it now ends {later:%B %-d, %Y} rather than "
    "{listed:%B %-d}.",
    "The Winter Literacy Institute needs to be corrected: it starts {start:%B %-d} as it shows, but it runs three "
    "days, through {later:%A, %B %-d}, not two.",
], ids=["rather than", "through"])
def test_it_reads_a_new_end_date(reading, template: str):
    start, listed, later = (TODAY + dt.timedelta(days=n) for n in (40, 41, 42))
    read = reading(template.format(start=start, listed=listed, later=later), subject="Winter Literacy Institute correction")
    assert read["fields"]["changes"] == {"end_date": later.isoformat()}


def test_it_reads_an_event_being_moved_to_another_day(reading):
    held = TODAY - dt.timedelta(days=20)
    moved = held + dt.timedelta(days=7)
    read = reading(f"The weather was bad, so we are moving Math Night Part 1 back one week, to {moved:%A, %B %-d}. "
                   "Same place, same hours. Would you please change the date in the system?",
                   subject="Math Night moving a week")
    assert read["fields"]["changes"] == {"start_date": moved.isoformat(), "end_date": moved.isoformat()}


def test_it_takes_the_number_given_as_new_not_the_one_disconnected(reading):
    read = reading(subject="Update my phone number", sender=CONTACT,
                   body="Please update the phone number on our account for me as the contact. My old number "
                        "(406) 555-0142 was my desk line and it has been disconnected. Please use my cell: (406) 555-0168.")
    assert read["fields"]["changes"] == {"contact_phone": "+14065550168"}


def test_it_reads_the_contacts_new_address_from_an_address_not_on_file(reading):
    read = reading(subject="My new email", sender="Jane Doe <jane.doe.writes@gmail.com>",
                   body="Hello, it's Jane from Great Falls Public Schools. The district is shutting down my old email "
                        "(jdoe@gfps.k12.mt.us) at the end of the year, so I set up a Gmail: jane.doe.writes@gmail.com. "
                        "Would you please change it on my account?")
    assert read["fields"]["changes"] == {"contact_email": "jane.doe.writes@gmail.com"}
    assert "sender_not_on_file" in read["flags"]  # the contact of record still confirms the change


def test_it_reads_a_new_name_set_out_below_the_request(reading):
    read = reading("Our board voted to change the district's name. Please update our host name in PDUPS from "
                   "Great Falls Public Schools to:\n\nGreat Falls Unified School District\n\nEverything else stays the same.",
                   subject="Name change")
    assert read["fields"]["changes"] == {"name": "Great Falls Unified School District"}


def test_it_removes_the_forwarded_writer_who_asked_for_their_own_login_to_go(reading):
    body = ("see below. Can you take care of this? Thanks - Jane\n\n---------- Forwarded message ---------\n"
            "From: Bob Smith <bsmith@gfps.k12.mt.us>\nDate: Mon, Nov 16, 2026 at 4:12 PM\nSubject: leaving\n"
            "To: Jane Doe <jdoe@gfps.k12.mt.us>\n\nJane,\n\nMy last day is Friday. Could you have OPI shut off my "
            "PDUPS login so there's no confusion?\n\nThanks,\nBob\n")
    read = reading(body, subject="Fwd: leaving", sender=CONTACT)
    assert read["kind"] == "user_remove"
    assert read["fields"]["person"] == {"name": "Bob Smith", "email": "bsmith@gfps.k12.mt.us", "phone": None}


def test_a_host_named_in_passing_is_not_the_writers_own(reading):
    read = reading(subject="mailing list", sender="Kay Brost <kbrost@hinsdale.k12.mt.us>",
                   body="At the Great Falls Public Schools conference someone from OPI mentioned an email list for "
                        "updates about the new PDU system. I'd like to be on it.\n\nKay Brost\n"
                        "Teacher-Librarian, Hinsdale Public Schools\n")
    assert (read["kind"], read["host_id"]) == ("subscribe", None)
    assert read["fields"]["person"]["organization"] == "Hinsdale Public Schools"


def test_the_request_names_its_event_better_than_an_event_mentioned_in_passing(sessions, reading):
    add_events(sessions, ("Structured Literacy K-3: Fall Cohort", -80, -10),
               ("Structured Literacy K-3: Spring Cohort", 50, 120))
    read = reading("We need to delete the Structured Literacy spring class (January to March). Our trainer took a job "
                   "out of state and we won't be running it this year. The fall cohort is done and Ann will send you "
                   "those numbers.", subject="spring literacy class")
    assert (read["kind"], read["event_id"]) == ("event_cancel", "E10004")


def test_a_subject_saying_the_event_goes_online_names_which_one(sessions, reading):
    add_events(sessions, ("Youth Mental Health First Aid", -30, -30), ("Youth Mental Health First Aid", 25, 25))
    coming, held = TODAY + dt.timedelta(days=25), TODAY - dt.timedelta(days=30)
    read = reading(f"Our {coming:%B %-d} Youth Mental Health First Aid class is switching to a virtual format on Zoom. "
                   f"Please change the location to Online.\n\nI still owe you the count for the {held:%B %-d} class.",
                   subject=f"YMHFA {coming:%B} class going virtual")
    assert (read["event_id"], read["fields"]["changes"]) == ("E10004", {"location": "Online"})


@pytest.mark.parametrize("body, subject, kind", [
    ("It keeps saying my username doesn't exist. I tried BSmith and OPI\\BSmith.", "Can't log in", "login_help"),
    ("Our Math Night Part 1 is moving.\n\nNew date: 12/16 (same time)\nNew location: Belt School, Belt, MT 59412\n",
     "Math Night changes", "event_edit"),
    ("We have decided to run the Winter Literacy Institute online. It's also moving from March 9 to March 16.",
     "Winter institute", "event_edit"),
    ("Our district moved to a new email system. Please change my PDUPS email to bob.smith@gfps.org.",
     "email change", "account_update"),
    ("Please remove Dana Ruiz (druiz@gfps.k12.mt.us) from our PDUPS account. She resigned November 25.\n\n"
     "Thanks - and thanks for the help with the password, I'm in now.", "Remove Dana Ruiz", "user_remove"),
])
def test_it_reads_the_kind_of_request_however_it_is_set_out(reading, body: str, subject: str, kind: str):
    assert reading(body, subject=subject)["kind"] == kind


def test_it_reads_a_count_given_after_a_long_name_and_a_colon(reading):
    read = reading("Certificate count for the GFPS Fall In-Service session Math Night Part 1 (last month): 36.\n\n"
                   "The Literacy Night count (48) was already entered.", subject="Math Night count")
    assert (read["kind"], read["fields"]) == ("certificate_count", {"count": 36})


def test_it_reads_this_events_row_of_a_table_of_counts(reading):
    table = ("<p>Here is where we stand:</p><table><tr><th>Event</th><th>Date</th><th>Certificates issued</th>"
             "<th>Notes</th></tr><tr><td>Literacy Night</td><td>8/20/2026</td><td>38</td><td>already entered</td></tr>"
             "<tr><td>Math Night Part 1</td><td>last month</td><td>22</td><td>please record</td></tr></table>")
    read = reading("", subject="Certificate numbers", html=table)
    assert (read["kind"], read["event_id"], read["fields"]) == ("certificate_count", "E10001", {"count": 22})


def test_a_day_given_without_its_month_is_in_the_events_month(reading):
    held = TODAY - dt.timedelta(days=20)
    day = 14 if held.day != 14 else 13
    read = reading(f"Sorry, I should have been clearer. Math Night Part 1 was held on Wednesday the {day}th, "
                   f"not the {held.day}th.", subject="RE: Event correction request")
    moved = held.replace(day=day).isoformat()
    assert read["fields"]["changes"] == {"start_date": moved, "end_date": moved}


@pytest.mark.parametrize("name, username", [
    ("John Doe", "JDoe"), ("Rachel Two Bulls", "RTwoBulls"), ("Mary Beth Van Wyk", "MVanWyk"),
    ("Tomás de la Cruz", "TDeLaCruz"), ("Seán O'Brien", "SOBrien"), ("Mary Beth Kranz", "MKranz"),
    ("Ruth Ann Galloway", "RGalloway"),
])
def test_a_username_is_the_first_initial_and_the_family_name(name: str, username: str):
    assert username_base(name) == username


def test_it_reads_a_range_given_against_the_range_on_file(reading):
    listed_start, listed_end = TODAY + dt.timedelta(days=40), TODAY + dt.timedelta(days=41)
    start, end = TODAY + dt.timedelta(days=41), TODAY + dt.timedelta(days=42)
    read = reading(f"Found a mistake: the Winter Literacy Institute is {start:%b %-d} to {end:%b %-d}, not "
                   f"{listed_start:%b %-d} to {listed_end:%b %-d} like it says in the system. Can you fix the dates?",
                   subject="dates wrong on the institute")
    assert read["fields"]["changes"] == {"start_date": start.isoformat(), "end_date": end.isoformat()}


TRENT = ("Trent McCaffery", "tmccaffery@gfps.k12.mt.us")


@pytest.mark.parametrize("body, subject, manager", [
    ("I am retiring in December, so I'd like to hand the PDUPS account over to Trent McCaffery. Please make him our "
     "account manager:\n\nTrent McCaffery\ntmccaffery@gfps.k12.mt.us\n(406) 555-0162\n\nThank you!", "New account manager",
     TRENT),
    ("Today is my last day. Going forward, please list Trent McCaffery as the account manager for our PDUPS host "
     "account:\n\nTrent McCaffery\nDirector of Programs\ntmccaffery@gfps.k12.mt.us\n(406) 555-0162\n\n"
     "Our main number is unchanged.", "Change of account manager", TRENT),
    ("I'm retiring. Starting now, please make Trent McCaffery the account manager for Great Falls Public Schools.\n\n"
     "His information:\nTrent McCaffery\ntmccaffery@gfps.k12.mt.us\n(406) 555-0162 (new direct line)", "New account contact",
     TRENT),
    ("I am retiring. Starting now, please make Trent McCaffery, our new curriculum director, the account manager for "
     "Great Falls Public Schools in PDUPS.\n\nTrent McCaffery\ntmccaffery@gfps.k12.mt.us\n(406) 555-0162", "Account manager",
     TRENT),
    ("I'm retiring on December 18, so please make Åsa Lindgren the account manager for our PDUPS account from now on. "
     "Her contact information:\n\nÅsa Lindgren\nalindgren@gfps.k12.mt.us\n(406) 555-0162", "Account manager change",
     ("Åsa Lindgren", "alindgren@gfps.k12.mt.us")),
], ids=["make him our account manager", "list him as the account manager", "make a full name the account manager",
        "a name with an apposition", "a name that begins with a letter outside ASCII"])
def test_it_reads_the_new_account_manager_set_out_below_the_request(reading, body: str, subject: str,
                                                                     manager: tuple[str, str]):
    read = reading(body, subject=subject, sender=CONTACT)
    name, email = manager
    assert read["fields"]["changes"] == {"contact_name": name, "contact_email": email, "contact_phone": "+14065550162"}


def test_an_additional_user_in_the_subject_is_a_user_to_add(reading):
    read = reading("Our new conference chair needs her login so she can set up sessions:\n\nDana Ruiz\n"
                   "druiz@gfps.k12.mt.us\n406-555-0199\n\nShe'll mainly be entering sessions and recording "
                   "certificate counts.", subject="Additional PDUPS user for GFPS", sender=CONTACT)
    assert (read["kind"], read["fields"]["person"]["name"], read["fields"]["username"]) == ("user_add", "Dana Ruiz", "DRuiz")


def test_it_takes_the_full_name_of_a_user_to_remove_from_the_subject(reading):
    read = reading("As Bob mentioned, his last day with us was November 30. Please deactivate his PDUPS login "
                   "(bsmith@gfps.k12.mt.us).", subject="Deactivate Bob Smith", sender=CONTACT)
    assert read["fields"]["person"] == {"name": "Bob Smith", "email": "bsmith@gfps.k12.mt.us", "phone": None}


def test_it_reads_a_name_the_host_will_now_be_known_by(reading):
    read = reading("At its November meeting the board approved a change to our organization's name. Great Falls Public "
                   "Schools will now be known as Great Falls Unified Schools, since we now serve more towns.\n\n"
                   "Please update our host name in PDUPS.", subject="Host name change", sender=CONTACT)
    assert read["fields"]["changes"] == {"name": "Great Falls Unified Schools"}


def test_it_reads_the_contact_phone_the_host_names_as_such(reading):
    read = reading("My direct line has changed. Please update the contact phone on our account to (406) 555-0538. "
                   "The main line, (406) 555-0100, has not changed.", subject="Updated contact phone", sender=USER)
    assert read["fields"]["changes"] == {"contact_phone": "+14065550538"}


def test_it_reads_a_count_spelled_out_and_then_given_in_digits(reading):
    read = reading("Attached is our reporting form for Math Night Part 1. We issued thirty-one (31) certificates.",
                   subject="Certificate reporting form")
    assert (read["kind"], read["fields"]) == ("certificate_count", {"count": 31})


def test_it_reads_a_name_changed_from_one_to_another(reading):
    read = reading("At our board meeting the membership voted to change our organization's name from Great Falls Public "
                   "Schools to Great Falls Unified Schools. Please update the host name.", subject="name change",
                   sender=CONTACT)
    assert read["fields"]["changes"] == {"name": "Great Falls Unified Schools"}


def test_it_reads_a_mailing_address_set_out_below_any_colon(reading):
    read = reading("Great Falls Public Schools has a new mailing address effective immediately:\n\n96 Clinic Road\n"
                   "Belt, MT 59412\n\nWe no longer use the PO Box. Please update our account.",
                   subject="New mailing address", sender=CONTACT)
    assert read["fields"]["changes"] == {"address": "96 Clinic Road, Belt, MT 59412"}


def test_it_takes_the_address_being_retired_as_the_old_one(reading):
    read = reading("I'm the contact for Great Falls Public Schools. We are retiring the jdoe@gfps.k12.mt.us address, so "
                   "please use jane.doe@rangeweb.net for me from now on.", subject="new email", sender=CONTACT)
    assert read["fields"]["changes"] == {"contact_email": "jane.doe@rangeweb.net"}


def test_a_name_in_a_sign_off_ends_at_the_line(reading):
    read = reading("I'm getting the newsletter twice. Please unsubscribe my personal one, rachel.koch.mt@gmail.com, "
                   "and keep the work one.\n\nThanks!\nRachel Koch\nEastern Montana Education Cooperative",
                   subject="Unsubscribe from PLP Insider", sender="Rachel Koch <rkoch@emec-mt.org>")
    assert read["fields"]["person"]["name"] == "Rachel Koch"


def test_a_forwarded_note_asking_to_remove_users_is_a_removal(reading):
    body = ("Please remove Bob Smith (bsmith@gfps.k12.mt.us) from our PDUPS users. Thanks!\n\n"
            "---------- Forwarded message ---------\nFrom: Bob Smith <bsmith@gfps.k12.mt.us>\nSubject: stepping down\n\n"
            "I'm stepping down at the end of the month and won't be entering events anymore. I already sent in the "
            "Math Night cancellation.\n")
    assert reading(body, subject="Fwd: stepping down", sender=CONTACT)["kind"] == "user_remove"
