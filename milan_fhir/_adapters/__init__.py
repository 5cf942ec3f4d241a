"""Adapters: raw FHIR R4 JSON (dicts) -> domain facts (``milan_fhir._domain``). The only code that reads FHIR.

- :func:`build_records` reads many resources (dicts or :class:`Located`) into one :class:`PatientRecord` per
  patient; invalid resources go to ``problems`` and are skipped, never fatal, never silent.
- :func:`adapt_resource` adapts one resource (streaming, for the cohort path); it returns None for resources the
  rules do not use and raises :class:`~milan_fhir.errors.ResourceError` for an invalid one.
- :class:`RawPrefilter` is a cheap bytes check before parsing an NDJSON line.

Resources are recognised by code (codes.yaml), never by ``meta.profile``; only recognised resources are
validated against the R4B models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from .._domain import Ignored, MetastasisFact, PatientRecord, Source, Unusable
from .._mappings import CodeEntry, Mappings
from ..errors import InputError, ResourceError
from . import _condition, _observation, _patient, _procedure
from ._common import Adapted, Ctx, settle_pending, version_of
from ._guard import guard_fault, key_fault, printable
from ._located import InputProblem, Located, iter_bundle_or_resource, resource_key
from ._prefilter import RawPrefilter
from ._validate import patient_fields, validation_fault
from ._values import Resolver, make_resolver, resolve_reference

__all__ = [
    "Adapted",
    "AdaptStats",
    "InputProblem",
    "Located",
    "RawPrefilter",
    "adapt_resource",
    "build_records",
    "classify",
    "deferred_fault",
    "full_url_map",
    "settle_pending",
]

#: Resource types the rules read; every other type is irrelevant (skipped, counted in AdaptStats.irrelevant).
RULE_TYPES = ("Patient", "Observation", "Condition", "Procedure")


@dataclass
class AdaptStats:
    """What :func:`build_records` did with the resources it was given."""

    read: int = 0  # resources seen
    counted: int = 0  # added to a record's inputs
    ignored: int = 0  # recognised but not counted (status, verification...): in record.ignored
    irrelevant: int = 0  # not used by the rules (other types, other codes): skipped by design
    invalid: int = 0  # reported in problems and skipped
    duplicates: int = 0  # the same Type/id seen again: reported, first copy used


def classify(resource: dict[str, Any], mappings: Mappings) -> tuple[str, Any] | None:
    """``(resourceType, classification)`` when the rules use this resource (by code), else None."""
    rtype = resource.get("resourceType")
    kind: tuple[str, CodeEntry | None] | _condition.ConditionKind | None
    if rtype == "Patient":
        return rtype, None
    if rtype == "Observation":
        kind = _observation.classify(resource, mappings)
    elif rtype == "Condition":
        kind = _condition.classify(resource, mappings)
    elif rtype == "Procedure":
        kind = _procedure.classify(resource, mappings)
    else:
        return None
    return (rtype, kind) if kind is not None else None


def adapt_resource(
    resource: dict[str, Any],
    mappings: Mappings,
    *,
    resolve: Resolver | Mapping[str, str] | None = None,
    located: Located | None = None,
    defer_patient: bool = False,
    shallow: bool = False,
) -> Adapted | None:
    """One resource -> facts for one patient; None when the rules do not use it.

    ``defer_patient`` (the cohort engines): a Patient's R4B validation is left to the caller, who runs
    :func:`deferred_fault` on the returned :class:`Adapted` (its ``check``) only for a patient it evaluates;
    the generic guards (depth, control characters, JSON types of dates) still run here. ``shallow``: the
    caller checked the resource's JSON text with :func:`~milan_fhir._adapters._guard.shallow_text` (the depth
    walk is skipped).

    ``resolve`` maps reference text (``urn:uuid:...``, a Bundle fullUrl) to ``Type/id``; relative and absolute
    references are read without it. Raises :class:`ResourceError` (naming file, line, resource and field) for
    a resource that is used but invalid.
    """
    file, line, full_url = (located.file, located.line, located.full_url) if located else (None, None, None)
    hit = classify(resource, mappings) if isinstance(resource, dict) else None
    if hit is None:
        return None
    rtype, kind = hit
    fault = guard_fault(resource, full_url, shallow=shallow)  # depth, control characters, JSON types of dates: before all else
    if fault is not None:
        err = ResourceError(f"invalid {rtype}: {fault[1]}", file=file, line=line,
                            resource=_safe_key(resource, full_url, rtype), field=fault[0])
        # a resource of a criterion's kind with a bad date or JSON type still caps its criterion (criteria.md §6
        # v2), when its own key is safe to use; depth and control-character faults never reach a patient key
        safe_ref = resource_key(resource, full_url)
        err.adapted = None  # type: ignore[attr-defined]
        timed = str(fault[0]).startswith(("effective", "performed", "onset", "abatement", "recorded", "issued"))
        if timed and safe_ref is not None and key_fault(safe_ref, "id") is None:
            try:
                err.adapted = _capping(resource, rtype, kind, safe_ref, resolve, fault[0], fault[1])  # type: ignore[attr-defined]
            except (ResourceError, RecursionError):
                err.adapted = None  # type: ignore[attr-defined]
        raise err
    reference = resource_key(resource, full_url)
    if reference is None:
        raise ResourceError(f"{rtype} has no id", file=file, line=line, resource=rtype, field="id")
    deferred = defer_patient and rtype == "Patient"
    fault = None if deferred else validation_fault(resource)
    if fault is not None:
        field, reason = fault
        err = ResourceError(f"invalid {rtype}: {reason}", file=file, line=line, resource=reference, field=field or None)
        # criteria.md §6 (v2): reported and skipped, and where it is recognisably of a criterion's kind it also
        # caps that criterion: ``err.adapted`` (when not None) carries the capping facts for the patient
        err.adapted = _capping(resource, rtype, kind, reference, resolve, field, reason)  # type: ignore[attr-defined]
        raise err
    patient = reference if rtype == "Patient" else _subject(resource, resolve, file, line, reference)
    fault = key_fault(patient, "subject")  # a key resolved through another entry's fullUrl
    if fault is not None:
        raise ResourceError(f"invalid {rtype}: the subject {fault[1]}", file=file, line=line, resource=reference,
                            field=fault[0])
    concept = _concept(rtype, kind)
    out = Adapted(patient=patient, reference=reference, version=version_of(resource), concept=concept)
    ctx = Ctx(resource, mappings, reference, out.version, _as_resolver(resolve), out)
    if rtype == "Patient":
        _patient.adapt(ctx)
        if deferred:
            out.check = patient_fields(resource)
    elif rtype == "Observation":
        _observation.adapt(ctx, *kind)
    elif rtype == "Condition":
        _condition.adapt(ctx, kind)
    else:
        _procedure.adapt(ctx, *kind)
    return out


def deferred_fault(adapted: Adapted) -> tuple[str | None, str] | None:
    """``(field, reason)`` when the Patient an :class:`Adapted` with a ``check`` was read from fails R4B
    validation (the reason as :func:`adapt_resource` would have raised it), else None."""
    if adapted.check is None:
        return None
    fault = validation_fault(adapted.check)
    if fault is None:
        return None
    return fault[0] or None, f"invalid Patient: {fault[1]}"


#: Observation concepts whose invalid resources cap a criterion, and the concept of the Unusable they give
_CAPPING_CONCEPTS = {
    "ki67": "ki67",
    _observation.UNMAPPED_KI67: "ki67",
    "histologic_grade": "histologic_grade",
    "morphology_observation": "histologic_grade",
    "liver_burden": "liver_burden",
    "disease_status": "disease_status",
    "extrahepatic_staging": "extrahepatic_staging",
}


def _capping(resource: dict[str, Any], rtype: str, kind: Any, reference: str, resolve: Any, field: str,
             reason: str) -> Adapted | None:
    """The facts an invalid resource of a criterion's kind still gives: an Unusable value (an Observation) or a
    metastasis of unknown site (a metastasis Condition). None when its patient cannot be told."""
    if rtype not in ("Observation", "Condition"):
        return None
    try:
        patient = _subject(resource, _as_resolver(resolve), None, None, reference)
    except InputError:
        return None
    out = Adapted(patient=patient, reference=reference, version=version_of(resource),
                  concept=_concept(rtype, kind), counted=False, invalid=True)
    why = f"the resource fails validation ({field or 'resource'}: {reason}), so its value cannot be used"
    if rtype == "Observation":
        concept = _CAPPING_CONCEPTS.get(kind[0])
        if concept is None:
            return None
        when = _observation.clinical_date(resource)
        out.unusable.append(Unusable(reference=reference, concept=concept, field=field or "resource", reason=why,
                                     date=when))
        return out
    if kind.concept != "metastasis":
        return None
    src = Source(reference=reference, version=out.version, value=f"metastasis Condition that {why}",
                 date=_condition.clinical_date(resource))
    out.facts.append(("metastases", MetastasisFact(site=None, site_label="site not readable", location="unspecified",
                                                   source=src)))
    return out


def build_records(
    items: Iterable[Located | dict[str, Any]],
    mappings: Mappings,
    problems: list[InputProblem],
    *,
    stats: AdaptStats | None = None,
    patient: str | None = None,
) -> dict[str, PatientRecord]:
    """One record per patient from many resources; a Bundle's ``fullUrl``s resolve references within it.

    With ``patient`` (``Patient/id``), only that patient's record is built: a resource about anyone else is put
    in its ``ignored`` list with the reason (criteria.md §1: data of another subject never counts).
    """
    stats = stats if stats is not None else AdaptStats()
    records: dict[str, PatientRecord] = {}
    pending: dict[str, list[Adapted]] = {}
    for scope in _scopes(items, problems):
        resolver = make_resolver(full_url_map(scope))
        for loc in scope:
            stats.read += 1
            adapted = _adapt_reported(loc, mappings, resolver, problems, stats)
            if adapted is None:
                continue
            if patient is not None and adapted.patient != patient:
                adapted = _other_subject(adapted, patient)
            record = records.get(adapted.patient)
            if record is None:
                record = records[adapted.patient] = PatientRecord(patient=adapted.patient)
            if adapted.counted and adapted.reference in record.inputs:
                stats.duplicates += 1
                problems.append(
                    InputProblem(loc.file, loc.line, adapted.reference, None, "the resource appears more than once; the first copy was used")
                )
                continue
            adapted.apply(record)
            if adapted.pending:
                pending.setdefault(adapted.patient, []).append(adapted)
            if adapted.counted:
                stats.counted += 1
            elif not adapted.invalid:
                stats.ignored += 1
    for key, waiting in pending.items():
        settle_pending(records[key], waiting)
    return records


def full_url_map(located: Iterable[Located]) -> dict[str, str]:
    """Bundle ``fullUrl`` -> ``Type/id`` for every entry that has one."""
    out: dict[str, str] = {}
    for loc in located:
        if loc.full_url:
            key = resource_key(loc.resource, loc.full_url)
            if key:
                out[loc.full_url] = key
    return out


# ---------------------------------------------------------------------------------------------- internals
def _adapt_reported(
    loc: Located, mappings: Mappings, resolver: Resolver, problems: list[InputProblem], stats: AdaptStats
) -> Adapted | None:
    try:
        adapted = adapt_resource(loc.resource, mappings, resolve=resolver, located=loc)
    except InputError as exc:
        stats.invalid += 1
        problems.append(InputProblem.from_error(exc))
        return getattr(exc, "adapted", None)  # the capping facts of an invalid resource of a criterion's kind
    if adapted is None:
        stats.irrelevant += 1
    return adapted


def _scopes(items: Iterable[Located | dict[str, Any]], problems: list[InputProblem]) -> Iterator[list[Located]]:
    """Groups of resources that share fullUrls: one per Bundle (``Located.scope``, set by the reader: a Bundle
    file, a Bundle on one NDJSON line), each other resource on its own; without a scope, one per file."""
    buffer: list[Located] = []
    scope: Any = object()
    for item in items:
        for loc in _as_located(item, problems):
            key = loc.scope if loc.scope is not None else ("file", loc.file)
            if buffer and key != scope:
                yield buffer
                buffer = []
            scope = key
            buffer.append(loc)
    if buffer:
        yield buffer


def _as_located(item: Any, problems: list[InputProblem]) -> Iterator[Located]:
    if isinstance(item, Located):
        yield item
    else:
        yield from iter_bundle_or_resource(item, problems)


def _subject(resource: dict[str, Any], resolve: Any, file: str | None, line: int | None, reference: str) -> str:
    ref = resource.get("subject")
    target = resolve_reference(ref, resolve)
    text = ref.get("reference") if isinstance(ref, dict) else None
    if target is None:
        reason = (
            f"subject reference {text!r} cannot be resolved to a Patient (no Bundle entry has that fullUrl)"
            if text
            else "no subject reference to a Patient"
        )
        raise ResourceError(reason, file=file, line=line, resource=reference, field="subject")
    if not target.startswith("Patient/"):
        raise ResourceError(f"subject is {target}, not a Patient", file=file, line=line, resource=reference, field="subject")
    return target


def _safe_key(resource: dict[str, Any], full_url: str | None, rtype: str) -> str:
    """``Type/id`` for a message, control characters escaped (the resource is refused, never keyed by it)."""
    key = resource_key(resource, full_url if isinstance(full_url, str) else None)
    return printable(key) if key else rtype


def _other_subject(adapted: Adapted, patient: str) -> Adapted:
    """The resource as an ignored entry of ``patient``'s record: its subject is someone else."""
    out = Adapted(patient=patient, reference=adapted.reference, version=adapted.version, concept=adapted.concept,
                  counted=False)
    out.ignored.append(Ignored(reference=adapted.reference, reason=f"its subject is {adapted.patient}, not {patient}"))
    return out


def _concept(rtype: str, kind: Any) -> str:
    if rtype == "Patient":
        return "patient"
    concept: str = kind.concept if rtype == "Condition" else kind[0]
    return concept


def _as_resolver(resolve: Resolver | Mapping[str, str] | None) -> Resolver | None:
    if resolve is None or callable(resolve) and not isinstance(resolve, Mapping):
        return resolve
    return make_resolver(resolve)
