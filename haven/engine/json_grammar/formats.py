"""String ``format``s as GBNF: what goes between the quotes (valid per Python's own parsers).

``date`` is a real calendar date (days per month, 29 February only in leap years, year 0001-9999:
what ``datetime.date.fromisoformat`` accepts); ``time`` is RFC 3339 ``HH:MM:SS[.frac](Z|±HH:MM)``
without leap seconds; ``date-time`` joins them with ``T``; ``uuid`` is 8-4-4-4-12 hex digits;
``email`` is a plain ``local@domain.tld`` address.
"""

from __future__ import annotations

_HEX = "[0-9a-fA-F]"
_YEAR = '([0-9] [0-9] [0-9] [1-9] | [0-9] [0-9] [1-9] "0" | [0-9] [1-9] "00" | [1-9] "000")'
_LEAP_YEAR = (
    '([0-9] [0-9] ([02468] [48] | [13579] [26] | [2468] "0") | ([02468] [48] | [13579] [26] | [2468] "0") "00")'
)
_DATE = (
    f'({_YEAR} "-" (("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])'
    ' | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30")'
    ' | "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8]))'
    f' | {_LEAP_YEAR} "-02-29")'
)
_TIME = (
    '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})?'
    ' ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])'
)
_LABEL = "[a-zA-Z0-9] ([a-zA-Z0-9-]{0,30} [a-zA-Z0-9])?"

FORMATS: dict[str, str] = {
    "date": _DATE,
    "time": _TIME,
    "date-time": f'{_DATE} "T" {_TIME}',
    "uuid": f'{_HEX}{{8}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{12}}',
    "email": f'[a-zA-Z0-9_+-] ([a-zA-Z0-9._+-]{{0,30}} [a-zA-Z0-9_+-])? "@" ({_LABEL} "."){{1,3}} [a-zA-Z]{{2,12}}',
}
