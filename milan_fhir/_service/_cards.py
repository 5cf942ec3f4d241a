"""One CDS Hooks card per evaluation: readable in five seconds, every sentence resting on its evidence.

- ``summary`` (at most 140 characters): "Within Milan criteria (milan-net 1.0.0)", "Outside Milan: age > 60 years",
  "Milan undecided: Ki-67/grade, staging missing", "Outside Milan: deceased (caution)".
- ``indicator``: ``info`` for a patient within Milan, ``warning`` otherwise (outside, undecided, or any
  caution): both ask the team to look.
- ``detail`` (markdown): the as-of date and rule set, the cautions, the six criteria each with its status,
  its reason (which cites the resources and values), its evidence references and, when open, what would settle
  it; the decision-support disclaimer.
- ``source``: the rule set (name, version, title) and its citation.
- ``extension``: ``{"milan-fhir": <the criteria.md §6 JSON line>}`` (cautions included) so machines read what
  people read.
"""

from __future__ import annotations

import uuid
from typing import Any

from .._domain import CAPPING_CAUTIONS, CRITERIA, EXCLUDING_CAUTIONS, Evaluation, RuleSet, Status, Verdict
from .._writers import json_lines
from .._writers._words import (
    CAUTION_LABELS,
    CRITERION_LABELS,
    STATUS_ICONS,
    VERDICT_SHORT,
    criterion_failed_short,
    criterion_missing_short,
)

__all__ = ["card", "summary"]

SUMMARY_MAX = 140


def _caution_words(code: str) -> str:
    label = CAUTION_LABELS.get(code, code)
    return label[:1].lower() + label[1:]


def _join(parts: list[str], limit: int) -> str:
    text = ", ".join(parts)
    if len(text) <= limit:
        return text
    out: list[str] = []
    for i, p in enumerate(parts):
        rest = len(parts) - i - 1
        candidate = ", ".join(out + [p]) + (f" +{rest} more" if rest else "")
        if len(candidate) > limit:
            return ", ".join(out) + f" +{len(parts) - i} more"
        out.append(p)
    return ", ".join(out)


def summary(ev: Evaluation, rules: RuleSet) -> str:
    """The card's one-line summary (at most 140 characters)."""
    names = [n for n in CRITERIA if n in ev.criteria]
    excluding = [c for c in ev.cautions if c.code in EXCLUDING_CAUTIONS]
    capping = [c for c in ev.cautions if c.code in CAPPING_CAUTIONS]
    if ev.verdict == Verdict.ELIGIBLE:
        text = f"Within Milan criteria ({rules.name} {rules.version})"
        if any(c.code == "prior-malignancy" for c in ev.cautions):
            text += "; note: prior malignancy"
        return text[:SUMMARY_MAX]
    if ev.verdict == Verdict.INELIGIBLE:
        parts = [f"{_caution_words(c.code)} (caution)" for c in excluding]
        parts += [criterion_failed_short(n, rules) for n in names if ev.criteria[n].status == Status.NOT_MET]
        prefix = "Outside Milan: "
        return prefix + _join(parts or ["see details"], SUMMARY_MAX - len(prefix))
    open_ = [criterion_missing_short(n) for n in names if ev.criteria[n].status == Status.INDETERMINATE]
    parts = []
    if open_:
        parts.append(_join(open_, 90) + " missing")
    parts += [f"{_caution_words(c.code)} (caution)" for c in capping]
    prefix = "Milan undecided: "
    return prefix + _join(parts or ["see details"], SUMMARY_MAX - len(prefix))


def _md(text: str) -> str:
    """Text safe inside a markdown table cell or list item."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _detail(ev: Evaluation, rules: RuleSet, data_origin: dict[str, str]) -> str:
    lines = [
        f"**Milan criteria: {VERDICT_SHORT[str(ev.verdict)]}** for {ev.patient}, as of **{ev.as_of.isoformat()}**, "
        f"rule set {rules.name} {rules.version} ({_md(rules.title)}).",
        "",
    ]
    if ev.cautions:
        lines.append("**Cautions**")
        lines.append("")
        for c in ev.cautions:
            refs = ", ".join(s.reference for s in c.evidence)
            lines.append(f"- **{_caution_words(c.code)}** (`{c.code}`): {_md(c.reason)}"
                         + (f" Evidence: {refs}." if refs else ""))
        lines.append("")
    lines += ["| criterion | status | reason and evidence |", "|---|---|---|"]
    for name in [n for n in CRITERIA if n in ev.criteria] + [n for n in ev.criteria if n not in CRITERIA]:
        res = ev.criteria[name]
        cell = _md(res.reason)
        cited = list(dict.fromkeys(s.reference for s in res.evidence))
        if cited:
            cell += f" Evidence: {', '.join(cited)}."
        if res.missing:
            cell += f" **Would settle it:** {_md('; '.join(res.missing))}."
        lines.append(f"| {CRITERION_LABELS.get(name, name)} | {STATUS_ICONS[str(res.status)]} | {cell} |")
    lines.append("")
    if ev.unusable:
        lines.append("Values that could not be read: " + "; ".join(
            f"{u.reference} {u.field}: {_md(u.reason)}" for u in ev.unusable) + ".")
        lines.append("")
    if data_origin:
        lines.append("Data: " + ", ".join(f"{k} from {v}" for k, v in data_origin.items()) + ".")
        lines.append("")
    lines.append(
        "_Decision support, not a diagnosis: the recorded data against a published rule set; the transplant "
        "team decides._"
    )
    return "\n".join(lines)


def card(ev: Evaluation, rules: RuleSet, *, software: str, data_origin: dict[str, str] | None = None) -> dict[str, Any]:
    """The CDS Hooks card of one evaluation."""
    warn = ev.verdict != Verdict.ELIGIBLE or bool(ev.cautions)
    line = json_lines.to_json(ev)
    if "cautions" not in line:  # the §6 line always carries its cautions
        line["cautions"] = [
            {"code": c.code, "reason": c.reason, "evidence": list(dict.fromkeys(s.reference for s in c.evidence))}
            for c in ev.cautions
        ]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": summary(ev, rules),
        "indicator": "warning" if warn else "info",
        "detail": _detail(ev, rules, data_origin or {}),
        "source": {
            "label": f"milan-fhir {software}: {rules.name} {rules.version}",
            "topic": {
                "system": "http://milan-fhir.org/fhir/CodeSystem/milan-rule-set",
                "code": rules.name,
                "display": f"{rules.title} (v{rules.version}); {rules.source}",
            },
        },
        "extension": {"milan-fhir": line},
    }
