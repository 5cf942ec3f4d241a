"""What adapting one resource yields, and the small context each resource adapter fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .._domain import Ignored, PatientRecord, Source, Unusable
from .._mappings import Mappings
from ._values import Resolver

__all__ = ["Adapted", "Ctx", "version_of", "settle_pending"]


@dataclass(slots=True)
class Adapted:
    """One resource read for one patient: the facts to add to their record, or why it does not count.

    ``facts`` are ``(PatientRecord field, fact)`` pairs (``"demographics"`` for the Patient itself).
    ``counted`` False means the resource was read but does not count (it is in ``ignored``).
    """

    patient: str  # "Patient/123"
    reference: str  # "Observation/k1"
    version: str | None  # meta.versionId
    concept: str  # what it was recognised as: "ki67", "primary", "metastasis", "patient", ...
    facts: list[tuple[str, Any]] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    unusable: list[Unusable] = field(default_factory=list)
    counted: bool = True
    #: the resource failed validation (reported as a problem): these are only the facts that cap a criterion
    invalid: bool = False
    #: facts that count only if the record holds a liver metastasis Condition among the references
    #: (a tumour size whose ``focus`` is a Condition): settled by :func:`settle_pending` once all is read
    pending: list[tuple[str, Any, tuple[str, ...]]] = field(default_factory=list)
    #: a Patient read with ``defer_patient`` (the cohort engines): the fields R4B validation must still accept
    #: (:func:`milan_fhir._adapters.deferred_fault`) before these facts may be applied
    check: dict[str, Any] | None = None

    def apply(self, record: PatientRecord) -> None:
        """Add everything to ``record`` (which must be this patient's); ``pending`` facts are not added."""
        for name, fact in self.facts:
            if name == "demographics":
                record.demographics = fact
            else:
                getattr(record, name).append(fact)
        record.ignored.extend(self.ignored)
        record.unusable.extend(self.unusable)
        if self.counted and not self.pending:
            record.inputs[self.reference] = self.version


def settle_pending(record: PatientRecord, pending: list[Adapted]) -> None:
    """Add the pending facts whose focus is a liver metastasis of ``record``; the others go to ``ignored``."""
    liver = {m.source.reference for m in record.metastases if m.location == "liver"}
    for adapted in pending:
        for name, fact, focus in adapted.pending:
            if liver.intersection(focus):
                getattr(record, name).append(fact)
                record.inputs[adapted.reference] = adapted.version
            else:
                reason = f"its focus ({', '.join(focus)}) is not a liver metastasis Condition of this patient"
                record.ignored.append(Ignored(reference=adapted.reference, reason=reason))


@dataclass(slots=True)
class Ctx:
    """Everything one resource adapter needs, and where it puts what it finds."""

    resource: dict[str, Any]
    mappings: Mappings
    reference: str
    version: str | None
    resolve: Resolver | None
    out: Adapted

    def source(self, value: str | None, when: date | None, unverified: tuple[str, ...] = ()) -> Source:
        return Source(
            reference=self.reference, version=self.version, value=value, date=when, unverified_codes=unverified
        )

    def add(self, name: str, fact: Any) -> None:
        self.out.facts.append((name, fact))

    def ignore(self, reason: str) -> None:
        self.out.ignored.append(Ignored(reference=self.reference, reason=reason))
        self.out.counted = False

    def unusable(
        self, concept: str, field: str, reason: str, *, when: date | None = None, links: tuple[str, ...] = ()
    ) -> None:
        self.out.unusable.append(
            Unusable(reference=self.reference, concept=concept, field=field, reason=reason, date=when, links=links)
        )


def version_of(resource: dict[str, Any]) -> str | None:
    meta = resource.get("meta")
    v = meta.get("versionId") if isinstance(meta, dict) else None
    return str(v) if isinstance(v, (str, int)) and str(v) else None
