"""Run options shared by every entry point (library, CLI, server, cohort): the as-of date, the mappings in use,
the software version. It lives below the public facade (``_api``) so that no lower layer imports the facade.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable

from ._mappings import Mappings, default_mappings, load_mappings
from .errors import InputError

__all__ = ["as_date", "today_utc", "resolve_mappings", "software_version"]


def software_version() -> str:
    """The installed version of milan-fhir (``0.0.0+local`` when run from a checkout without metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("milan-fhir")
    except PackageNotFoundError:
        return "0.0.0+local"


def resolve_mappings(mappings: Mappings | str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None) -> Mappings:
    """A :class:`Mappings` as given; a path (or several) of layered files on top of the defaults; or the defaults."""
    if mappings is None:
        return default_mappings()
    if isinstance(mappings, Mappings):
        return mappings
    if isinstance(mappings, (str, os.PathLike)):
        return load_mappings(mappings)
    return load_mappings(*mappings)


def today_utc() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def as_date(as_of: dt.date | str | None) -> dt.date:
    if as_of is None:
        return today_utc()
    if isinstance(as_of, dt.datetime):
        return as_of.astimezone(dt.timezone.utc).date() if as_of.tzinfo else as_of.date()
    if isinstance(as_of, dt.date):
        return as_of
    try:
        return dt.date.fromisoformat(str(as_of))
    except ValueError:
        raise InputError(f"as_of {as_of!r} is not a date (expected YYYY-MM-DD)") from None
