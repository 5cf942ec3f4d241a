"""``no_extrahepatic_disease`` — no disease outside the liver (criteria.md §3, §3a, §1b, §1d).

- ``not_met``: an active confirmed metastasis Condition outside the liver (undated ones count), or the most
  recent dated extrahepatic-disease staging Observation valued present (at any age).
- capped at ``indeterminate`` (§1b): a suspected extrahepatic metastasis; an active metastasis whose site cannot
  be mapped (C79.9, 128462008 without a mapped bodySite, the text safety net, conflicting sites); active
  intra-abdominal or unspecified nodal metastases (C77.2 / C77.9: regional nodes removed with the primary, or
  distant disease?); an undated staging ``present``; an unusable staging value on or after the latest usable one.
- ``met``: the most recent staging is valued absent and is within [staging_window_months] before ``as_of``
  (inclusive), and nothing above says otherwise.
- Else ``indeterminate``.
"""

from __future__ import annotations

from datetime import date

from .._domain import CriterionResult, MetastasisFact, PatientRecord, ProcedureFact, RuleSet, Source, Status
from ._attribution import net_view
from ._common import cite, counts_existence, counts_recency, months_back, result, undated_clause, unusable_clause, unusable_of

NAME = "no_extrahepatic_disease"
_MISSING = "an extrahepatic-disease staging Observation (milan-net extrahepatic-disease) valued absent"


def _cite_met(m: MetastasisFact) -> str:
    return f"{m.site_label} ({cite(m.source)})"


def _nodal_resections(m: MetastasisFact, procedures: list[ProcedureFact], as_of: date) -> list[ProcedureFact]:
    return [p for p in procedures if p.kind == "primary_resection" and m.source.reference in p.reason_references
            and counts_existence(p.source, as_of)]


def evaluate(record: PatientRecord, rules: RuleSet, as_of: date) -> CriterionResult:
    window = rules.staging_window_months
    view = net_view(record, rules, as_of)
    active = [m for m in view.metastases if m.active_on(as_of)]
    extra = [m for m in active if m.location == "extrahepatic" and not m.suspected]
    suspected = [m for m in active if m.location != "liver" and m.suspected]
    unknown_site = [m for m in active if m.location == "unspecified" and not m.suspected]
    nodal = [m for m in active if m.location == "review" and not m.suspected]

    staging = [s for s in record.staging if counts_recency(s.source, as_of)]
    latest = []
    latest_date = None
    if staging:
        latest_date = max(s.source.date for s in staging)  # type: ignore[type-var]
        latest = sorted((s for s in staging if s.source.date == latest_date), key=lambda s: s.source.reference)
    present = [s for s in latest if s.present]  # on the latest day, "present" wins over "absent"
    undated_present = [s for s in record.staging if s.source.date is None and s.present]
    bad_staging = [u for u in unusable_of(record, ("extrahepatic_staging",))
                   if u.date is None or (u.date <= as_of and (latest_date is None or u.date >= latest_date))]
    if any(u.date is not None and latest_date is not None and u.date > latest_date for u in bad_staging):
        present = []  # §1d: the latest staging cannot be read, so an older `present` no longer decides

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
        unusable_clause([u for u in unusable_of(record, ("extrahepatic_staging", "staging", "metastasis"))
                         if u not in bad_staging]),
        undated_clause([s.source for s in record.staging if s.source.date is None and not s.present],
                       "staging observations"),
    ]
    window_start = months_back(as_of, window)

    # §1b: what caps the result at indeterminate, each named
    caps: list[str] = []
    cap_evidence: list[Source] = []
    missing: list[str] = []
    if suspected:
        caps.append("suspected metastasis outside the liver " + ", ".join(
            f"{_cite_met(m)}, {m.verification}" for m in suspected) + ": confirm or refute")
        cap_evidence += [m.source for m in suspected]
        missing.append("confirmation or refutation of the suspected metastasis Condition(s) "
                       + ", ".join(m.source.reference for m in suspected))
    if unknown_site:
        caps.append("active metastasis of unknown site " + ", ".join(
            f"{m.source.value or m.source.reference} ({cite(m.source)})" for m in unknown_site))
        cap_evidence += [m.source for m in unknown_site]
        missing.append("the site of the metastasis Condition(s) " + ", ".join(m.source.reference for m in unknown_site)
                       + " (a site-specific code or a mapped bodySite)")
    if nodal:
        parts = []
        for m in nodal:
            named = _nodal_resections(m, record.procedures, as_of)
            text = f"{_cite_met(m)}: regional nodes removed with the primary, or distant disease? review"
            if named:
                text += "; named by the resection of " + ", ".join(
                    f"{p.source.date or 'undated'} ({p.source.reference})" for p in named
                ) + ": confirm removal and update its status"
            parts.append(text)
        caps.append("active nodal metastasis " + "; ".join(parts))
        cap_evidence += [m.source for m in nodal]
        missing.append("a clinician's review of the nodal metastasis Condition(s) " + ", ".join(
            m.source.reference for m in nodal) + " (resolved if removed with the primary)")
    if undated_present:
        caps.append("undated staging records disease outside the liver ("
                    + ", ".join(s.source.reference for s in undated_present) + ")")
        cap_evidence += [s.source for s in undated_present]
        missing.append("the date of the staging Observation(s) " + ", ".join(s.source.reference for s in undated_present))
    if bad_staging:
        caps.append("staging that cannot be read, as recent as the latest readable one: " + ", ".join(
            f"{u.reference} ({u.field}: {u.reason})" for u in bad_staging))
        missing.append("a readable value for the staging Observation(s) " + ", ".join(u.reference for u in bad_staging))
    if caps:
        text = "; ".join(caps)
        return result(NAME, Status.INDETERMINATE, "Not settled: " + text, evidence=cap_evidence,
                      missing=missing, notes=notes)

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
