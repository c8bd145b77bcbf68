"""Detectors of personal data and secrets in free text, each a candidate pattern plus a validator.

A pattern finds candidates cheaply; the validator keeps only real ones, so a 16-digit order number is not a
payment card and a random 18-character string is not a Chinese resident ID. Checksums come from python-stdnum
(Luhn, IBAN mod 97, GB 11643 ISO 7064 for Chinese resident IDs, Verhoeff for Aadhaar, SSA rules for US SSNs)
and phone numbers from Google's libphonenumber port (``phonenumbers``), postal addresses of the United States,
Canada and the United Kingdom from ``pyap2``'s street / city / state / postcode rules: all maintained, all
offline, none loading a model.

Personal names are not detected by Haven itself: every maintained offline recogniser for them needs a
statistical language model that is a separate download (Presidio's spaCy pipelines), and a gazetteer of names
flags ordinary words; docs/sovereignty.md says why, and how an operator plugs one in
(:mod:`haven.redaction.plugins`). Addresses in other national formats are not detected either.

Overlaps are resolved by priority (the order of :data:`DETECTORS`), then by length: a card number inside
an IBAN-looking run counts once.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import phonenumbers
import pyap
from stdnum import iban, luhn
from stdnum.cn import ric
from stdnum.exceptions import ValidationError
from stdnum.in_ import aadhaar
from stdnum.us import ssn


@dataclass(frozen=True)
class Span:
    """One detected value: ``text[start:end]`` is of ``kind`` (``EMAIL``, ``CARD``, …)."""

    kind: str
    start: int
    end: int
    value: str


Finder = Callable[[str], Iterator[tuple[int, int]]]
"""Yields (start, end) of each validated value in a text."""


@dataclass(frozen=True)
class Detector:
    kind: str
    finder: Finder
    checksum: bool
    """True when the validator is a checksum (these are held to ≥ 0.99 precision, ≥ 0.95 recall)."""


def _regex_finder(pattern: str, validate: Callable[[str], bool]) -> Finder:
    compiled = re.compile(pattern)

    def find(text: str) -> Iterator[tuple[int, int]]:
        for match in compiled.finditer(text):
            start, end = match.span("v") if "v" in compiled.groupindex else match.span()
            if validate(text[start:end]):
                yield start, end

    return find


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


# Boundaries: not inside a longer run of letters/digits (works for CJK text, where \b does not).
_B = r"(?<![0-9A-Za-z])"
_E = r"(?![0-9A-Za-z])"

_EMAIL = (
    _B + r"(?P<v>[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"  # local part
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})" + _E  # domain labels and TLD
)
_CARD = _B + r"(?P<v>\d(?:[ -]?\d){12,18})" + _E
_IBAN = _B + r"(?P<v>[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30})" + _E
_CN_RIC = _B + r"(?P<v>\d{17}[\dXx])" + _E
_AADHAAR = _B + r"(?P<v>[2-9]\d{3}[ -]?\d{4}[ -]?\d{4})" + _E
_SSN = _B + r"(?P<v>\d{3}-\d{2}-\d{4})" + _E
_IPV4 = _B + r"(?P<v>(?:\d{1,3}\.){3}\d{1,3})" + _E
_IPV6_CANDIDATE = re.compile(r"(?<![0-9A-Za-z:.])[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?![0-9A-Za-z:.])")
# Well-known key formats (prefix + body), then generic high-entropy tokens.
_API_KEY = (
    r"(?P<v>(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}"
    r"|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
    r"|hvn_[A-Za-z0-9_-]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----))"
)
_TOKEN = r"(?<![A-Za-z0-9+/_=-])(?P<v>[A-Za-z0-9+/_=-]{32,})(?![A-Za-z0-9+/_=-])"


# Issuer prefixes and the lengths their cards have (ISO/IEC 7812 ranges of the networks in wide use): a Luhn
# check alone passes one random number in ten, so an 18-digit reference number would too often look like a card.
_CARD_NETWORKS: tuple[tuple[re.Pattern[str], frozenset[int]], ...] = (
    (re.compile(r"4"), frozenset({13, 16, 19})),  # Visa
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)"), frozenset({16})),  # Mastercard
    (re.compile(r"3[47]"), frozenset({15})),  # American Express
    (re.compile(r"6(?:011|5|4[4-9])"), frozenset({16, 17, 18, 19})),  # Discover
    (re.compile(r"35(?:2[89]|[3-8]\d)"), frozenset({16, 17, 18, 19})),  # JCB
    (re.compile(r"62"), frozenset({16, 17, 18, 19})),  # UnionPay
    (re.compile(r"3(?:0[0-5]|[68])"), frozenset({14, 15, 16})),  # Diners Club
    (re.compile(r"60|8[12]|508"), frozenset({16})),  # RuPay
)


def _card_valid(value: str) -> bool:
    digits = _digits(value)
    return (
        luhn.is_valid(digits)
        and any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_NETWORKS)
    )


def _iban_valid(value: str) -> bool:
    return iban.is_valid(value)


def _ric_valid(value: str) -> bool:
    """ISO 7064 MOD 11-2 check digit and a real birth date. The six-digit area code is not looked up: codes are
    renamed and split over the years and python-stdnum's table is partial, so real IDs would be missed."""
    number = value.upper()
    if number[-1] != ric.calc_check_digit(number):
        return False
    try:
        ric.get_birth_date(number)
    except ValidationError:
        return False
    return True


def _aadhaar_valid(value: str) -> bool:
    return aadhaar.is_valid(_digits(value))


