"""The version-neutral domain model: facts read from FHIR, rule-set parameters, and results.

Nothing here knows FHIR or HTTP. Adapters (``milan_fhir._adapters``) turn FHIR resources into these facts;
criteria (``milan_fhir._criteria``) are pure functions over them; writers turn results into FHIR/JSON/tables.

Every fact carries a :class:`Source`: the resource it came from (``Type/id`` and ``meta.versionId``), the value
used, in words, and its clinical date (UTC). A fact whose ``source.date`` is ``None`` had no usable date.
"""

from __future__ import annotations

import calendar
import datetime as dt
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Status",
    "Verdict",
    "Source",
    "PartialDate",
    "PatientFact",
    "Ki67Fact",
    "GradeFact",
    "LiverBurdenFact",
    "DiseaseStatusFact",
    "StagingFact",
    "MetastasisFact",
    "PrimaryFact",
    "ProcedureFact",
    "LiverMetastasisCountFact",
    "LesionSizeFact",
    "MalignancyFact",
    "MorphologyObservationFact",
    "TransplantStatusFact",
    "Ignored",
    "Unusable",
    "PatientRecord",
    "RuleSet",
    "CriterionResult",
    "Evaluation",
    "Caution",
    "CAUTION_CODES",
    "EXCLUDING_CAUTIONS",
    "CAPPING_CAUTIONS",
    "CRITERIA",
]

#: The criteria, in the order results show them (criteria.md §3).
CRITERIA: tuple[str, ...] = (
    "age",
    "low_grade",
    "liver_burden",
    "primary_resected_portal",
    "stable_disease",
    "no_extrahepatic_disease",
)


#: The prerequisites of criteria.md §1c, in the order results show them.
CAUTION_CODES: tuple[str, ...] = (
    "deceased",
    "prior-liver-transplant",
    "no-liver-metastasis-record",
    "other-malignancy",
    "prior-malignancy",
)
#: cautions that make the verdict ``ineligible`` (criteria.md §1c)
EXCLUDING_CAUTIONS: frozenset[str] = frozenset({"deceased", "prior-liver-transplant"})
#: cautions that make the verdict at most ``indeterminate`` (never ``eligible``)
CAPPING_CAUTIONS: frozenset[str] = frozenset({"no-liver-metastasis-record", "other-malignancy"})


class Status(StrEnum):
    MET = "met"
    NOT_MET = "not_met"
    INDETERMINATE = "indeterminate"


class Verdict(StrEnum):
    ELIGIBLE = "eligible"
    INELIGIBLE = "ineligible"
    INDETERMINATE = "indeterminate"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Frozen):
    """Where a fact came from."""

    reference: str  # "Observation/abc"
    version: str | None = None  # meta.versionId, when known
    value: str | None = None  # the value used, as a clinician reads it: "Ki-67 12 %"
    date: dt.date | None = None  # clinical date, UTC (criteria.md §1 / §3a)
    unverified_codes: tuple[str, ...] = ()  # codes matched that the mappings flag unverified (level U)

    @property
    def versioned_reference(self) -> str:
        return f"{self.reference}/_history/{self.version}" if self.version else self.reference


class PartialDate(_Frozen):
    """A FHIR date that may be partial: ``1965``, ``1965-03`` or ``1965-03-14``."""

    year: int
    month: int | None = None
    day: int | None = None

    def earliest(self) -> dt.date:
        return dt.date(self.year, self.month or 1, self.day or 1)

    def latest(self) -> dt.date:
        if self.month is None:
            return dt.date(self.year, 12, 31)
        if self.day is None:
            return dt.date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])
        return dt.date(self.year, self.month, self.day)

    def __str__(self) -> str:
        if self.month is None:
            return f"{self.year:04d}"
        if self.day is None:
            return f"{self.year:04d}-{self.month:02d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


Comparator = Literal["<", "<=", ">", ">="]


