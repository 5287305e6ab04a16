"""The OPI Professional Development Unit Certificate of an event, as a one-page PDF.

Section II is filled in from the registry exactly as PDUPS fills it from the event (PDUPS manual,
"Issuing Certificates"); the participant and the host's verification are left to be written or signed.
"""

from __future__ import annotations

from storage.registry import Event
from workflows.formatting import format_date, format_pdus
from workflows.pdf import render_pdf

CERTIFICATE_MIME = "application/pdf"


def certificate_location(event: Event) -> str:
    """``City, State`` as the certificate prints it, or ``Online``."""
    if event.online:
        return "Online"
    return ", ".join(part for part in (event.city, event.state) if part)


def certificate_fields(event: Event) -> dict[str, str]:
    """Section II, in the order the certificate prints it."""
    host = event.host
    return {
        "title": event.title,
        "instructor": event.instructor,
        "begins": format_date(event.start_date),
        "ends": format_date(event.end_date),
        "host_name": host.name if host else "",
        "host_phone": (host.phone or host.contact_phone) if host else "",
        "location": certificate_location(event),
        "pdus": format_pdus(event.pdus),
    }


def certificate_filename(event: Event) -> str:
    return f"pdu-certificate-{event.event_id}.pdf"


def render_certificate(event: Event) -> bytes:
    """The certificate of ``event`` (with its host loaded) as PDF bytes."""
    return render_pdf("certificate", event_id=event.event_id, **certificate_fields(event))
