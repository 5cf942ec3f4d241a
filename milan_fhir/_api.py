"""The public functions of milan-fhir (re-exported by ``milan_fhir``).

    >>> import milan_fhir
    >>> results = milan_fhir.evaluate("fixtures/")            # a Bundle, an NDJSON file or a folder
    >>> [(r.patient, r.verdict) for r in results]
    >>> milan_fhir.to_json(results[0])                         # the JSON object of criteria.md §6
    >>> milan_fhir.to_risk_assessment(results[0])              # the FHIR RiskAssessment (criteria.md §5)
"""

from __future__ import annotations

import datetime as dt
import os
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from ._runtime import as_date as _as_date
from ._runtime import resolve_mappings, software_version

if TYPE_CHECKING:
    from ._domain import Evaluation
    from ._mappings import Mappings

_log = logging.getLogger("milan_fhir")

__all__ = [
    "evaluate",
    "evaluate_records",
    "resolve_mappings",
    "to_json",
    "to_risk_assessment",
    "to_provenance",
    "render_table",
    "structure_definitions",
    "software_version",
]

Source = str | os.PathLike[str] | dict[str, Any] | Iterable[dict[str, Any]]


def _items(source: Source, problems: list[Any]) -> Iterable[Any]:
    from . import _sources

    if isinstance(source, (str, os.PathLike)):
        return _sources.read_path(Path(source), problems)
    return _sources.read_resources(source, problems)


def evaluate_records(
    records: Iterable[Any], *, as_of: dt.date, rule_set: str | None = None, mappings: Mappings
) -> list[Evaluation]:
    """Evaluate already-built :class:`PatientRecord` objects; results sorted by patient reference."""
    from ._evaluate import evaluate_record

    rules = mappings.rule_set(rule_set)
    out = [evaluate_record(rec, rules, as_of, mappings.version) for rec in records]
    out.sort(key=lambda ev: ev.patient)
    return out


def evaluate(
    source: Source,
    *,
    as_of: dt.date | str | None = None,
    rule_set: str | None = None,
    mappings: Mappings | str | os.PathLike[str] | None = None,
    problems: list[Any] | None = None,
) -> list[Evaluation]:
    """Evaluate every patient found in ``source`` against the Milan criteria.

    ``source``: a path (a FHIR Bundle or resource as JSON, an NDJSON file, or a folder of them), a dict (a Bundle
    or one resource) or an iterable of resource dicts. ``as_of``: the date of the evaluation (default: today in
    UTC); only data on or before it counts. ``rule_set``: a rule-set name (default: the mappings' default,
    ``milan-net``). ``mappings``: a :class:`Mappings`, the path of a file layered on the defaults, or None.
    ``problems``: a list that receives an :class:`InputProblem` for every resource that was skipped; without it,
    each skipped resource is logged as a warning on the ``milan_fhir`` logger (never fatal, never silent).

    Returns one :class:`Evaluation` per patient, sorted by patient reference. Raises
    :class:`~milan_fhir.errors.InputError` for input that cannot be read at all,
    :class:`~milan_fhir.errors.MappingError` for bad mappings and :class:`~milan_fhir.errors.RuleSetError` for an
    unknown rule set.
    """
    from ._adapters import build_records

    m = resolve_mappings(mappings)
    day = _as_date(as_of)
    m.rule_set(rule_set)  # an unknown rule set fails before any input is read
    sink: list[Any] = [] if problems is None else problems
    records = build_records(_items(source, sink), m, sink)
    if problems is None:
        # Nobody asked for the list: say what was skipped through logging rather than drop it silently.
        for problem in sink:
            _log.warning("skipped: %s", problem)
    return evaluate_records(records.values(), as_of=day, rule_set=rule_set, mappings=m)


def to_json(ev: Evaluation) -> dict[str, Any]:
    """The JSON object of criteria.md §6 for one evaluation (plus ``evidence_detail`` and version keys)."""
    from ._writers import json_lines

    return json_lines.to_json(ev)


def to_risk_assessment(ev: Evaluation, mappings: Mappings | None = None) -> dict[str, Any]:
    """The FHIR R4 RiskAssessment of criteria.md §5 for one evaluation, as a dict."""
    from ._mappings import default_mappings
    from ._writers import fhir

    return fhir.risk_assessment(ev, mappings if mappings is not None else default_mappings())


def to_provenance(
    ev: Evaluation, target_reference: str, *, recorded: dt.datetime | str | None = None
) -> dict[str, Any]:
    """A FHIR R4 Provenance for a written RiskAssessment: this software and every input with its version."""
    from ._writers import fhir

    return fhir.provenance(ev, target_reference, recorded=recorded, software_version=software_version())


def render_table(evaluations: Iterable[Evaluation], *, width: int | None = None, colour: bool | None = None) -> str:
    """The evaluations as a text table for a terminal."""
    from ._writers import table

    return table.render(evaluations, width=width, colour=colour)


def structure_definitions() -> list[dict[str, Any]]:
    """The FHIR StructureDefinitions milan-fhir ships (extensions and the RiskAssessment profile)."""
    from ._writers import fhir

    return fhir.structure_definitions()