class PatientFact(_Frozen):
    birth_date: PartialDate | None = None
    #: Patient.deceasedBoolean true (True), false (False) or absent (None)
    deceased: bool | None = None
    #: Patient.deceasedDateTime as a UTC date (the patient died on or before it)
    deceased_date: dt.date | None = None
    #: deceasedDateTime present but not a date: read as deceased (criteria.md §1c, unknown is not safe)
    deceased_unreadable: str | None = None
    source: Source


class Ki67Fact(_Frozen):
    """A usable Ki-67 value in percent. ``comparator`` set means a bound (``<2%``), not an exact value."""

    percent: float
    comparator: Comparator | None = None
    #: Conditions named by ``focus`` or the mCODE related-condition extension (criteria.md §1a)
    links: tuple[str, ...] = ()
    #: the code counts only when linked to the NET (LOINC 85330-9, Ki-67 in a breast cancer specimen)
    requires_link: bool = False
    source: Source


class GradeFact(_Frozen):
    """Histologic grade evidence: 1, 2 or 3 (3 = G3 or any high-grade / carcinoma evidence).

    ``at_least`` marks a finding that means "this grade or higher" (ICD-O-3 8249/3: G2 or G3); how a rule set
    reads it is its ``open_grade_reading`` parameter. A grade carried by a Condition has that Condition as
    ``source.reference``; one from an Observation carries the Observation's ``links`` (criteria.md §1a).
    """

    grade: Literal[1, 2, 3]
    kind: Literal["grade", "morphology", "diagnosis"] = "grade"
    label: str  # "G2", "neuroendocrine carcinoma (ICD-O-3 8246/3)"
    at_least: bool = False
    links: tuple[str, ...] = ()
    source: Source


class LiverBurdenFact(_Frozen):
    percent: float
    comparator: Comparator | None = None
    source: Source


class DiseaseStatusFact(_Frozen):
    trend: Literal["improved", "stable", "worsened", "undetermined"]
    links: tuple[str, ...] = ()
    #: the latest day a partial date allows (``2025-06`` -> 2025-06-30); None: as ``source.date``
    latest_date: dt.date | None = None
    source: Source


class StagingFact(_Frozen):
    """Extrahepatic-disease staging: ``present`` True = disease outside the liver."""

    present: bool
    source: Source


class _ConditionState(_Frozen):
    """How a Condition stands: ``active`` is its clinicalStatus; ``abatement`` (a date) makes it active on any
    ``as_of`` before it (criteria.md §1 v2); ``suspected``: provisional, differential, unconfirmed (or ICD-10-GM
    certainty V)."""

    active: bool = True
    abatement: dt.date | None = None
    suspected: bool = False
    verification: str | None = None  # the verificationStatus code, for reasons ("differential")

    def active_on(self, as_of: dt.date) -> bool:
        return self.active or (self.abatement is not None and self.abatement > as_of)


class MetastasisFact(_ConditionState):
    """A metastasis Condition. ``site`` is a key of sites.yaml; ``None`` when unspecified.

    ``location``: ``liver``; ``extrahepatic``; ``review`` (intra-abdominal or unspecified nodes, C77.2 / C77.9:
    regional nodes removed with the primary, or distant disease?); ``unspecified`` (the site cannot be mapped:
    caps ``no_extrahepatic_disease``, criteria.md §1b). ``text_only``: recognised by the text safety net only.
    """

    site: str | None
    site_label: str
    location: Literal["liver", "extrahepatic", "review", "unspecified"]
    text_only: bool = False
    #: a NET-morphology Condition sited in the liver read as a liver-metastasis record (criteria.md §1d)
    high_grade: bool = False
    source: Source


class PrimaryFact(_ConditionState):
    """A primary NET Condition and its site (sites.yaml).

    ``site_path`` is the site and its ancestors on the site tree (``("ileum", "small_intestine")``): two sites
    match when one is on the other's path. ``carcinoma``: a neuroendocrine carcinoma morphology or C7A.1 (part
    of the NET only as criteria.md §1d says).
    """

    site: str  # sites.yaml key ("ileum", "rectum", "unknown_primary", "unreadable", ...)
    site_label: str
    group: str | None = None  # v1 anatomical group (kept for readers; matching uses site_path)
    drainage: Literal["portal", "systemic", "review", "unknown"]
    note: str | None = None  # why a `review` site needs review
    site_path: tuple[str, ...] = ()
    carcinoma: bool = False
    source: Source


