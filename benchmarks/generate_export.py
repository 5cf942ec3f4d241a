"""Generate a synthetic FHIR Bulk Data export (NDJSON), deterministic from a seed.

    python benchmarks/generate_export.py OUT_DIR [--patients 2000] [--resources 200] [--net-fraction 0.05]
                                                 [--seed 1] [--scale 1] [--gzip] [--mixed] [--parts 1]

About ``--resources`` resources per patient; ``--net-fraction`` of the patients are NET patients with the
resources the Milan rules read (codes from mappings/codes.yaml: primary NET and liver metastasis Conditions,
Ki-67, liver burden, disease-status and staging Observations, a resection Procedure), in varied states so that
every verdict and every criterion outcome occurs. Everything else is realistic noise: vital signs, labs,
encounters, other conditions, medication requests. One NDJSON file per resource type (``--parts N`` splits each
into N files as Bulk exports do; ``--mixed`` writes all types into shuffled files; ``--gzip`` compresses).
``--scale K`` multiplies the patient count by K (the memory check uses 10).

Clinical dates are relative to ``AS_OF`` (2026-01-15): evaluate with ``--as-of 2026-01-15``. Same arguments,
same bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import random
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

AS_OF = dt.date(2026, 1, 15)
TYPES = ("Patient", "Condition", "Observation", "Procedure", "Encounter", "MedicationRequest")

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
MILAN = "http://milan-fhir.org/fhir/CodeSystem/milan-net"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
MORPH_EXT = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"

# Noise: (loinc, display, unit, low, high)
VITALS = [
    ("8867-4", "Heart rate", "/min", 55, 110),
    ("9279-1", "Respiratory rate", "/min", 12, 22),
    ("8310-5", "Body temperature", "Cel", 36.0, 38.2),
    ("29463-7", "Body weight", "kg", 45, 120),
    ("8302-2", "Body height", "cm", 150, 195),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18, 38),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 90, 100),
]
LABS = [
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 180),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 9, 17),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3, 12),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 120, 420),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 1.6),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 7, 80),
    ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 8, 70),
    ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", 0.2, 2.0),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 132, 146),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.3, 5.3),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.5, 9.5),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 120, 280),
]
OTHER_CONDITIONS = [
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
    ("M54.5", "Low back pain"),
    ("F32.9", "Major depressive disorder, single episode, unspecified"),
    ("N39.0", "Urinary tract infection, site not specified"),
]
MEDS = [
    ("197361", "Amlodipine 5 MG Oral Tablet"),
    ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    ("314076", "Lisinopril 10 MG Oral Tablet"),
    ("617312", "Atorvastatin 10 MG Oral Tablet"),
    ("198211", "Simvastatin 40 MG Oral Tablet"),
    ("313782", "Acetaminophen 325 MG Oral Tablet"),
]
ENCOUNTER_TYPES = [("185349003", "Encounter for check up"), ("390906007", "Follow-up encounter"),
                   ("50849002", "Emergency room admission"), ("185345009", "Encounter for symptom")]
FIRST = ["Anna", "Marco", "Giulia", "Luca", "Sara", "Paolo", "Elena", "Davide", "Chiara", "Matteo", "Laura", "Andrea"]
LAST = ["Rossi", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco", "Bruno", "Gallo", "Conti", "Esposito"]
CITIES = ["Milano", "Torino", "Bergamo", "Brescia", "Pavia", "Como", "Varese", "Monza"]

# NET primaries: (icd-10-cm code, display, resection cpt, resection display)
PRIMARIES = [
    ("C7A.012", "Malignant carcinoid tumor of the ileum", "44120", "Enterectomy, single resection and anastomosis"),
    ("C7A.012", "Malignant carcinoid tumor of the ileum", "44160", "Right hemicolectomy with removal of terminal ileum"),
    ("C7A.019", "Malignant carcinoid tumor of the small intestine, unspecified portion", "44120", "Enterectomy"),
    ("C25.4", "Malignant neoplasm of endocrine pancreas", "48150", "Pancreatoduodenectomy (Whipple)"),
    ("C7A.020", "Malignant carcinoid tumor of the appendix", "44950", "Appendectomy"),
    ("C7A.092", "Malignant carcinoid tumor of the stomach", "43631", "Distal gastrectomy with gastroduodenostomy"),
    ("C7A.026", "Malignant carcinoid tumor of the rectum", "45160", "Excision of rectal tumor by proctotomy"),
    ("C7A.090", "Malignant carcinoid tumor of the bronchus and lung", None, None),
    ("C7A.00", "Malignant carcinoid tumor of unspecified site", None, None),
]
PRIMARY_WEIGHTS = [30, 10, 8, 15, 6, 6, 8, 9, 8]


class Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def day(self, back_from: int, back_to: int) -> dt.date:
        """A date between ``back_to`` and ``back_from`` days before AS_OF."""
        return AS_OF - dt.timedelta(days=self.rng.randint(back_to, back_from))

    def stamp(self, d: dt.date) -> str:
        r = self.rng
        return f"{d.isoformat()}T{r.randint(7, 18):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}+01:00"


def _meta(g: Gen, d: dt.date) -> dict[str, Any]:
    return {"versionId": str(g.rng.randint(1, 3)), "lastUpdated": f"{d.isoformat()}T23:00:00.000+00:00"}


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _patient(g: Gen, pid: str, birth: dt.date) -> dict[str, Any]:
    r = g.rng
    gender = r.choice(["male", "female"])
    return {
        "resourceType": "Patient", "id": pid, "meta": _meta(g, AS_OF - dt.timedelta(days=400)),
        "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Synthetic patient {pid}</div>'},
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.2.9.4.3.2", "value": f"MRN{r.randint(10**7, 10**8 - 1)}"}],
        "name": [{"use": "official", "family": r.choice(LAST), "given": [r.choice(FIRST)]}],
        "telecom": [{"system": "phone", "value": f"+39 02 {r.randint(1000000, 9999999)}", "use": "home"}],
        "gender": gender, "birthDate": birth.isoformat(),
        "address": [{"line": [f"Via Roma {r.randint(1, 200)}"], "city": r.choice(CITIES), "country": "IT",
                     "postalCode": f"{r.randint(10000, 29999)}"}],
        "communication": [{"language": _cc("urn:ietf:bcp:47", "it", "Italian")}],
    }


def _encounter(g: Gen, pid: str, eid: str, d: dt.date) -> dict[str, Any]:
    code, disp = g.rng.choice(ENCOUNTER_TYPES)
    start = g.stamp(d)
    return {
        "resourceType": "Encounter", "id": eid, "meta": _meta(g, d), "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [_cc(SNOMED, code, disp)], "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start, "end": start},
        "serviceProvider": {"reference": "Organization/ospedale-1", "display": "Ospedale Maggiore"},
    }


def _noise_obs(g: Gen, pid: str, eid: str, d: dt.date) -> dict[str, Any]:
    r = g.rng
    vital = r.random() < 0.5
    code, disp, unit, lo, hi = r.choice(VITALS if vital else LABS)
    value = round(r.uniform(lo, hi), 1)
    cat = ("vital-signs", "Vital Signs") if vital else ("laboratory", "Laboratory")
    t = g.stamp(d)
    return {
        "resourceType": "Observation", "id": g.uid(), "meta": _meta(g, d), "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": cat[0], "display": cat[1]}]}],
        "code": _cc(LOINC, code, disp), "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"}, "effectiveDateTime": t, "issued": t.replace("+01:00", ".000+01:00"),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        **({} if vital else {
            "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                            "code": "N", "display": "Normal"}]}],
            "referenceRange": [{"low": {"value": lo, "unit": unit, "system": UCUM, "code": unit},
                                "high": {"value": hi, "unit": unit, "system": UCUM, "code": unit}}],
            "performer": [{"reference": "Organization/lab-1", "display": "Laboratorio Analisi"}],
        }),
    }


NOISE_PROCEDURES = [("36415", "Collection of venous blood by venipuncture"), ("45378", "Colonoscopy, diagnostic"),
                    ("93000", "Electrocardiogram, routine"), ("71046", "Radiologic examination, chest; 2 views")]


def _noise_procedure(g: Gen, pid: str, eid: str, d: dt.date) -> dict[str, Any]:
    code, disp = g.rng.choice(NOISE_PROCEDURES)
    return {
        "resourceType": "Procedure", "id": g.uid(), "meta": _meta(g, d), "status": "completed",
        "code": _cc(CPT, code, disp), "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"}, "performedDateTime": g.stamp(d),
    }


def _bp(g: Gen, pid: str, eid: str, d: dt.date) -> dict[str, Any]:
    r = g.rng
    t = g.stamp(d)
    return {
        "resourceType": "Observation", "id": g.uid(), "meta": _meta(g, d), "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": _cc(LOINC, "85354-9", "Blood pressure panel with all children optional"),
        "subject": {"reference": f"Patient/{pid}"}, "encounter": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": t, "issued": t,
        "component": [
            {"code": _cc(LOINC, "8480-6", "Systolic blood pressure"),
             "valueQuantity": {"value": r.randint(100, 170), "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}},
            {"code": _cc(LOINC, "8462-4", "Diastolic blood pressure"),
             "valueQuantity": {"value": r.randint(60, 100), "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}},
        ],
    }


def _other_condition(g: Gen, pid: str, d: dt.date) -> dict[str, Any]:
    code, disp = g.rng.choice(OTHER_CONDITIONS)
    return {
        "resourceType": "Condition", "id": g.uid(), "meta": _meta(g, d),
        "clinicalStatus": {"coding": [{"system": COND_CLIN, "code": g.rng.choice(["active", "resolved"])}]},
        "verificationStatus": {"coding": [{"system": COND_VER, "code": "confirmed"}]},
        "category": [{"coding": [{"system": COND_CAT, "code": "problem-list-item", "display": "Problem List Item"}]}],
        "code": _cc(ICD10, code, disp), "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": g.stamp(d), "recordedDate": g.stamp(d),
    }


def _med(g: Gen, pid: str, eid: str, d: dt.date) -> dict[str, Any]:
    code, disp = g.rng.choice(MEDS)
    return {
        "resourceType": "MedicationRequest", "id": g.uid(), "meta": _meta(g, d), "status": "active",
        "intent": "order", "medicationCodeableConcept": _cc(RXNORM, code, disp),
        "subject": {"reference": f"Patient/{pid}"}, "encounter": {"reference": f"Encounter/{eid}"},
        "authoredOn": g.stamp(d), "requester": {"reference": "Practitioner/dr-1", "display": "Dr. Verdi"},
        "dosageInstruction": [{"sequence": 1, "text": "1 tablet daily",
                               "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
    }


def _obs(g: Gen, pid: str, oid: str, d: dt.date | None, code: tuple[str, str, str], **value: Any) -> dict[str, Any]:
    system, c, disp = code
    out: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "meta": _meta(g, d or AS_OF), "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": "laboratory"}]}],
        "code": _cc(system, c, disp), "subject": {"reference": f"Patient/{pid}"},
    }
    if d is not None:
        out["effectiveDateTime"] = d.isoformat()
    out.update(value)
    return out


def _pct(v: float) -> dict[str, Any]:
    return {"valueQuantity": {"value": v, "unit": "%", "system": UCUM, "code": "%"}}


def net_resources(g: Gen, pid: str, good: bool) -> list[dict[str, Any]]:
    """The resources the rules read for one NET patient, in a varied (seeded) clinical state.

    ``good``: built to be within Milan (portal primary resected, low Ki-67, small burden, stable for 9-12
    months, recent negative staging); otherwise every element is drawn at random and any criterion may fail.
    """
    r = g.rng
    out: list[dict[str, Any]] = []
    code, disp, cpt, cpt_disp = r.choices(PRIMARIES[:6] if good else PRIMARIES, PRIMARY_WEIGHTS[:6] if good else PRIMARY_WEIGHTS)[0]
    diag = g.day(1400, 500)
    prim_id = f"{pid}-primary"
    out.append({
        "resourceType": "Condition", "id": prim_id, "meta": _meta(g, diag),
        "clinicalStatus": {"coding": [{"system": COND_CLIN, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": COND_VER, "code": "confirmed"}]},
        "category": [{"coding": [{"system": COND_CAT, "code": "encounter-diagnosis"}]}],
        "code": _cc(ICD10, code, disp), "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": diag.isoformat(),
        "extension": [{"url": MORPH_EXT, "valueCodeableConcept": _cc(ICDO3, "8240/3", "Carcinoid tumor, NOS")}],
    })
    out.append({
        "resourceType": "Condition", "id": f"{pid}-nelm", "meta": _meta(g, diag),
        "clinicalStatus": {"coding": [{"system": COND_CLIN, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": COND_VER, "code": "confirmed"}]},
        "code": _cc(ICD10, "C7B.02", "Secondary carcinoid tumors of liver"), "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": (diag + dt.timedelta(days=r.randint(0, 60))).isoformat(),
    })
    if not good and r.random() < 0.12:  # extrahepatic metastasis
        out.append({
            "resourceType": "Condition", "id": f"{pid}-bone", "meta": _meta(g, diag),
            "clinicalStatus": {"coding": [{"system": COND_CLIN, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": COND_VER, "code": "confirmed"}]},
            "code": _cc(ICD10, "C7B.03", "Secondary carcinoid tumors of bone"), "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": g.day(300, 30).isoformat(),
        })
    if cpt and (good or r.random() < 0.8):
        out.append({
            "resourceType": "Procedure", "id": f"{pid}-resection", "meta": _meta(g, diag), "status": "completed",
            "code": _cc(CPT, cpt, cpt_disp), "subject": {"reference": f"Patient/{pid}"},
            "performedDateTime": (diag + dt.timedelta(days=r.randint(20, 90))).isoformat(),
            "reasonReference": [{"reference": f"Condition/{prim_id}"}],
        })
    if good or r.random() < 0.9:  # Ki-67
        k = r.choice([1, 2, 3, 4, 5, 6, 8, 9] if good else [1, 2, 3, 4, 5, 6, 8, 9, 12, 15, 22])
        value = _pct(float(k)) if r.random() < 0.8 else {"valueString": f"{k}%" if k > 2 else "<2%"}
        out.append(_obs(g, pid, f"{pid}-ki67", diag + dt.timedelta(days=10),
                        (LOINC, "29593-1", "Ki-67 nuclear Ag [Presence] in Tissue by Immune stain"), **value))
    elif r.random() < 0.6:
        out.append(_obs(g, pid, f"{pid}-grade", diag + dt.timedelta(days=10), (LOINC, "21858-6", "Grade Cancer"),
                        valueCodeableConcept=_cc(SNOMED, r.choice(["1155708003", "1286893008"]), "grade")))
    if good or r.random() < 0.9:  # liver burden
        burden = r.choice([5, 10, 15, 20, 25, 30, 35, 40, 45] if good else [5, 10, 20, 30, 40, 45, 55, 60, 70])
        out.append(_obs(g, pid, f"{pid}-burden", g.day(200, 20),
                        (MILAN, "liver-tumor-burden", "Percentage of total liver volume involved by metastases"),
                        **_pct(float(burden))))
    trends = [("268910001", "improved"), ("359746009", "stable"), ("271299001", "worsened")]
    if good:
        n_status, start = r.choice([4, 5]), r.randint(300, 420)
        step = (start - r.randint(15, 60)) // (n_status - 1)
    else:
        n_status, start, step = r.choice([0, 1, 2, 3, 4, 5]), r.randint(30, 500), 90
    for i in range(n_status):
        d = AS_OF - dt.timedelta(days=max(5, start - i * step))
        t = trends[1] if good or r.random() < 0.75 else r.choice(trends)
        out.append(_obs(g, pid, f"{pid}-status-{i}", d, (LOINC, "97509-4", "Cancer disease status"),
                        valueCodeableConcept=_cc(SNOMED, t[0], t[1])))
    if good or r.random() < 0.85:
        present = not good and r.random() < 0.1
        out.append(_obs(g, pid, f"{pid}-staging", g.day(150, 10),
                        (MILAN, "extrahepatic-disease", "Disease outside the liver on staging"), valueBoolean=present))
    return out


def patient_resources(g: Gen, pid: str, n: int, net: bool) -> Iterator[dict[str, Any]]:
    r = g.rng
    good = net and r.random() < 0.35
    if not net:
        age_days = r.randint(30 * 365, 80 * 365)
    else:
        age_days = r.randint(35 * 365, 59 * 365) if good else r.randint(35 * 365, 68 * 365)
    yield _patient(g, pid, AS_OF - dt.timedelta(days=age_days))
    produced = 1
    if net:
        for res in net_resources(g, pid, good):
            produced += 1
            yield res
    for _ in range(r.randint(1, 3)):
        produced += 1
        yield _other_condition(g, pid, g.day(3000, 30))
    while produced < n:
        eid = g.uid()
        d = g.day(1800, 1)
        produced += 1
        yield _encounter(g, pid, eid, d)
        for _ in range(min(n - produced, r.randint(6, 14))):
            produced += 1
            x = r.random()
            if x < 0.12:
                yield _bp(g, pid, eid, d)
            elif x < 0.85:
                yield _noise_obs(g, pid, eid, d)
            elif x < 0.88:
                yield _noise_procedure(g, pid, eid, d)
            else:
                yield _med(g, pid, eid, d)


class _Sinks:
    def __init__(self, out: Path, gz: bool, mixed: bool, parts: int, seed: int) -> None:
        self.out, self.gz, self.mixed, self.parts = out, gz, mixed, parts
        self.rng = random.Random(seed + 7)
        self.files: dict[str, Any] = {}

    def _open(self, name: str) -> Any:
        f = self.files.get(name)
        if f is None:
            path = self.out / (name + (".ndjson.gz" if self.gz else ".ndjson"))
            f = gzip.open(path, "wb", compresslevel=1) if self.gz else open(path, "wb", buffering=1 << 20)
            self.files[name] = f
        return f

    def write(self, resource: dict[str, Any], patient_index: int) -> None:
        part = patient_index % self.parts
        if self.mixed:
            name = f"export-{self.rng.randrange(max(2, self.parts))}"
        else:
            name = resource["resourceType"] + (f"-{part + 1}" if self.parts > 1 else "")
        self._open(name).write(orjson.dumps(resource) + b"\n")

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def generate(out: str | Path, *, patients: int = 2000, resources: int = 200, net_fraction: float = 0.05,
             seed: int = 1, gz: bool = False, mixed: bool = False, parts: int = 1,
             progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write the export to ``out``; returns counts (patients, net_patients, resources)."""
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    g = Gen(seed)
    sinks = _Sinks(outp, gz, mixed, parts, seed)
    n_net = round(patients * net_fraction)
    net_set = set(random.Random(seed + 1).sample(range(patients), n_net))
    total = 0
    try:
        for i in range(patients):
            pid = f"p{seed:02d}-{i:07d}"
            n = max(2, int(g.rng.gauss(resources, resources * 0.15)))
            for res in patient_resources(g, pid, n, i in net_set):
                sinks.write(res, i)
                total += 1
            if progress and i % 1000 == 999:
                progress(i + 1)
    finally:
        sinks.close()
    return {"patients": patients, "net_patients": n_net, "resources": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--resources", type=int, default=200, help="about this many resources per patient")
    ap.add_argument("--net-fraction", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=int, default=1, help="multiply the patient count (memory check: 10)")
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--mixed", action="store_true", help="resource types mixed in shuffled files")
    ap.add_argument("--parts", type=int, default=1, help="files per resource type")
    a = ap.parse_args(argv)
    counts = generate(a.out, patients=a.patients * a.scale, resources=a.resources, net_fraction=a.net_fraction,
                      seed=a.seed, gz=a.gzip, mixed=a.mixed, parts=a.parts)
    print(f"{counts['patients']} patients ({counts['net_patients']} NET), {counts['resources']} resources -> {a.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