def _ssn_valid(value: str) -> bool:
    return ssn.is_valid(value)


def _ip_valid(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _ipv6_finder(text: str) -> Iterator[tuple[int, int]]:
    for match in _IPV6_CANDIDATE.finditer(text):
        start, end = match.span()
        while end > start and text[end - 1] == ".":  # a full stop after the address ends the sentence
            end -= 1
        if _ip_valid(text[start:end]):
            yield start, end


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution."""
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _secret_valid(value: str) -> bool:
    """A long token mixing letters and digits with ≥ 4 bits/char: keys and tokens, not words or hashes of words.

    Hex-only tokens (git SHAs, content hashes) have at most 4 bits/char and are left alone on purpose: they are
    identifiers, not credentials, and Haven's own model digests are among them."""
    has_digit = any(c.isdigit() for c in value)
    has_upper = any(c.isupper() for c in value)
    has_lower = any(c.islower() for c in value)
    return has_digit and has_upper and has_lower and shannon_entropy(value) >= 4.2


def _phone_finder(text: str) -> Iterator[tuple[int, int]]:
    # "ZZ" (unknown region): only numbers written in international form (+CC …) are found, which is what the
    # boundary needs; national forms are ambiguous across countries.
    for match in phonenumbers.PhoneNumberMatcher(text, "ZZ", leniency=phonenumbers.Leniency.VALID):
        yield match.start, match.end


_ADDRESS_COUNTRIES: tuple[Literal["US", "CA", "GB"], ...] = ("US", "CA", "GB")
# pyap reports spans in its own whitespace-normalised copy of the text: the address is found again in the
# original with the same words and any run of spaces or commas between them.
_ADDRESS_GAP = r"[\s,]*"
_UK_POSTCODE = re.compile(r"(?<![0-9A-Za-z])[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}(?![0-9A-Za-z])", re.IGNORECASE)
_NOT_LATIN = re.compile(r"[^\x00-\x7f\u00a0-\u024f\u2010-\u2015]")


def _address_finder(text: str) -> Iterator[tuple[int, int]]:
    if not any(c.isdigit() for c in text):  # every address these rules know has a house number
        return
    # The rules need a word boundary before the house number, which Chinese text has none of
    # ("住在1600 Pennsylvania Ave"): pyap reads a copy where letters of other scripts are spaces.
    latin = _NOT_LATIN.sub(" ", text)
    for country in _ADDRESS_COUNTRIES:
        if country == "GB" and not _UK_POSTCODE.search(latin):
            continue  # the UK rules (the slow ones) only ever match an address that ends in its postcode
        for address in pyap.parse(latin, country=country):
            words = re.findall(r"[^\s,]+", address.full_address)
            while len(words) > 2 and words[-1].isalpha() and words[-1].islower():
                words.pop()  # "… IL 62704 or call": the rules read "or" as Oregon; states are written upper-case
            pattern = _ADDRESS_GAP.join(re.escape(w) for w in words)
            for match in re.finditer(r"(?<![0-9A-Za-z])" + pattern + r"(?![0-9A-Za-z])", text):
                yield match.start(), match.end()


DETECTORS: tuple[Detector, ...] = (
    Detector("API_KEY", _regex_finder(_API_KEY, lambda v: True), checksum=False),
    Detector("EMAIL", _regex_finder(_EMAIL, lambda v: True), checksum=False),
    Detector("IBAN", _regex_finder(_IBAN, _iban_valid), checksum=True),
    Detector("CN_RESIDENT_ID", _regex_finder(_CN_RIC, _ric_valid), checksum=True),
    Detector("PHONE", _phone_finder, checksum=False),
    Detector("CARD", _regex_finder(_CARD, _card_valid), checksum=True),
    Detector("AADHAAR", _regex_finder(_AADHAAR, _aadhaar_valid), checksum=True),
    Detector("US_SSN", _regex_finder(_SSN, _ssn_valid), checksum=False),
    Detector("IP_ADDRESS", _ipv6_finder, checksum=False),  # before IPv4: ::ffff:10.0.0.1 is one address
    Detector("IP_ADDRESS", _regex_finder(_IPV4, _ip_valid), checksum=False),
    Detector("SECRET", _regex_finder(_TOKEN, _secret_valid), checksum=False),
    # Last: a street address may contain a number another detector knows better (a phone after the postcode).
    Detector("ADDRESS", _address_finder, checksum=False),
)


# Every Unicode decimal digit (Arabic-Indic ٤, Devanagari ४, full-width ４…) → its ASCII digit. One character
# for one, so spans found in the normalised text are the spans of the original.
@functools.cache
def _ascii_digits() -> dict[int, str]:
    return {ord(c): str(unicodedata.digit(c)) for c in map(chr, range(0x110000))
            if unicodedata.category(c) == "Nd" and not c.isascii()}


def find_spans(text: str, detectors: Sequence[Detector] = DETECTORS) -> list[Span]:
    """Every detected value in ``text``, non-overlapping, in text order (earlier detectors win overlaps).

    Digits of any script count: a card number typed in Arabic-Indic digits is still a card number."""
    normalised = text.translate(_ascii_digits())
    taken: list[Span] = []
    for detector in detectors:
        for start, end in detector.finder(normalised):
            if not 0 <= start < end <= len(text):  # a plug-in's nonsense is skipped, never sliced
                continue
            if any(start < s.end and s.start < end for s in taken):
                continue
            taken.append(Span(detector.kind, start, end, text[start:end]))
    return sorted(taken, key=lambda s: s.start)
