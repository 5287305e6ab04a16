"""Read a request as staff would: which kind it is, which host and event it is about, and what is missing.

Only the new text is read for the request; quoted replies, forwarded headers and signatures are context.
Each kind module declares its own cues and fields (``workflows.kinds``); this module runs them in order.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from storage.enums import TicketKind, TicketStatus
from storage.registry import Event, Host
from workflows.dates import find_dates, join_ranges
from workflows.kinds import all_specs, cue_index, spec_for
from workflows.kinds.base import QUESTIONS, Context, KindSpec
from workflows.eligibility import hints_for
from workflows.extract import labelled, organisations_in, sentences, split_sign_off, unwrap
from workflows.matching import (
    EventMatch,
    HostFacts,
    HostMatch,
    RegistryIndex,
    events_by_id,
    host_events,
    match_event,
    match_host,
    registry_index,
)
from workflows.parsing import ParsedMail

MOUNTAIN = ZoneInfo("America/Denver")
CONFIDENCE_THRESHOLD = 0.3  # below this the kind becomes "other" and staff decide
MINIMUM_SCORE = 2.0  # no kind with less evidence than this is believed at all
COVER_NOTE_CHARS = 120  # a note this short on a forward only points at what it forwards
COVER_NOTE = re.compile(
    r"\bsee (?:below|attached|the (?:note|email|message) below)\b|\bbelow\b|\bforward(?:ing|ed)\b|"
    r"\b(?:send|pass)(?:ing)? (?:this|it) along\b|\bcan you help\b",
    re.IGNORECASE,
)
SHORT_REPLY_CHARS = 200  # "Yes, the Feb one in Butte.": a reply this short is read with the question it answers
# The request's own sentences decide the event when they prefer one at all; only a tie among them (two
# workshops alike in title and date) sends the matcher to the rest of the text, events mentioned in passing.
FOCUS_LEAD = 2.0
_SUBJECT_NOISE = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|sv)\s*:\s*|\[PDU-\d+\]\s*)+", re.IGNORECASE)


@dataclass
class Reading:
    kind: TicketKind
    confidence: float
    host_id: str | None = None
    event_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    understood: str = ""  # one plain sentence for the host's acknowledgement
    next_step: str = "OPI Professional Learning staff will review your request and reply to you by email."
    sender_on_file: bool = False

    @property
    def status(self) -> TicketStatus:
        return TicketStatus.NEEDS_INFO if self.missing else TicketStatus.OPEN

    @property
    def questions(self) -> list[str]:
        """The follow-up question for each missing piece, as the acknowledgement asks them."""
        return [QUESTIONS.get(item, item) for item in self.missing]

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "confidence": round(self.confidence, 3),
            "host_id": self.host_id,
            "event_id": self.event_id,
            "fields": self.fields,
            "missing": self.missing,
            "flags": self.flags,
        }


def clean_subject(subject: str) -> str:
    return _SUBJECT_NOISE.sub("", subject).strip()


def sent_on(parsed: ParsedMail, zone: ZoneInfo = MOUNTAIN) -> dt.date:
    """The day the message was written, in Mountain Time: it decides whether an event has ended."""
    when = parsed.date or dt.datetime.now(dt.timezone.utc)
    return when.astimezone(zone).date()


def read(session: Session, parsed: ParsedMail, kind: TicketKind | None = None) -> Reading:
    """Read one request. ``kind`` is given when a follow-up fills in a ticket whose kind is already known."""
    ctx = build_context(session, parsed)
    spec, confidence = (spec_for(kind), 1.0) if kind else choose_kind(ctx)
    attach_event(ctx, spec)
    fields = spec.extract(ctx)
    missing = spec.missing(ctx, fields)
    return Reading(
        kind=spec.kind,
        confidence=confidence,
        host_id=ctx.host.host_id if ctx.host else None,
        event_id=ctx.event.event_id if ctx.event and spec.about_event else None,
        fields=fields,
        missing=missing,
        flags=flags_for(ctx, spec),
        understood=spec.describe(ctx, fields),
        next_step=spec.next_step,
        sender_on_file=ctx.host_match.sender_on_file,
    )


def build_context(session: Session, parsed: ParsedMail) -> Context:
    index = registry_index(session)
    subject = clean_subject(parsed.subject)
    day = sent_on(parsed)
    ctx = Context(
        session=session,
        parsed=parsed,
        subject=subject,
        body="",
        context_text=parsed.quoted,
        sent_on=day,
        index=index,
        host_match=HostMatch(None, "", False),
        is_reply=bool(_SUBJECT_NOISE.match(parsed.subject)),
    )
    ctx.body, ctx.sign_off = split_sign_off(unwrap(parsed.new_text), ctx.sender_name)
    ctx.note = ctx.body
    if parsed.forwarded and is_cover_note(ctx.body):
        # "See below, can you help?": the request is in what the host forwarded, so it is read too.
        ctx.body = f"{ctx.body}\n\n{unwrap(parsed.forwarded)}".strip()
    # The signature often names the organisation; it is read for the host, never for the request.
    host_text = f"{subject}\n{ctx.body}\n{ctx.sign_off}\n{parsed.signature}"
    ctx.host_match = match_host(index, parsed.from_addr, host_text)
    stated = labelled(ctx.body, "organization", "organisation", "provider name", "provider", "host name")
    if stated and ctx.host_match.how == "text" and not index.hosts_named_in(stated):
        # The writer says outright which organisation they are; a host mentioned elsewhere is not it.
        ctx.host_match = HostMatch(None, "", False)
    if ctx.host_match.how == "text" and signs_for_another_organisation(index, ctx.sign_off, ctx.host_match.host_id):
        # "At the MREA conference..." signed "Hinsdale Public Schools": the host named is not the writer's.
        ctx.host_match = HostMatch(None, "", False)
    ctx.mentions = join_ranges(find_dates(ctx.text, day), ctx.text)
    _resolve_host(ctx)
    return ctx


def _resolve_host(ctx: Context) -> None:
    """The matched host; an event id written in the text names its host when nothing else did."""
    by_id = events_by_id(ctx.session, ctx.text)
    host_id = ctx.host_match.host_id
    if by_id:
        own = [e for e in by_id if e.host_id == host_id]
        if own or host_id is None or not ctx.host_match.sender_on_file:
            ctx.event = (own or by_id)[0]
            ctx.event_how = "id"
            host_id = ctx.event.host_id
    if host_id:
        ctx.host = ctx.index.hosts.get(host_id) or _host_not_yet_indexed(ctx.session, host_id)
        ctx.host_events = host_events(ctx.session, host_id)


def signs_for_another_organisation(index: RegistryIndex, sign_off: str, host_id: str | None) -> bool:
    """The sign-off names the writer's organisation in full, and it is not the host the text named."""
    written = organisations_in(sign_off)
    return bool(written) and not any(host_id in dict(index.hosts_named_in(name)) for name in written)


