"""Pull values out of a host's words: counts written as digits or words, phones, addresses, names, sentences."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import phonenumbers
from email_validator import EmailNotValidError, validate_email

NUMBER_WORDS = {
    "zero": 0, "none": 0, "no": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "dozen": 12, "a dozen": 12,
}
_TENS = ("twenty", "thirty", "forty", "fourty", "fifty", "sixty", "seventy", "eighty", "ninety")
_UNITS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUMBER_WORD_PATTERN = (
    rf"(?:(?:{'|'.join(_UNITS)})\s+hundred(?:\s+(?:and\s+)?)?)?"
    rf"(?:(?:{'|'.join(_TENS)})(?:[\s-](?:{'|'.join(_UNITS)}))?|"
    rf"{'|'.join(sorted((w for w in NUMBER_WORDS if ' ' not in w and w not in ('no', 'none')), key=len, reverse=True))})"
)
# "no one" is nobody, not a count of one.
# The lookahead lets the regex engine skip, cheaply, every position where no number can start.
NUMBER = rf"(?=[0-9otfsenzd])(?<!no )(?<!no-)(?:\d{{1,6}}|{NUMBER_WORD_PATTERN})"
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'“(])|\n\s*\n|\n(?=\s*[-*•]\s)")


def number_value(text: str) -> int | None:
    """23, "twelve", "forty-two", "one hundred and five" → int; anything else → None."""
    text = text.strip().lower().replace(",", "")
    if text.isdigit():
        return int(text)
    total, current = 0, 0
    for word in re.split(r"[\s-]+", text):
        if word in ("and", "a"):
            continue
        if word == "hundred":
            current = max(current, 1) * 100
        elif word in NUMBER_WORDS:
            current += NUMBER_WORDS[word]
        else:
            return None
    return total + current


ABBREVIATIONS = frozenset(
    """dr mr mrs ms prof st ave rd blvd no vs etc jan feb mar apr jun jul aug sep sept oct nov dec
    mon tue tues wed thu thur thurs fri sat sun a.m p.m approx dept inc""".split()
)


@functools.lru_cache(maxsize=256)
def sentences(text: str) -> tuple[str, ...]:
    """The text's sentences. "Dr. Amy Chen" and "Oct. 9" do not end one.

    Cached: reading one message asks for the sentences of the same body once per field it looks for.
    """
    merged: list[str] = []
    for part in (p.strip() for p in _SENTENCE_END.split(text)):
        if not part:
            continue
        last_word = merged[-1].rsplit(None, 1)[-1].rstrip(".").lower() if merged else ""
        if merged and merged[-1].endswith(".") and (last_word in ABBREVIATIONS or len(last_word) == 1):
            merged[-1] = f"{merged[-1]} {part}"
        else:
            merged.append(part)
    return tuple(merged)


def emails_in(text: str) -> list[str]:
    """Valid addresses in the order written, lower-cased, each once."""
    found: list[str] = []
    for match in _EMAIL.finditer(text):
        candidate = match.group(0).strip(".'-").lower()
        try:
            normalized = validate_email(candidate, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            continue
        if normalized not in found:
            found.append(normalized)
    return found


def phones_in(text: str) -> list[str]:
    """North American phone numbers in the text, as E.164, in the order written."""
    return list(dict.fromkeys(phone for phone, _, _ in phone_spans(text)))


def phone_spans(text: str) -> list[tuple[str, int, int]]:
    """Each phone number in the text as (E.164, start, end), in the order written."""
    return [
        (phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164), match.start, match.end)
        for match in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.VALID)
    ]


def e164(phone: str) -> str:
    """A phone as E.164 when it parses, else as written."""
    try:
        number = phonenumbers.parse(phone, "US")
    except phonenumbers.NumberParseException:
        return phone
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# A person's name: two to four capitalised words (O'Connor, Van Dyke, Running Crane, Núñez).
_UPPER = "A-ZÀ-ÖØ-Þ"
_LOWER = "a-zà-öø-ÿ"
_NAME_WORD = (
    rf"[{_UPPER}][{_LOWER}]*['’][{_UPPER}][{_LOWER}]+"  # O'Connor, D'Angelo
    rf"|[{_UPPER}][{_LOWER}]*[{_UPPER}][{_LOWER}]+"  # McAllister, MacDonald
    rf"|[{_UPPER}][{_LOWER}]+(?:-[{_UPPER}][{_LOWER}]+)?"  # Núñez, Smith-Jones
)
_PARTICLE = r"(?:[Vv]an|[Vv]on|[Dd]e|[Dd]a|[Dd]el|[Dd]er|[Ll]a|[Ll]e|St\.?|Ó|Ní|Nic|Mac|Mc|O|Ua)"
# A name is on one line: "Rachel Koch" above "Eastern Montana Education Cooperative" is not one name.
PERSON_NAME = re.compile(rf"\b(?:{_NAME_WORD})(?:[ \t]+(?:{_PARTICLE}[ \t]+)?(?:{_NAME_WORD})){{1,4}}\b")
NOT_NAME_WORDS = frozenset(
    """Please Thanks Thank Hello Hi Dear Good Morning Afternoon Our The This That We Can Could Would Will Public
    As If When Since After Before Also And But So Then Per
    Schools School District County University College Montana Secure Portal Professional Development Event
    Events User Users Account PDUPS RUPS OPI Name Email Phone Organization Center Association Council Museum
    Consortium Institute Workshop Training Session Night Part Summit Conference Course Online Monday Tuesday
    Wednesday Thursday Friday Saturday Sunday January February September October November December Region Department Office Learning Literacy Science Mathematics Math Education
    Director Coordinator Coach Specialist Superintendent President Manager Chair Assistant Program New
    Street St Ave Avenue Road Rd Suite Drive Lane Valley Great Falls Big Sky Hi Line Indian Reading""".split()
)


NAME_MONTHS = frozenset({"March", "April", "May", "June", "July", "August"})


def person_names(text: str) -> list[str]:
    """Capitalised word runs that look like a person's name, in the order written."""
    names: list[str] = []
    for match in PERSON_NAME.finditer(text):
        words = re.sub(r"['’]s$", "", match.group(0)).split()
        # March, April, May, June and July are surnames too; followed by a number they are a date.
        if words and words[-1] in NAME_MONTHS and re.match(r"\s*\d", text[match.end() : match.end() + 4]):
            words.pop()
        while words and words[0] in NOT_NAME_WORDS:
            words.pop(0)
        while words and words[-1] in NOT_NAME_WORDS:
            words.pop()
        # Interior words may look like place words: Wanda Big Spring, Kendra Running Crane.
        if len(words) >= 2 and sum(w in NOT_NAME_WORDS for w in words) * 2 < len(words):
            name = " ".join(words)
            if name not in names:
                names.append(name)
    return names


