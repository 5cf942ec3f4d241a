"""Date rules shared by adapters and criteria (criteria.md §1, §3a). No FHIR models, no I/O.

- A partial date (``2025``, ``2025-06``) counts as its earliest possible day.
- A dateTime with an offset is converted to a UTC date; one without an offset is read as written.
- "N months before" is calendar arithmetic with the day of month clamped (2024-08-31 minus 6 months = 2024-02-29).
- Age in whole years completed; someone born on 29 February completes a year on 1 March in non-leap years.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timezone

from ._domain import PartialDate

__all__ = ["parse_partial_date", "parse_clinical_date", "parse_clinical_date_latest", "minus_months", "add_months", "whole_years", "months_between"]

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$"
)


def parse_partial_date(value: object) -> PartialDate | None:
    """``1965`` / ``1965-03`` / ``1965-03-14`` (or the date part of a dateTime) -> PartialDate; else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    m = _DATE.match(text)
    if not m:
        m2 = _DATETIME.match(text)
        if not m2:
            return None
        d = parse_clinical_date(text)
        return PartialDate(year=d.year, month=d.month, day=d.day) if d else None
    year = int(m.group(1))
    month = int(m.group(2)) if m.group(2) else None
    day = int(m.group(3)) if m.group(3) else None
    try:
        if month is not None and not 1 <= month <= 12:
            return None
        if day is not None:
            date(year, month or 1, day)
    except ValueError:
        return None
    return PartialDate(year=year, month=month, day=day)


def parse_clinical_date(value: object) -> date | None:
    """A FHIR date or dateTime -> its (earliest, UTC) calendar date; None when it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    m = _DATETIME.match(text)
    if m:
        try:
            if m.group(7) is None:
                return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return dt.astimezone(timezone.utc).date()
        except (ValueError, OverflowError):  # OverflowError: the offset moves it before year 1 or after 9999
            return None
    p = parse_partial_date(text)
    return p.earliest() if p else None


def parse_clinical_date_latest(value: object) -> date | None:
    """(v2) The latest possible UTC day of a FHIR date or dateTime (``2025-06`` -> 2025-06-30): a partial date
    must never lengthen a period in the patient's favour (criteria.md §3a, the start of a stable run)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _DATETIME.match(text):
        return parse_clinical_date(text)
    p = parse_partial_date(text)
    if p is None:
        return None
    try:
        return p.latest()
    except (ValueError, OverflowError):
        return None


def add_months(d: date, months: int) -> date:
    """``d`` plus ``months`` calendar months (negative to go back), day of month clamped."""
    total = d.year * 12 + (d.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def minus_months(d: date, months: int) -> date:
    return add_months(d, -months)


def whole_years(born: date, on: date) -> int:
    """Whole years completed between ``born`` and ``on`` (29 February birthdays complete on 1 March)."""
    years = on.year - born.year
    if (on.month, on.day) < (born.month, born.day):
        years -= 1
    return years


def months_between(earlier: date, later: date) -> int:
    """Whole calendar months from ``earlier`` to ``later`` (for reasons such as "stable only 4 months")."""
    months = (later.year - earlier.year) * 12 + (later.month - earlier.month)
    if add_months(earlier, months) > later:
        months -= 1
    return max(months, 0)
