"""Patient: only the fields the rules need (birthDate)."""

from __future__ import annotations

from .._dates import parse_partial_date
from .._domain import PatientFact
from ._common import Ctx

__all__ = ["adapt"]


def adapt(ctx: Ctx) -> None:
    raw = ctx.resource.get("birthDate")
    born = parse_partial_date(raw)
    if raw is not None and born is None:
        ctx.unusable("age", "birthDate", f"birthDate {raw!r} is not a date")
    words = f"born {born}" if born else "birth date not recorded"
    ctx.add("demographics", PatientFact(birth_date=born, source=ctx.source(words, None)))