class MalignancyFact(_ConditionState):
    """A Condition coded as a malignant neoplasm that is neither a primary NET nor a metastasis by its own codes
    (criteria.md §1a "other malignancy"), or a personal history of one (``history``: ICD-10 Z85).

    ``kind``: ``site_code`` (an ICD-10 site code without NET morphology: may be the NET primary recorded again,
    or another cancer), ``generic`` (a generic cancer code), ``morphology`` (a malignant non-NET morphology),
    ``code`` (another malignant-neoplasm code), ``text`` (the text safety net), ``history`` (Z85).
    ``has_morphology``: a non-NET malignant morphology is recorded (then it is certainly another cancer). The
    site fields say where it is, for "the same tumour twice" and for promotion to a primary NET when a linked
    morphology Observation names a NET morphology (criteria.md §1d, codes.md).
    """

    kind: Literal["site_code", "generic", "morphology", "code", "text", "history"]
    label: str
    has_morphology: bool = False
    site: str | None = None
    site_label: str = "site not recorded"
    drainage: Literal["portal", "systemic", "review", "unknown"] = "unknown"
    note: str | None = None
    site_path: tuple[str, ...] = ()
    source: Source


class MorphologyObservationFact(_Frozen):
    """A morphology Observation (LOINC 59847-4, ICD-O-3 histology and behaviour) and what it names."""

    net: bool  # a NET morphology (codes.md)
    carcinoma: bool = False  # a neuroendocrine carcinoma morphology
    label: str
    links: tuple[str, ...] = ()
    source: Source


class TransplantStatusFact(_Frozen):
    """A Condition coded as liver transplant status (ICD-10 Z94.4): ``prior-liver-transplant`` (criteria.md §1c)."""

    label: str
    source: Source


class ProcedureFact(_Frozen):
    """A completed Procedure. For a primary resection: the sites its code removes and its bodySite's sites, each
    as a site path (the site and its ancestors on the site tree), what it was done for (``reason_references``:
    resolved ``Type/id``, or ``unresolved:<text>``), and the labels of its ``reasonCode`` codings that are not
    codes of the NET (``other_reason_codes``)."""

    kind: Literal["primary_resection", "liver_resection_minor", "liver_resection_major", "liver_transplant"]
    code_groups: tuple[str, ...] = ()  # v1 anatomical groups (kept for readers)
    body_site_groups: tuple[str, ...] = ()  # v1 anatomical groups (kept for readers)
    code_site_paths: tuple[tuple[str, ...], ...] = ()
    body_site_paths: tuple[tuple[str, ...], ...] = ()
    code_site_labels: tuple[str, ...] = ()
    body_site_labels: tuple[str, ...] = ()
    reason_references: tuple[str, ...] = ()
    other_reason_codes: tuple[str, ...] = ()
    source: Source


class LiverMetastasisCountFact(_Frozen):
    count: int
    source: Source


class LesionSizeFact(_Frozen):
    """Largest liver metastasis, in millimetres."""

    mm: float
    source: Source


class Ignored(_Frozen):
    """A resource read but not counted (criteria.md §1: status, verification, subject), and why."""

    reference: str
    reason: str


class Unusable(_Frozen):
    """A resource that counts but whose value could not be used (an odd unit, text without %)."""

    reference: str
    concept: str  # "ki67", "liver_burden", ...
    field: str  # "valueString"
    reason: str
    #: clinical date of the resource (recency rules: an unusable value newer than the latest usable one caps)
    date: dt.date | None = None
    #: Conditions its focus / related-condition names (criteria.md §1a)
    links: tuple[str, ...] = ()


