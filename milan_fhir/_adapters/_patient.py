"""Patient: only the fields the rules need (birthDate)."""

from __future__ import annotations

from .._dates import parse_clinical_date, parse_partial_date
from .._domain import PatientFact
from ._common import Ctx

__all__ = ["adapt"]


def adapt(ctx: Ctx) -> None:
    raw = ctx.resource.get("birthDate")
    born = parse_partial_date(raw)
    if raw is not None and born is None:
        ctx.unusable("age", "birthDate", f"birthDate {raw!r} is not a date")
    words = f"born {born}" if born else "birth date not recorded"
    pat = ctx.resource
    deceased = pat.get("deceasedBoolean") if isinstance(pat.get("deceasedBoolean"), bool) else None
    died, unreadable = None, None
    if "deceasedDateTime" in pat:
        died = parse_clinical_date(pat.get("deceasedDateTime"))
        if died is None:
            raw_died = pat.get("deceasedDateTime")
            unreadable = f"deceasedDateTime {str(raw_died)[:40]!r} is not a date"
            ctx.unusable("deceased", "deceasedDateTime", unreadable)
        else:
            words += f", deceased {died}"
    if deceased:
        words += ", deceased"
    ctx.add("demographics", PatientFact(birth_date=born, deceased=deceased, deceased_date=died,
                                        deceased_unreadable=unreadable, source=ctx.source(words, None)))
