"""Raw FHIR R4 dicts for black-box tests through ``milan_fhir.evaluate``: a complete eligible work-up (the
vignette 01 shape, as of 2026-06-30) and small constructors for the resources added to it.

Nothing here imports the library: these are plain JSON shapes, written the ways real systems write them.
"""

from __future__ import annotations

import copy
import datetime as dt

AS_OF = dt.date(2026, 6, 30)
PATIENT = "Patient/adv"

SNOMED = "http://snomed.info/sct"
SNOMED_OID = "urn:oid:2.16.840.1.113883.6.96"
LOINC = "http://loinc.org"
LOINC_OID = "urn:oid:2.16.840.1.113883.6.1"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10CM_OID = "urn:oid:2.16.840.1.113883.6.90"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
ICD10GM_DIMDI = "http://fhir.de/CodeSystem/dimdi/icd-10-gm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
ICDO3_OID = "urn:oid:2.16.840.1.113883.6.43.1"
CPT = "http://www.ama-assn.org/go/cpt"
OPS = "http://fhir.de/CodeSystem/bfarm/ops"
UCUM = "http://unitsofmeasure.org"
MILAN = "http://milan-fhir.org/fhir/CodeSystem/milan-net"
LOCAL = "https://ehr.example.org/fhir/CodeSystem/local"
MORPHOLOGY_EXT = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"
RELATED_EXT = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-related-condition"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

PRIMARY = "Condition/adv-primary"
NELM = "Condition/adv-nelm"


def concept(system: str, code: str, text: str | None = None) -> dict:
    out: dict = {"coding": [{"system": system, "code": code}]}
    if text:
        out["text"] = text
    return out


def pct(value: float) -> dict:
    return {"valueQuantity": {"value": value, "unit": "%", "system": UCUM, "code": "%"}}


def patient(**extra) -> dict:
    return {"resourceType": "Patient", "id": "adv", "meta": {"versionId": "1"}, "gender": "female",
            "birthDate": "1972-04-15", **extra}


def condition(rid: str, code: dict, onset: str | None = "2024-01-10", *, clinical: str | None = "active",
              verification: str | None = "confirmed", body: dict | None = None, extension: list | None = None,
              abatement: str | None = None) -> dict:
    res: dict = {"resourceType": "Condition", "id": rid, "meta": {"versionId": "1"}, "code": code,
                 "subject": {"reference": PATIENT}}
    if clinical:
        res["clinicalStatus"] = concept(CLINICAL, clinical)
    if verification:
        res["verificationStatus"] = concept(VERIFICATION, verification)
    if body:
        res["bodySite"] = [body]
    if extension:
        res["extension"] = extension
    if onset:
        res["onsetDateTime"] = onset
    if abatement:
        res["abatementDateTime"] = abatement
    return res


def observation(rid: str, code: dict, when: str | None, value: dict, *, focus: str | None = None,
                related: str | None = None, status: str = "final") -> dict:
    res: dict = {"resourceType": "Observation", "id": rid, "meta": {"versionId": "1"}, "status": status,
                 "code": code, "subject": {"reference": PATIENT}}
    if when:
        res["effectiveDateTime"] = when
    if focus:
        res["focus"] = [{"reference": focus}]
    if related:
        res["extension"] = [{"url": RELATED_EXT, "valueReference": {"reference": related}}]
    res.update(value)
    return res


def procedure(rid: str, code: dict, when: str | None, *, status: str = "completed",
              reason: str | None = None) -> dict:
    res: dict = {"resourceType": "Procedure", "id": rid, "meta": {"versionId": "1"}, "status": status,
                 "code": code, "subject": {"reference": PATIENT}}
    if when:
        res["performedDateTime"] = when
    if reason:
        res["reasonReference"] = [{"reference": reason}]
    return res


def ki67(rid: str, value: dict, when: str | None = "2024-02-12", **kw) -> dict:
    return observation(rid, concept(LOINC, "29593-1", "Ki-67"), when, value, **kw)


def status(rid: str, value_code: dict, when: str | None, **kw) -> dict:
    return observation(rid, concept(LOINC, "97509-4", "Cancer disease status"), when,
                       {"valueCodeableConcept": value_code}, **kw)


TREND = {"stable": "359746009", "improved": "268910001", "worsened": "271299001", "undetermined": "709137006"}


def eligible_work_up(*, link: bool = False) -> list[dict]:
    """Vignette 01's complete work-up for one patient: every criterion met as of 2026-06-30, no caution.
    ``link``: Ki-67 and disease status name the primary in ``focus`` (one status names the NELM through the
    mcode-related-condition extension instead)."""
    focus = PRIMARY if link else None
    out = [
        patient(),
        condition("adv-primary", concept(ICD10CM, "C7A.012")),
        condition("adv-nelm", concept(ICD10CM, "C7B.02")),
        ki67("adv-ki67", pct(3), focus=focus),
        procedure("adv-resection", concept(CPT, "44120"), "2024-02-05", reason=PRIMARY),
        observation("adv-burden", concept(MILAN, "liver-tumor-burden"), "2026-05-15", pct(25)),
        status("adv-status-1", concept(SNOMED, TREND["stable"]), "2025-06-01", focus=focus),
        status("adv-status-2", concept(SNOMED, TREND["stable"]), "2025-12-01",
               related=NELM if link else None),
        status("adv-status-3", concept(SNOMED, TREND["stable"]), "2026-06-01", focus=focus),
        observation("adv-staging", concept(MILAN, "extrahepatic-disease"), "2026-05-20", {"valueBoolean": False}),
    ]
    return copy.deepcopy(out)