class PatientRecord(BaseModel):
    """Everything the adapters found for one patient."""

    patient: str  # "Patient/123"
    demographics: PatientFact | None = None  # None: no Patient resource was given
    ki67: list[Ki67Fact] = Field(default_factory=list)
    grades: list[GradeFact] = Field(default_factory=list)
    liver_burden: list[LiverBurdenFact] = Field(default_factory=list)
    disease_status: list[DiseaseStatusFact] = Field(default_factory=list)
    staging: list[StagingFact] = Field(default_factory=list)
    metastases: list[MetastasisFact] = Field(default_factory=list)
    primaries: list[PrimaryFact] = Field(default_factory=list)
    procedures: list[ProcedureFact] = Field(default_factory=list)
    liver_metastasis_counts: list[LiverMetastasisCountFact] = Field(default_factory=list)
    largest_liver_metastasis: list[LesionSizeFact] = Field(default_factory=list)
    #: other malignancies and personal histories of malignancy (criteria.md §1a, §1c)
    malignancies: list[MalignancyFact] = Field(default_factory=list)
    morphology_observations: list[MorphologyObservationFact] = Field(default_factory=list)
    transplant_status: list[TransplantStatusFact] = Field(default_factory=list)
    ignored: list[Ignored] = Field(default_factory=list)
    unusable: list[Unusable] = Field(default_factory=list)
    #: every resource that was read for this patient and counts, "Type/id" -> versionId (or None);
    #: the input fingerprint of a RiskAssessment is made from this
    inputs: dict[str, str | None] = Field(default_factory=dict)


class RuleSet(_Frozen):
    """Parameters of one rule set (mappings/rule-sets.yaml)."""

    name: str
    version: str
    title: str
    source: str
    age_max_years: int
    low_grade_mode: Literal["ki67", "grade"]
    ki67_limit_percent: float
    grade_ki67_cutoffs: tuple[float, float]
    liver_burden_limit_percent: float
    liver_burden_inclusive: bool
    stable_months: int
    status_stale_months: int
    staging_window_months: int
    #: (v2) the latest liver burden must lie within this many months before as_of
    burden_window_months: int = 6
    #: (v2) a resection more than this many months before the primary's clinical time does not count
    resection_lead_months: int = 6
    #: (v2) an unlinked value dated more than this before the NET's earliest record is ambiguous
    attribution_lead_months: int = 6
    #: (v2) how a "this grade or higher" finding (ICD-O-3 8249/3: G2 or G3) reads: ``exact`` as that grade,
    #: ``open`` settled only together with an explicit grade or a Ki-67 (criteria.md §3, §3a)
    open_grade_reading: Literal["exact", "open"] = "exact"


class CriterionResult(_Frozen):
    name: str
    status: Status
    reason: str  # one sentence a clinician can read, citing the source of every number
    evidence: tuple[Source, ...] = ()  # every resource that decided it, with the value used
    missing: tuple[str, ...] = ()  # what data would settle it (when indeterminate)


class Caution(_Frozen):
    """A failed prerequisite of criteria.md §1c: ``code`` is one of :data:`CAUTION_CODES`."""

    code: str
    reason: str  # one sentence a clinician can read, citing its sources
    evidence: tuple[Source, ...] = ()


class Evaluation(_Frozen):
    """The result for one patient under one rule set, as of one date."""

    patient: str
    as_of: dt.date
    rule_set: str
    rule_set_version: str
    mapping_version: str
    verdict: Verdict
    criteria: dict[str, CriterionResult]
    ignored: tuple[Ignored, ...] = ()
    unusable: tuple[Unusable, ...] = ()
    inputs: dict[str, str | None] = Field(default_factory=dict)
    #: failed prerequisites (criteria.md §1c), in the order of CAUTION_CODES; always present, possibly empty
    cautions: tuple[Caution, ...] = ()
    #: literature subgroups the data shows (keys of literature.yaml ``when``), each with the phrase citing the
    #: evidence that shows it; decided in evaluation, writers only shape them
    subgroups: dict[str, str] = Field(default_factory=dict)
    #: the liver metastasis the result names as its condition (the RiskAssessment's ``condition``); decided in
    #: evaluation, writers only cite it
    liver_metastasis: Source | None = None
    record: PatientRecord | None = None  # the facts behind it (their versions, for fingerprints and Provenance)