def _host_not_yet_indexed(session: Session, host_id: str) -> HostFacts | None:
    """A host added since the index was built (it is rebuilt within a second), read from the database."""
    host = session.get(Host, host_id)
    return HostFacts.of(host) if host else None


def choose_kind(ctx: Context) -> tuple[KindSpec, float]:
    """The kind whose cues the new text matches best, with a confidence from the winning margin.

    A reply's subject is the old conversation's, so its cues count for half. A short reply that says too
    little borrows half the evidence of the message it answers.
    """
    cues = cue_index()
    body, subject = cues.weights(ctx.body), cues.weights(ctx.subject)
    subject_weight = 0.5 if ctx.is_reply else 1.0
    own = {spec: body.get(spec, 0) + subject_weight * subject.get(spec, 0) for spec in all_specs()}
    borrow = ctx.is_reply and len(ctx.body) < SHORT_REPLY_CHARS and bool(ctx.context_text) and max(own.values()) < 3.0
    quoted = cues.weights(ctx.context_text[:1500]) if borrow else {}
    scored = sorted(((score + 0.5 * quoted.get(spec, 0), spec) for spec, score in own.items()), key=lambda pair: -pair[0])
    (best, spec), (second, _) = scored[0], scored[1]
    confidence = confidence_from(best, second)
    if best < MINIMUM_SCORE or confidence < CONFIDENCE_THRESHOLD:
        return spec_for(TicketKind.OTHER), confidence
    return spec, confidence


def is_cover_note(note: str) -> bool:
    """"See below, can you help?": the forward's own text is only a pointer to the forwarded request."""
    return len(note) < COVER_NOTE_CHARS or bool(COVER_NOTE.search(note[:400]))


def confidence_from(best: float, second: float) -> float:
    """Strong evidence and a clear lead both raise confidence; each alone is not enough."""
    strength = min(1.0, best / 4.0)
    lead = min(1.0, (best - second) / 2.0)
    return round(strength * (0.4 + 0.6 * lead), 3)


