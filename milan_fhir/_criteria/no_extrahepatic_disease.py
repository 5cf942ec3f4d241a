"""``no_extrahepatic_disease`` — no disease outside the liver (criteria.md §3, §3a).

- ``not_met``: an active metastasis Condition outside the liver (undated ones count), or the most recent dated
  extrahepatic-disease staging Observation valued present (at any age).
- ``met``: the most recent staging is valued absent and is within [staging_window_months] before ``as_of``
  (inclusive), and nothing above says otherwise.
- Else ``indeterminate``.
"""

from __future__ import annotations

from datetime import date

from .._domain import CriterionResult, MetastasisFact, PatientRecord, RuleSet, Source, Status
from ._common import cite, counts_existence, counts_recency, months_back, result, undated_clause, unusable_clause, unusable_of

NAME = "no_extrahepatic_disease"
_MISSING = "an extrahepatic-disease staging Observation (milan-net extrahepatic-disease) valued absent"


def _cite_met(m: MetastasisFact) -> str:
    return f"{m.site_label} ({cite(m.source)})"


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    window = rules.staging_window_months
    extra = [
        m for m in record.metastases
        if m.location == "extrahepatic" and m.active and counts_existence(m.source, as_of)
    ]
    staging = [s for s in record.staging if counts_recency(s.source, as_of)]
    latest = []
    if staging:
        latest_date = max(s.source.date for s in staging)  # type: ignore[type-var]
        latest = sorted((s for s in staging if s.source.date == latest_date), key=lambda s: s.source.reference)
    present = [s for s in latest if s.present]  # on the latest day, "present" wins over "absent"

    if extra or present:
        clauses = []
        evidence: list[Source] = []
        if extra:
            clauses.append("Active metastasis outside the liver: " + ", ".join(_cite_met(m) for m in extra))
            evidence += [m.source for m in extra]
        if present:
            clauses.append(
                "the most recent staging records disease outside the liver ("
                + ", ".join(cite(s.source) for s in present) + ")"
            )
            evidence += [s.source for s in present]
        reason = "; ".join(clauses)
        return result(NAME, Status.NOT_MET, reason[0].upper() + reason[1:], evidence)

    notes = [
        unusable_clause(unusable_of(record, ("extrahepatic_staging", "staging", "metastasis"))),
        undated_clause([s.source for s in record.staging if s.source.date is None], "staging observations"),
    ]
    window_start = months_back(as_of, window)
    if latest:
        newest = latest[0]
        assert newest.source.date is not None
        if newest.source.date >= window_start:
            return result(
                NAME,
                Status.MET,
                f"The most recent staging ({cite(newest.source)}, within {window} months before {as_of}) "
                "records no disease outside the liver, and no active metastasis outside the liver is recorded",
                evidence=[s.source for s in latest],
            )
        return result(
            NAME,
            Status.INDETERMINATE,
            f"No recent staging evidence that disease is confined to the liver: the most recent staging "
            f"({cite(newest.source)}) is more than {window} months before {as_of}",
            evidence=[s.source for s in latest],
            missing=(f"{_MISSING}, dated on or after {window_start}",),
            notes=notes,
        )
    return result(
        NAME,
        Status.INDETERMINATE,
        "No recent staging evidence that disease is confined to the liver: no dated extrahepatic-disease "
        f"staging on or before {as_of} is recorded",
        missing=(f"{_MISSING}, dated between {window_start} and {as_of}",),
        notes=notes,
    )
