"""FHIR R4 output: the RiskAssessment (criteria.md §5), its Provenance, and the conformance resources we ship.

This is the only module of the package that builds FHIR resources. Each resource is built as a plain dict (the
key order a person reads) and checked against the ``fhir.resources.R4B`` model before it is returned.

Identity: the RiskAssessment's ``identifier`` and ``id`` are deterministic from (patient, rule set), so a server
holds one current assessment per patient and rule set and its history is the server's version history. The
``input-fingerprint`` extension records a hash of the inputs (resources and their versions, mappings, rule set) and
of the result (verdict, statuses, cautions, shown literature subgroups, software version), but not the as-of date:
re-running with unchanged inputs and an unchanged result gives the same fingerprint whatever the day, and a writer
skips the update; a result that changed with time (a value gone stale) changes it (criteria.md §5, v2).

Cautions (criteria.md §1c) appear in the narrative and as ``caution`` extensions beside the per-criterion
``criterion-result`` extensions on ``prediction[0].outcome``. Literature figures appear only for an ``eligible``
verdict; an informational caution (``prior-malignancy``) is named in their rationale.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import uuid
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

import orjson

from .._domain import Caution, Evaluation, Source, Verdict
from .._mappings import Mappings, Prediction
from .._runtime import software_version
from ._words import (
    CAUTION_EFFECTS,
    STATUS_WORDS,
    VERDICT_DISPLAY,
    caution_effect,
    caution_label,
    criterion_label,
    ordered_cautions,
    ordered_criteria,
)

__all__ = [
    "CANONICAL",
    "PROFILE_URL",
    "CRITERION_RESULT_URL",
    "CAUTION_URL",
    "INPUT_FINGERPRINT_URL",
    "RULE_SET_SYSTEM",
    "VERDICT_SYSTEM",
    "IDENTIFIER_SYSTEM",
    "risk_assessment",
    "provenance",
    "fingerprint",
    "identifier_value",
    "resource_id",
    "read_fingerprint",
    "structure_definitions",
    "code_systems",
    "conformance_resources",
]

CANONICAL = "http://milan-fhir.org/fhir"
_SD = f"{CANONICAL}/StructureDefinition/"
PROFILE_URL = _SD + "milan-risk-assessment"
CRITERION_RESULT_URL = _SD + "criterion-result"
CAUTION_URL = _SD + "caution"
INPUT_FINGERPRINT_URL = _SD + "input-fingerprint"
RULE_SET_SYSTEM = f"{CANONICAL}/CodeSystem/milan-rule-set"
VERDICT_SYSTEM = f"{CANONICAL}/CodeSystem/milan-net"
IDENTIFIER_SYSTEM = f"{CANONICAL}/NamingSystem/risk-assessment"
UCUM = "http://unitsofmeasure.org"
_PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"



class FhirBuildError(RuntimeError):
    """The writer built a resource the R4B model refuses: a bug in milan-fhir, never the user's input."""