def occurrences(part: str, text: str) -> Iterator[int]:
    """Where ``part`` appears in ``text``, not overlapping: a pattern made from a name would be compiled anew
    for every name, and would push patterns still in use out of the ``re`` module's cache."""
    at = text.find(part)
    while at >= 0 and part:
        yield at
        at = text.find(part, at + len(part))


def labelled(text: str, *labels: str) -> str | None:
    """The value after "Label:" at the start of a line ("Name: Jane Doe", "Email:| x@y.org")."""
    match = label_pattern(labels).search(text)
    return match.group(1).strip(" |*") if match else None


@functools.lru_cache(maxsize=256)  # each caller asks for its own few labels, always the same ones
def label_pattern(labels: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*(?:(?:[-*•]|\d{{1,2}}[.)])[ \t]*)?(?:{'|'.join(labels)})[ \t]*[:|]+[ \t]*\|?[ \t]*(.+?)[ \t]*$",
                      re.IGNORECASE | re.MULTILINE)


_RULE_ROW = re.compile(r"^[\s|:+-]*$")  # "---|---|---", the line under a table's header


def table_rows(text: str) -> list[dict[str, str]]:
    """The rows of each table in ``text``, as {heading: cell}, headings lower-cased.

    HTML tables reach the reader as "a| b| c" lines (html2text), and hosts type them that way too. A row
    with fewer cells than the header lost its first ones to a cell spanning rows above it, so its cells
    are matched to the headings from the right.
    """
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for line in text.splitlines():
        if "|" not in line:
            header = []
            continue
        if _RULE_ROW.match(line):
            continue
        cells = [cell.strip(" *") for cell in line.strip().strip("|").split("|")]
        if not header:
            header = [cell.lower() for cell in cells]
            continue
        cells = cells[-len(header):]
        rows.append(dict(zip(header[len(header) - len(cells):], cells)))
    return rows


def unwrap(text: str) -> str:
    """Join lines a mail client wrapped at about 72 characters back into their sentences.

    Short lines (signatures, "Name: ..." lists, bullets) stay as they are.
    """
    lines = text.splitlines()
    out: list[str] = []
    for line in lines:
        previous = out[-1] if out else ""
        continues = (
            len(previous) >= 55
            and line.strip()
            and not re.match(r"\s*(?:[-*•]|\d+[.)])\s|\s*[\w ]{2,20}:", line)
            and not re.search(r"[.!?:|]\s*$", previous)
            and not ("|" in previous and "|" in line)  # rows of a table, each its own line
        )
        if continues:
            out[-1] = f"{previous.rstrip()} {line.strip()}"
        else:
            out.append(line)
    return "\n".join(out)


def split_sign_off(text: str, sender_name: str) -> tuple[str, str]:
    """(body, sign-off): a trailing block that starts with the sender's name is a signature, not a request.

    Many signatures are not marked by "--" or "Thanks,", so the reply parser leaves them in; the line with
    the sender's own name near the end shows where the signature begins.
    """
    lines = text.rstrip().splitlines()
    if not lines or not sender_name.strip():
        return text, ""
    first = sender_name.split(",")[-1].split()[0].lower() if "," in sender_name else sender_name.split()[0].lower()
    full = " ".join(sender_name.lower().split())
    window = max(0, len(lines) - 9)
    for n in range(len(lines) - 1, window - 1, -1):
        line = lines[n].strip().lower().strip(",.-– ")
        if not line or n == 0:
            continue
        if line == full or line == first or (line.startswith(first) and len(line) < 60 and "|" in line) or line.startswith(full):
            return "\n".join(lines[:n]).rstrip(), "\n".join(lines[n:])
    return text, ""


ORGANISATION = re.compile(
    r"\b((?:(?:[A-Z][\w&'’-]*(?:\.[A-Z]\.?)?|of|and|for|the|&)[ \t]+){1,7}(?:Public Schools|School District(?: No\.? ?\d+)?|Schools|College|University|"
    r"Cooperative|Co-op|Consortium|Association|Museum|Center|Academy|Society|Alliance|CSPD|Institute|Foundation|"
    r"Federation|Council|Network|Coalition|Library|Bureau|Agency|Commission|"
    r"Superintendent of Schools))\b"
)


def organisations_in(text: str) -> list[str]:
    """Organisation names written out in full ("Park County Special Education Cooperative")."""
    found: list[str] = []
    for match in (m for sentence in sentences(text) for m in ORGANISATION.finditer(sentence)):
        name = re.sub(r"^(?:(?:The|At|From|For|With|In|Our|I|I'm|I’m|We|Retired|Teacher|Director|of|and|for|the)\s+)+", "", match.group(1).strip())
        if name not in found:
            found.append(name)
    return found
