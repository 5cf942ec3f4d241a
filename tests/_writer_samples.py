"""Hand-built Evaluations for the writer tests (no adapters or criteria needed)."""

from __future__ import annotations

import datetime as dt

from milan_fhir._criteria._subgroups import liver_metastasis, subgroups
from milan_fhir._evaluate import verdict as decide
from milan_fhir._domain import (
    CRITERIA,
    Caution,
    CriterionResult,
    Evaluation,
    GradeFact,
    Ignored,
    Ki67Fact,
    LesionSizeFact,
    LiverMetastasisCountFact,
    MetastasisFact,
    PatientFact,
    PartialDate,
    PatientRecord,
    ProcedureFact,
    Source,
    Status,
    Unusable,
    Verdict,
)

AS_OF = dt.date(2026, 1, 15)

#: one hand-made caution of each code (criteria.md §1c), with its evidence
CAUTIONS: dict[str, Caution] = {
    "deceased": Caution(
        code="deceased", reason="Patient deceased on 2025-12-01 (Patient/p1).",
        evidence=(Source(reference="Patient/p1", version="1", value="deceased 2025-12-01"),),
    ),
    "prior-liver-transplant": Caution(
        code="prior-liver-transplant",
        reason="Liver transplantation (CPT 47135) on 2019-04-02 (Procedure/lt1).",
        evidence=(Source(reference="Procedure/lt1", version="2", value="liver transplantation",
                         date=dt.date(2019, 4, 2)),),
    ),
    "no-liver-metastasis-record": Caution(
        code="no-liver-metastasis-record",
        reason="No active liver metastasis Condition and no liver burden above 0 % within 6 months.",
    ),
    "other-malignancy": Caution(
        code="other-malignancy",
        reason="Active other malignancy: prostate adenocarcinoma (Condition/pc1, 2024-06-01).",
        evidence=(Source(reference="Condition/pc1", version="1", value="prostate adenocarcinoma",
                         date=dt.date(2024, 6, 1)),),
    ),
    "prior-malignancy": Caution(
        code="prior-malignancy",
        reason="Prior malignancy: breast carcinoma (Condition/bc1, 2012-03-01), resolved.",
        evidence=(Source(reference="Condition/bc1", version="1", value="breast carcinoma, resolved",
                         date=dt.date(2012, 3, 1)),),
    ),
}


def src(ref: str, version: str | None = "1", value: str | None = None, date: dt.date | None = None) -> Source:
    return Source(reference=ref, version=version, value=value, date=date)


def record(patient: str = "Patient/p1", **facts) -> PatientRecord:
    rec = PatientRecord(patient=patient, **facts)
    return rec


def evaluation(
    *,
    patient: str = "Patient/p1",
    statuses: dict[str, Status] | None = None,
    verdict: Verdict | None = None,
    rule_set: str = "milan-net",
    record: PatientRecord | None = None,
    inputs: dict[str, str | None] | None = None,
    as_of: dt.date = AS_OF,
    cautions: tuple[Caution, ...] | list[Caution] = (),
) -> Evaluation:
    statuses = statuses or {}
    ki = src("Observation/k1", "3", "Ki-67 2 %", dt.date(2025, 3, 1))
    evidence = {
        "age": (src(patient, "1", "born 1970-05-02"),),
        "low_grade": (ki, ki),  # deliberately twice: evidence must be deduplicated
        "liver_burden": (src("Observation/lb1", "1", "liver burden 20 %", dt.date(2025, 10, 1)),),
        "primary_resected_portal": (
            src("Condition/prim", "2", "ileal NET (ICD-10-CM C7A.012)", dt.date(2024, 1, 5)),
            src("Procedure/res", None, "right hemicolectomy", dt.date(2024, 2, 1)),
        ),
        "stable_disease": (src("Observation/ds1", "1", "stable", dt.date(2025, 12, 1)),),
        "no_extrahepatic_disease": (src("Observation/st1", "1", "extrahepatic disease absent", dt.date(2025, 11, 1)),),
    }
    criteria = {}
    for name in CRITERIA:
        status = statuses.get(name, Status.MET)
        criteria[name] = CriterionResult(
            name=name,
            status=status,
            reason=f"{name} is {status} per the cited evidence.",
            evidence=evidence[name] if status != Status.INDETERMINATE else (),
            missing=("a recent measurement",) if status == Status.INDETERMINATE else (),
        )
    if verdict is None:
        verdict = decide(criteria, cautions)
    if inputs is None:
        inputs = {
            patient: "1",
            "Observation/k1": "3",
            "Observation/lb1": "1",
            "Condition/prim": "2",
            "Procedure/res": None,
            "Observation/ds1": "1",
            "Observation/st1": "1",
            "Condition/met1": "1",
        }
    return Evaluation(
        patient=patient,
        as_of=as_of,
        rule_set=rule_set,
        rule_set_version="1.0.0",
        mapping_version="milan-fhir-default@0.1.0",
        verdict=verdict,
        criteria=criteria,
        ignored=(Ignored(reference="Observation/old", reason="status preliminary"),),
        unusable=(Unusable(reference="Observation/k9", concept="ki67", field="valueString", reason="no % sign"),),
        inputs=inputs,
        cautions=tuple(cautions),
        subgroups=subgroups(record, as_of),
        liver_metastasis=liver_metastasis(record, as_of),
        record=record,
    )


def full_record(patient: str = "Patient/p1", *, grade: int = 1, count: int = 2, mm: float = 25.0,
                minor_resection: bool = True, ki67: float | None = None) -> PatientRecord:
    facts = dict(
        demographics=PatientFact(birth_date=PartialDate(year=1970, month=5, day=2), source=src(patient)),
        grades=[GradeFact(grade=grade, label=f"G{grade}", source=src("Observation/g1", "1", f"G{grade}", dt.date(2025, 3, 1)))],
        metastases=[
            MetastasisFact(site="liver", site_label="liver", location="liver", active=True,
                           source=src("Condition/met1", "1", "liver metastasis", dt.date(2024, 1, 5))),
        ],
        liver_metastasis_counts=[
            LiverMetastasisCountFact(count=count, source=src("Observation/cnt", "1", f"{count} liver metastases", dt.date(2025, 10, 1)))
        ],
        largest_liver_metastasis=[
            LesionSizeFact(mm=mm, source=src("Observation/size", "1", f"{mm:g} mm", dt.date(2025, 10, 1)))
        ],
        procedures=(
            [ProcedureFact(kind="liver_resection_minor", source=src("Procedure/hep", "1", "partial hepatectomy", dt.date(2024, 3, 1)))]
            if minor_resection else []
        ),
    )
    if ki67 is not None:
        facts["ki67"] = [Ki67Fact(percent=ki67, source=src("Observation/k1", "3", f"Ki-67 {ki67:g} %", dt.date(2025, 3, 1)))]
    return PatientRecord(patient=patient, **facts)