def attach_event(ctx: Context, spec: KindSpec) -> None:
    if not spec.about_event or ctx.event is not None or not ctx.host_events:
        return
    focus = request_sentences(ctx, spec)
    awaiting = spec.kind == TicketKind.CERTIFICATE_COUNT
    if focus:
        # The sentence that makes the request names its event better than anything said in passing; when it
        # names one clearly, the whole text need not be matched at all.
        focus_mentions = join_ranges(find_dates(focus, ctx.sent_on), focus)
        in_focus = match_event(ctx.host_events, focus, focus_mentions, ctx.sent_on, spec.prefer_ended, focus, awaiting)
        if in_focus.event is not None and in_focus.lead >= FOCUS_LEAD:
            ctx.event, ctx.event_how = in_focus.event, in_focus.how
            return
    found = match_event(ctx.host_events, ctx.text, ctx.mentions, ctx.sent_on, spec.prefer_ended, focus, awaiting)
    if ctx.is_reply:
        # A reply's subject names the old conversation's event; what the host wrote now comes first.
        body_mentions = join_ranges(find_dates(ctx.body, ctx.sent_on), ctx.body)
        from_body = match_event(ctx.host_events, ctx.body, body_mentions, ctx.sent_on, spec.prefer_ended, focus, awaiting)
        found = from_body if from_body.event is not None else found
    if found.event is None and ctx.context_text:
        # "We never held this one": the event is named only in the reminder being answered. Take it from
        # the quoted text when that names one event clearly, never when it lists several alike.
        quoted = f"{ctx.subject}\n{ctx.context_text[:4000]}"
        mentions = join_ranges(find_dates(quoted, ctx.sent_on), quoted)
        found = match_event(ctx.host_events, quoted, mentions, ctx.sent_on, spec.prefer_ended, awaiting_count=awaiting)
        if found.lead < 15:
            found = EventMatch(None, 0.0, "")
    if found.event is None:
        found = only_candidate(ctx, spec)
    ctx.event, ctx.event_how = found.event, found.how


def only_candidate(ctx: Context, spec: KindSpec) -> EventMatch:
    """A single-event host, or a host with one ended event still owing a count, has only one event to mean."""
    events = ctx.host_events
    if spec.kind == TicketKind.CERTIFICATE_COUNT:
        events = [e for e in events if e.end_date <= ctx.sent_on and e.certificates_issued is None]
    return EventMatch(events[0], 60.0, "only") if len(events) == 1 else EventMatch(None, 0.0, "")


# "Please delete that event": the sentence points back at the one before it, which names the event.
# A bare "it" is left alone: its antecedent is as often two sentences back, or the subject.
POINTS_BACK = re.compile(r"\b(?:that|this|the same) (?:event|one|session|workshop|webinar|training|class|course)\b", re.IGNORECASE)


def request_sentences(ctx: Context, spec: KindSpec) -> str:
    """The sentences that carry the kind's own cues: where the request is made.

    A new message's subject counts as one of them ("Cancel Dec 8 webinar"); a reply's is the old
    conversation's. A request that points back ("delete that event") brings the sentence before it.
    """
    parts = sentences(ctx.body)
    carries = [carries_cue(spec, s) for s in parts]
    chosen = [ctx.subject] if not ctx.is_reply and carries_cue(spec, ctx.subject) else []
    for n, sentence in enumerate(parts):
        if not carries[n]:
            continue
        if n and not carries[n - 1] and POINTS_BACK.search(sentence) and parts[n - 1] not in chosen:
            chosen.append(parts[n - 1])
        chosen.append(sentence)
    return " ".join(chosen)


def carries_cue(spec: KindSpec, text: str) -> bool:
    """The text holds one of the kind's own (positive) cues."""
    return any(c.weight > 0 and c.search(text) for c in spec.cues)


def flags_for(ctx: Context, spec: KindSpec) -> list[str]:
    flags: list[str] = []
    if ctx.host is not None and not ctx.host_match.sender_on_file:
        flags.append("sender_not_on_file")
    if dmarc_failed(ctx.parsed):
        flags.append("dmarc_fail")
    if ctx.event is not None and ctx.host is not None and ctx.event.host_id != ctx.host.host_id:
        flags.append("event_of_another_host")
    if spec.kind == TicketKind.ELIGIBILITY_QUESTION:
        flags += [f"hint: {hint}" for hint in hints_for(f"{ctx.text}\n{ctx.context_text}")]
    return flags


def dmarc_failed(parsed: ParsedMail) -> bool:
    """RFC 8601 Authentication-Results: the receiving server says the From domain failed DMARC."""
    return bool(re.search(r"\bdmarc\s*=\s*fail\b", parsed.headers.get("authentication-results", ""), re.IGNORECASE))


def event_for(session: Session, event_id: str | None) -> Event | None:
    return session.get(Event, event_id) if event_id else None