# ---------------------------------------------------------------------------------------------- identity
def identifier_value(patient: str, rule_set: str) -> str:
    """The RiskAssessment identifier value: a UUID v5 of (patient, rule set)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{IDENTIFIER_SYSTEM}|{patient}|{rule_set}"))


def resource_id(patient: str, rule_set: str) -> str:
    """The RiskAssessment logical id: ``milan-`` + 40 hex characters of a hash of (patient, rule set)."""
    digest = hashlib.sha256(f"{patient}|{rule_set}".encode()).hexdigest()
    return f"milan-{digest[:40]}"


def _inputs(ev: Evaluation) -> dict[str, str | None]:
    if ev.inputs:
        return dict(ev.inputs)
    if ev.record is not None:
        return dict(ev.record.inputs)
    return {}


@lru_cache(maxsize=1)
def _installed_version() -> str:
    """The software version the fingerprint records (looked up once per process: one RA per patient)."""
    return software_version()


def fingerprint(ev: Evaluation, mappings: Mappings, *, software_version: str | None = None) -> str:
    """``sha256:<hex>`` over the inputs and the result (criteria.md §5, v2).

    Inputs: every input resource with its version, the mappings (content and version), the rule set and its
    version. Result: the verdict, every criterion's status, every caution (code and evidence), the literature
    subgroups shown (eligible only) and the software version. The as-of date is left out, and so are the reason
    texts (they quote the day, ages, durations): an unchanged patient with an unchanged result re-evaluated any
    day gives the same fingerprint, so a re-run writes nothing; a result that changed with time (a value gone
    stale, an age past the limit) changes it.
    """
    h = hashlib.sha256()

    def line(*parts: object) -> None:
        h.update(("\x1f".join("" if p is None else str(p) for p in parts) + "\n").encode())

    line("patient", ev.patient)
    for ref, version in sorted(_inputs(ev).items()):
        line("input", ref, version)
    line("mappings", mappings.fingerprint())
    line("mapping_version", ev.mapping_version)
    line("rule_set", ev.rule_set, ev.rule_set_version)
    line("software", software_version if software_version is not None else _installed_version())
    line("verdict", str(ev.verdict))
    for name in _criterion_names(ev):
        line("criterion", name, str(ev.criteria[name].status))
    for c in ordered_cautions(ev.cautions):
        line("caution", c.code, *sorted({src.reference for src in c.evidence}))
    if ev.verdict == Verdict.ELIGIBLE:
        for key in sorted(ev.subgroups):
            line("subgroup", key)
    return f"sha256:{h.hexdigest()}"


def read_fingerprint(resource: dict[str, Any]) -> str | None:
    """The input fingerprint recorded in a RiskAssessment (e.g. one read back from a server), or None."""
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == INPUT_FINGERPRINT_URL:
            value = ext.get("valueString")
            return value if isinstance(value, str) else None
    return None


# ---------------------------------------------------------------------------------------------- helpers
def _criterion_names(ev: Evaluation) -> list[str]:
    return ordered_criteria(ev.criteria)


def _versioned(ref: str, version: str | None) -> str:
    return f"{ref}/_history/{version}" if version else ref


def _evidence_sources(ev: Evaluation) -> list[Source]:
    """Every evidence source of every caution and criterion, once per reference, cautions first, in order."""
    seen: dict[str, Source] = {}
    groups = [c.evidence for c in ordered_cautions(ev.cautions)]
    groups += [ev.criteria[name].evidence for name in _criterion_names(ev)]
    for evidence in groups:
        for src in evidence:
            if src.reference not in seen or (src.version and not seen[src.reference].version):
                seen[src.reference] = src
    return list(seen.values())


def _version_of(ev: Evaluation, src: Source) -> str | None:
    return src.version or _inputs(ev).get(src.reference)


def _reference(ev: Evaluation, src: Source, *, display: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": _versioned(src.reference, _version_of(ev, src))}
    if display and src.value:
        out["display"] = src.value
    return out


def _evidence_parts(ev: Evaluation, sources: Iterable[Source]) -> list[dict[str, Any]]:
    """One ``evidence`` part per distinct reference, in order (an extension of the criterion or the caution)."""
    seen: set[str] = set()
    parts: list[dict[str, Any]] = []
    for src in sources:
        if src.reference not in seen:
            seen.add(src.reference)
            parts.append({"url": "evidence", "valueReference": _reference(ev, src)})
    return parts


def _criterion_extension(ev: Evaluation, name: str) -> dict[str, Any]:
    res = ev.criteria[name]
    parts: list[dict[str, Any]] = [
        {"url": "name", "valueCode": name},
        {"url": "status", "valueCode": str(res.status)},
        {"url": "reason", "valueString": res.reason},
    ]
    parts += _evidence_parts(ev, res.evidence)
    for m in res.missing:
        parts.append({"url": "missing", "valueString": m})
    return {"url": CRITERION_RESULT_URL, "extension": parts}


def _caution_extension(ev: Evaluation, c: Caution) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "code", "valueCode": c.code},
        {"url": "reason", "valueString": c.reason},
    ]
    parts += _evidence_parts(ev, c.evidence)
    return {"url": CAUTION_URL, "extension": parts}


def _beside(cautions: list[Caution]) -> str:
    """The informational cautions named beside literature figures (criteria.md §5: prior-malignancy)."""
    return " ".join(f"Caution {c.code}: {c.reason}" for c in cautions)


def _literature(p: Prediction, because: str | None, beside: str = "") -> dict[str, Any]:
    years = {"value": p.years, "unit": "a", "system": UCUM, "code": "a"}
    rationale = f"{p.study.citation}; cohort: {p.study.cohort} (n={p.study.n})."
    if because:
        rationale += f" Applies because the data shows {because}."
    if beside:
        rationale += f" {beside} The cited cohorts may not reflect this history; weigh the cancer-free interval."
    return {
        "outcome": {"text": p.outcome},
        "probabilityDecimal": p.percent,
        "whenRange": {"low": dict(years), "high": dict(years)},
        "rationale": rationale,
    }


def _refs_text(ev: Evaluation, evidence: tuple[Source, ...]) -> str:
    refs: list[str] = []
    seen: set[str] = set()
    for src in evidence:
        if src.reference not in seen:
            seen.add(src.reference)
            refs.append(_versioned(src.reference, _version_of(ev, src)))
    return ", ".join(refs)


def _narrative(ev: Evaluation, rule_set_title: str | None, literature: list[dict[str, Any]]) -> str:
    e = html.escape
    cautions = ordered_cautions(ev.cautions)
    if cautions:
        caution_rows = "".join(
            f"<tr><td>{e(caution_label(c.code))}</td><td>{e(CAUTION_EFFECTS[caution_effect(c.code)])}</td>"
            f"<td>{e(c.reason)}</td><td>{e(_refs_text(ev, c.evidence)) or '-'}</td></tr>"
            for c in cautions
        )
        caution_part = (
            f"<p><b>Cautions ({len(cautions)})</b>, checked before the criteria:</p>"
            "<table><thead><tr><th>Caution</th><th>Effect</th><th>Reason</th><th>Evidence</th></tr></thead>"
            f"<tbody>{caution_rows}</tbody></table>"
        )
    else:
        caution_part = "<p>No cautions: every prerequisite holds.</p>"
    rows = []
    for name in _criterion_names(ev):
        res = ev.criteria[name]
        reason = res.reason
        if res.missing:
            reason += " Missing: " + "; ".join(res.missing) + "."
        rows.append(
            f"<tr><td>{e(criterion_label(name))}</td><td>{e(STATUS_WORDS.get(str(res.status), str(res.status)))}</td>"
            f"<td>{e(reason)}</td><td>{e(_refs_text(ev, res.evidence)) or '-'}</td></tr>"
        )
    lit_part = ""
    if literature:
        items = "".join(
            f"<li>{e(p['outcome']['text'])}: {p['probabilityDecimal']:g} % ({e(p['rationale'])})</li>" for p in literature
        )
        lit_part = f"<p>Literature context (not a prediction for this patient):</p><ul>{items}</ul>"
    rule = e(ev.rule_set) + (f" ({e(rule_set_title)})" if rule_set_title else "") + f", version {e(ev.rule_set_version)}"
    return (
        '<div xmlns="http://www.w3.org/1999/xhtml">'
        f"<p><b>Milan criteria: {e(_outcome_text(ev))}</b></p>"
        f"<p>Patient {e(ev.patient)}, as of {ev.as_of.isoformat()}, rule set {rule}; "
        f"mappings {e(ev.mapping_version)}.</p>"
        f"{caution_part}"
        "<table><thead><tr><th>Criterion</th><th>Status</th><th>Reason</th><th>Evidence</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"{lit_part}"
        "</div>"
    )


def _outcome_text(ev: Evaluation) -> str:
    """The verdict in words, naming the cautions that decide or cap it."""
    text = VERDICT_DISPLAY.get(str(ev.verdict), str(ev.verdict))
    cautions = ordered_cautions(ev.cautions)
    deciding = [c for c in cautions if caution_effect(c.code) in ("excludes", "caps")]
    informing = [c for c in cautions if caution_effect(c.code) == "informs"]
    if deciding:
        text += "; cautions: " + ", ".join(caution_label(c.code).lower() for c in deciding)
    if informing:
        text += "; to weigh: " + ", ".join(caution_label(c.code).lower() for c in informing)
    return text


#: the R4B model of each resource type this module builds, imported when first checked (an ``evaluate`` that
#: writes no RiskAssessment never loads them)
_MODELS = {
    "RiskAssessment": "fhir.resources.R4B.riskassessment",
    "RiskAssessmentPrediction": "fhir.resources.R4B.riskassessment",
    "Extension": "fhir.resources.R4B.extension",
    "Provenance": "fhir.resources.R4B.provenance",
    "StructureDefinition": "fhir.resources.R4B.structuredefinition",
}


@lru_cache(maxsize=None)
def _model(rtype: str) -> Any:
    from importlib import import_module

    return getattr(import_module(_MODELS[rtype]), rtype)


def _check(rtype: str, resource: dict[str, Any]) -> None:
    from pydantic import ValidationError

    try:
        _model(rtype).model_validate(resource)
    except ValidationError as exc:  # a bug in this module, not a user error
        raise FhirBuildError(f"milan-fhir built an invalid {resource.get('resourceType')}: {exc}") from exc


#: leaf keys whose string values are of FHIR type ``string`` wherever a RiskAssessment holds them
#: (Extension.valueString, Reference.reference, Reference.display, Coding.display)
_STRING_LEAVES = ("valueString", "reference", "display")
_PARTS_OK: dict[bytes, None] = {}  # parts of RiskAssessments already validated (bounded)


@lru_cache(maxsize=1)
def _string_check() -> Any:
    """The validator of the R4B ``string`` those fields are declared with (the models' own annotation)."""
    from pydantic import TypeAdapter

    from fhir.resources.R4B.extension import Extension

    annotation: Any = Extension.model_fields["valueString"].annotation
    return TypeAdapter(annotation).validate_python


def _shape(node: Any, strings: list[str]) -> Any:
    """``node`` with each ``_STRING_LEAVES`` string replaced by ``"x"`` (collected into ``strings``)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in _STRING_LEAVES and isinstance(v, str):
                strings.append(v)
                out[k] = "x"
            else:
                out[k] = _shape(v, strings)
        return out
    if isinstance(node, list):
        return [_shape(v, strings) for v in node]
    return node


def _valid_once(rtype: str, part: Any) -> None:
    """Validate ``part`` as ``rtype`` unless an identical part was (raises pydantic's ValidationError)."""
    key = rtype.encode() + b"\x00" + orjson.dumps(part)
    if key in _PARTS_OK:
        return
    _model(rtype).model_validate(part)
    if len(_PARTS_OK) >= 4096:
        _PARTS_OK.clear()
    _PARTS_OK[key] = None


def _check_risk_assessment(ra: dict[str, Any]) -> None:
    """R4B validation of a RiskAssessment, in parts that repeat from patient to patient (1 ms -> ~0.2 ms).

    Exact, because a model's validation is that of each field on its own plus the model's own checks: the
    resource without ``prediction`` (validated whole); each prediction without its outcome's extensions
    (validated once per distinct content); each outcome extension with its free-text strings replaced by ``"x"``
    (validated once per distinct shape) and those strings validated by the R4B ``string`` type the fields are
    declared with. Should any part fail, the whole resource is validated (its error is the one raised), so a
    split never rejects a valid resource and never lets an invalid one through.
    """
    from pydantic import ValidationError

    predictions = ra.get("prediction", [])
    if not isinstance(predictions, list):
        _check("RiskAssessment", ra)
        return
    try:
        _model("RiskAssessment").model_validate({k: v for k, v in ra.items() if k != "prediction"})
        check = _string_check()
        for pred in predictions:
            outcome = pred.get("outcome") if isinstance(pred, dict) else None
            exts = outcome.get("extension") if isinstance(outcome, dict) else None
            if not isinstance(outcome, dict) or not isinstance(exts, list):
                _valid_once("RiskAssessmentPrediction", pred)
                continue
            _valid_once("RiskAssessmentPrediction",
                        {**pred, "outcome": {k: v for k, v in outcome.items() if k != "extension"}})
            for ext in exts:
                strings: list[str] = []
                _valid_once("Extension", _shape(ext, strings))
                for text in strings:
                    check(text)
    except (ValidationError, TypeError):  # TypeError: a part orjson cannot key (never from this writer)
        _check("RiskAssessment", ra)


# ---------------------------------------------------------------------------------------------- RiskAssessment
def risk_assessment(
    ev: Evaluation, mappings: Mappings, *, validate: bool = True, software_version: str | None = None
) -> dict[str, Any]:
    """The RiskAssessment of criteria.md §5 for one evaluation, as a JSON-ready dict."""
    rule = mappings.rule_sets.get(ev.rule_set)
    title = rule.title if rule is not None else None
    cautions = ordered_cautions(ev.cautions)
    display = VERDICT_DISPLAY.get(str(ev.verdict), str(ev.verdict))
    outcome: dict[str, Any] = {
        "extension": [_criterion_extension(ev, name) for name in _criterion_names(ev)]
        + [_caution_extension(ev, c) for c in cautions],
        "coding": [{"system": VERDICT_SYSTEM, "code": str(ev.verdict), "display": display}],
        "text": _outcome_text(ev),
    }
    counts = {s: sum(1 for r in ev.criteria.values() if str(r.status) == s) for s in ("met", "not_met", "indeterminate")}
    rationale = (
        f"{counts['met']} of {len(ev.criteria)} criteria met, {counts['not_met']} not met, "
        f"{counts['indeterminate']} indeterminate (rule set {ev.rule_set} {ev.rule_set_version})"
    )
    if cautions:
        rationale += "; cautions: " + ", ".join(f"{c.code} ({caution_effect(c.code)})" for c in cautions)
    predictions: list[dict[str, Any]] = [{"outcome": outcome, "rationale": rationale + "."}]
    # Literature figures only for `eligible`, which no excluding or capping caution allows (criteria.md §5);
    # the check on the cautions is kept here too, so that a caller's inconsistent Evaluation never shows them.
    eligible = ev.verdict == Verdict.ELIGIBLE and not any(
        caution_effect(c.code) in ("excludes", "caps") for c in cautions
    )
    literature: list[dict[str, Any]] = []
    if eligible:
        shown = ev.subgroups
        beside = _beside([c for c in cautions if caution_effect(c.code) == "informs"])
        for p in mappings.predictions:
            if p.when == "always":
                literature.append(_literature(p, None, beside))
            elif p.when in shown:
                literature.append(_literature(p, shown[p.when], beside))
    predictions += literature

    ra: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": resource_id(ev.patient, ev.rule_set),
        "meta": {"profile": [PROFILE_URL]},
        "text": {"status": "generated", "div": _narrative(ev, title, literature)},
        "extension": [
            {"url": INPUT_FINGERPRINT_URL, "valueString": fingerprint(ev, mappings, software_version=software_version)}
        ],
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": identifier_value(ev.patient, ev.rule_set)}],
        "status": "final",
        "method": {
            "coding": [
                {
                    "system": RULE_SET_SYSTEM,
                    "version": ev.rule_set_version,
                    "code": ev.rule_set,
                    **({"display": title} if title else {}),
                }
            ],
            "text": f"Milan criteria, rule set {ev.rule_set} {ev.rule_set_version}",
        },
        "subject": {"reference": ev.patient},
        "occurrenceDateTime": ev.as_of.isoformat(),
    }
    liver = ev.liver_metastasis
    if liver is not None:
        ra["condition"] = {"reference": liver.reference, **({"display": liver.value} if liver.value else {})}
    basis = [_reference(ev, src) for src in _evidence_sources(ev)]
    if basis:
        ra["basis"] = basis
    ra["prediction"] = predictions
    if eligible and mappings.mitigation:
        beside = _beside([c for c in cautions if caution_effect(c.code) == "informs"])
        ra["mitigation"] = mappings.mitigation + (f" {beside}" if beside else "")
    if validate:
        _check_risk_assessment(ra)
    return ra


# ---------------------------------------------------------------------------------------------- Provenance
def provenance(
    ev: Evaluation,
    target_reference: str,
    *,
    recorded: dt.datetime | str | None = None,
    software_version: str,
    validate: bool = True,
) -> dict[str, Any]:
    """A Provenance for a written RiskAssessment: the software that made it and every input with its version.

    ``target_reference`` is the RiskAssessment as written (``RiskAssessment/id/_history/v`` when known).
    """
    if recorded is None:
        recorded = dt.datetime.now(dt.timezone.utc)
    if isinstance(recorded, dt.datetime):
        if recorded.tzinfo is None:
            recorded = recorded.replace(tzinfo=dt.timezone.utc)
        recorded = recorded.isoformat(timespec="seconds")
    prov: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": target_reference}],
        "occurredDateTime": ev.as_of.isoformat(),
        "recorded": recorded,
        "reason": [{"text": f"Milan criteria evaluation, rule set {ev.rule_set} {ev.rule_set_version}"}],
        "agent": [
            {
                "type": {"coding": [{"system": _PARTICIPANT_TYPE, "code": "assembler", "display": "Assembler"}]},
                "who": {"display": f"milan-fhir {software_version}"},
            }
        ],
    }
    entities = [
        {"role": "source", "what": {"reference": _versioned(ref, version)}}
        for ref, version in sorted(_inputs(ev).items())
    ]
    if entities:
        prov["entity"] = entities
    if validate:
        _check("Provenance", prov)
    return prov


# ---------------------------------------------------------------------------------------------- definitions
@lru_cache(maxsize=1)
def _definitions() -> tuple[str, ...]:
    folder = resources.files(__package__) / "definitions"
    texts = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            texts.append(entry.read_text(encoding="utf-8"))
    return tuple(texts)


def conformance_resources() -> list[dict[str, Any]]:
    """Every conformance resource milan-fhir ships (StructureDefinitions, CodeSystems), as fresh dicts."""
    return [json.loads(t) for t in _definitions()]


def structure_definitions() -> list[dict[str, Any]]:
    """The StructureDefinitions milan-fhir ships: the criterion-result, caution and input-fingerprint extensions
    and the milan-risk-assessment profile (FHIR 4.0.1, differential form)."""
    out = [r for r in conformance_resources() if r.get("resourceType") == "StructureDefinition"]
    for sd in out:
        _check("StructureDefinition", sd)
    return out


def code_systems() -> list[dict[str, Any]]:
    """The CodeSystems milan-fhir ships (milan-net: verdict and observation concepts; milan-rule-set)."""
    return [r for r in conformance_resources() if r.get("resourceType") == "CodeSystem"]
