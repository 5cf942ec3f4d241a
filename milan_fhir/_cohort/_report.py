"""The cohort summary, as terminal text and as a self-contained HTML report (inline CSS and SVG, no scripts).

Both render the ``summary`` dict written to ``summary.json`` (see :func:`milan_fhir._cohort.run_cohort`).
"""

from __future__ import annotations

import html
from typing import Any

from .._domain import CAUTION_CODES, CRITERIA, RuleSet
from .._writers._words import CAUTION_STEP_LABELS, CAUTION_STEP_SHORT, STATUS_WORDS, caution_label, criterion_phrases

__all__ = ["criterion_labels", "render_text", "render_html", "CAUTION_STEP_LABELS"]

COLOURS = {"met": "#2e7d32", "indeterminate": "#f2a900", "not_met": "#c62828", "flow": "#1565c0",
           "caution": "#6a1b9a"}
STATUS_LABELS = STATUS_WORDS

def criterion_labels(rules: RuleSet) -> dict[str, str]:
    """Short human labels of the criteria with the rule set's numbers (from the writers' word registry)."""
    return criterion_phrases(rules)


def _caution_codes_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{caution_label(c).lower()} {_n(n)}" for c, n in counts.items())


def _pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.0f} %" if d else "-"


def _n(n: int) -> str:
    return f"{n:,}"


def render_text(s: dict[str, Any]) -> str:
    labels = s["criterion_labels"]
    t = s["tally"]
    cohort = t["patients"]
    lines = [
        f"Cohort screening as of {s['as_of']}, rule set {s['rule_set']} {s['rule_set_version']} "
        f"(mappings {s['mapping_version']})",
        f"Read {_n(s['lines'])} lines in {_n(len(s['files']))} files; kept {_n(s['resources_kept'])} resources "
        f"the rules use; {_n(s['errors'])} errors" + (" (see errors.ndjson)" if s["errors"] else ""),
        f"{_n(s['patients_seen'])} patients in the export; {_n(cohort)} in the cohort ({s['cohort_definition']})",
        "",
        "Flow (a patient leaves at the first criterion not met, deceased and transplanted patients before any;",
        "patients with a capping caution or an indeterminate criterion stay in):",
        f"  {_n(cohort):>9}  enter",
    ]
    caution_steps = t.get("caution_flow") or []
    width = max([len(v) for v in labels.values()] + [len(CAUTION_STEP_LABELS[st["step"]]) for st in caution_steps])
    for st in caution_steps:
        detail = _caution_codes_text(st["cautions"])
        if st["lost"] or st["step"] == "excluding":
            lines.append(f"  {'-' + _n(st['lost']):>9}  {CAUTION_STEP_LABELS[st['step']]:<{width}}  -> "
                         f"{_n(st['remaining']):>7} remain  ({detail})")
        else:
            lines.append(f"  {'!' + _n(st['flagged']):>9}  {CAUTION_STEP_LABELS[st['step']]:<{width}}  -> "
                         f"{_n(st['remaining']):>7} remain  ({detail})")
    for step in t["flow"]:
        lines.append(
            f"  {'-' + _n(step['lost']):>9}  {labels[step['criterion']]:<{width}}  -> {_n(step['remaining']):>7} remain"
            f"  ({_n(step['indeterminate'])} indeterminate)"
        )
    v = t["verdicts"]
    lines += [
        f"  {_n(v['eligible']):>9}  ({_pct(v['eligible'], cohort)}) within Milan: every criterion met",
        f"  {_n(v['indeterminate']):>9}  ({_pct(v['indeterminate'], cohort)}) possibly within Milan: data missing or a capping caution",
        "",
        f"Verdicts: eligible {_n(v['eligible'])} ({_pct(v['eligible'], cohort)}), ineligible "
        f"{_n(v['ineligible'])} ({_pct(v['ineligible'], cohort)}), indeterminate {_n(v['indeterminate'])} "
        f"({_pct(v['indeterminate'], cohort)})",
        "",
        f"  {'criterion':<{width}}  {'met':>8}  {'not met':>8}  {'indeterminate':>13}",
    ]
    for c in CRITERIA:
        row = t["criteria"][c]
        lines.append(
            f"  {labels[c]:<{width}}  {_n(row['met']):>8}  {_n(row['not_met']):>8}  {_n(row['indeterminate']):>13}"
        )
    cautions = t.get("cautions")
    if cautions is not None:
        lines += ["", "Cautions over the whole cohort: " + (
            _caution_codes_text({c: cautions.get(c, 0) for c in CAUTION_CODES}) or "none")]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:60rem;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:.9rem}.big{font-size:1.1rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.92rem}th,td{padding:.25rem .6rem;text-align:right;
border-bottom:1px solid #eee}th:first-child,td:first-child{text-align:left}
.legend span{display:inline-block;margin-right:1rem;font-size:.9rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
svg text{font-family:inherit;font-size:12px}
.note{font-size:.85rem;color:#555}
@media print{body{margin:0}}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _flow_svg(s: dict[str, Any]) -> str:
    t = s["tally"]
    labels = s["criterion_labels"]
    cohort = max(t["patients"], 1)
    label_w, bar_w, row_h, top = 250, 430, 30, 10
    steps = t["flow"]
    caution_steps = t.get("caution_flow") or []
    rows = len(steps) + len(caution_steps) + 2
    height = top + rows * row_h + 20
    out = [
        f'<svg id="flow-chart" xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" '
        f'viewBox="0 0 760 {height}" role="img" aria-labelledby="flow-title">',
        '<title id="flow-title">Flow of patients through the criteria</title>',
    ]

    def bar(y: int, x0: float, w: float, colour: str, cls: str, title: str) -> None:
        if w <= 0:
            return
        out.append(
            f'<rect class="bar {cls}" x="{label_w + x0:.1f}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row_h - 8}" '
            f'fill="{colour}"><title>{_esc(title)}</title></rect>'
        )

    y = top
    out.append(f'<text x="0" y="{y + row_h / 2 + 4:.0f}" font-weight="bold">Cohort</text>')
    bar(y, 0, bar_w, COLOURS["flow"], "flow-step", f"{t['patients']} patients enter")
    out.append(f'<text x="{label_w + bar_w + 8}" y="{y + row_h / 2 + 4:.0f}">{_n(t["patients"])}</text>')
    for st in caution_steps:
        y += row_h
        rem_w = bar_w * st["remaining"] / cohort
        flag_w = bar_w * min(st["flagged"], st["remaining"]) / cohort
        lost_w = bar_w * st["lost"] / cohort
        detail = _caution_codes_text(st["cautions"])
        out.append(f'<text x="0" y="{y + row_h / 2 + 4:.0f}">{_esc(_short_step(st["step"]))}</text>')
        bar(y, 0, rem_w - flag_w, COLOURS["flow"], "flow-step", f"{st['remaining'] - st['flagged']} remain")
        bar(y, rem_w - flag_w, flag_w, COLOURS["caution"], "flow-capped",
            f"{st['flagged']} remain with a caution ({detail})")
        bar(y, rem_w, lost_w, COLOURS["not_met"], "flow-excluded", f"{st['lost']} leave ({detail})")
        mark = f' (−{_n(st["lost"])})' if st["lost"] else (f' (!{_n(st["flagged"])})' if st["flagged"] else "")
        out.append(f'<text x="{label_w + bar_w + 8}" y="{y + row_h / 2 + 4:.0f}">{_n(st["remaining"])}{mark}</text>')
    for step in steps:
        y += row_h
        name = step["criterion"]
        rem_w = bar_w * step["remaining"] / cohort
        ind_w = bar_w * min(step["indeterminate"], step["remaining"]) / cohort
        lost_w = bar_w * step["lost"] / cohort
        out.append(f'<text x="0" y="{y + row_h / 2 + 4:.0f}">{_esc(labels[name])}</text>')
        bar(y, 0, rem_w - ind_w, COLOURS["flow"], "flow-step",
            f"{step['remaining'] - step['indeterminate']} remain, criterion met")
        bar(y, rem_w - ind_w, ind_w, COLOURS["indeterminate"], "flow-indeterminate",
            f"{step['indeterminate']} remain, criterion indeterminate")
        bar(y, rem_w, lost_w, COLOURS["not_met"], "flow-lost", f"{step['lost']} leave: criterion not met")
        out.append(
            f'<text x="{label_w + bar_w + 8}" y="{y + row_h / 2 + 4:.0f}">{_n(step["remaining"])}'
            f' (−{_n(step["lost"])})</text>'
        )
    y += row_h
    v = t["verdicts"]
    out.append(f'<text x="0" y="{y + row_h / 2 + 4:.0f}" font-weight="bold">Within Milan</text>')
    elig_w = bar_w * v["eligible"] / cohort
    bar(y, 0, elig_w, COLOURS["met"], "flow-eligible", f"{v['eligible']} within Milan: every criterion met")
    bar(y, elig_w, bar_w * v["indeterminate"] / cohort, COLOURS["indeterminate"], "flow-possible",
        f"{v['indeterminate']} possibly within Milan: data missing or a capping caution")
    out.append(
        f'<text x="{label_w + bar_w + 8}" y="{y + row_h / 2 + 4:.0f}" font-weight="bold">{_n(v["eligible"])} '
        f'({_pct(v["eligible"], t["patients"])})</text>'
    )
    if v["indeterminate"]:
        out.append(f'<text x="{label_w + bar_w + 8}" y="{y + row_h / 2 + 18:.0f}" fill="#555">'
                   f'+ {_n(v["indeterminate"])} possibly</text>')
    out.append("</svg>")
    return "\n".join(out)


def _short_step(step: str) -> str:
    return CAUTION_STEP_SHORT.get(step, step)


def _criteria_svg(s: dict[str, Any]) -> str:
    t = s["tally"]
    labels = s["criterion_labels"]
    cohort = max(t["patients"], 1)
    label_w, bar_w, row_h, top = 250, 430, 30, 10
    height = top + len(CRITERIA) * row_h + 10
    out = [
        f'<svg id="criteria-chart" xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" '
        f'viewBox="0 0 760 {height}" role="img" aria-labelledby="crit-title">',
        '<title id="crit-title">Status of each criterion over the cohort</title>',
    ]
    y = top
    for c in CRITERIA:
        row = t["criteria"][c]
        x = 0.0
        out.append(f'<text x="0" y="{y + row_h / 2 + 4:.0f}">{_esc(labels[c])}</text>')
        for status in ("met", "indeterminate", "not_met"):
            w = bar_w * row[status] / cohort
            if w > 0:
                out.append(
                    f'<rect class="bar status-{status}" x="{label_w + x:.1f}" y="{y + 4}" width="{w:.1f}" '
                    f'height="{row_h - 8}" fill="{COLOURS[status]}"><title>{_esc(labels[c])}: {row[status]} '
                    f"{STATUS_LABELS[status]}</title></rect>"
                )
                x += w
        out.append(
            f'<text x="{label_w + bar_w + 8}" y="{y + row_h / 2 + 4:.0f}">{_n(row["met"])} / '
            f'{_n(row["indeterminate"])} / {_n(row["not_met"])}</text>'
        )
        y += row_h
    out.append("</svg>")
    return "\n".join(out)


def render_html(s: dict[str, Any]) -> str:
    t = s["tally"]
    labels = s["criterion_labels"]
    cohort = t["patients"]
    v = t["verdicts"]
    legend = "".join(
        f'<span><i style="background:{COLOURS[k]}"></i>{_esc(lbl)}</span>'
        for k, lbl in (("flow", "still in the flow, criterion met"), ("caution", "capping caution"),
                       ("indeterminate", "indeterminate"), ("not_met", "not met / excluded"),
                       ("met", "within Milan / met"))
    )
    caution_rows = "".join(
        f"<tr class=\"caution-step\"><td>{_esc(CAUTION_STEP_LABELS.get(st['step'], st['step']))}: "
        f"{_esc(_caution_codes_text(st['cautions']))}</td><td>{_n(st['entering'])}</td><td>{_n(st['lost'])}</td>"
        f"<td>{_n(st['remaining'])}</td><td>{_n(st['flagged'])} with a caution</td></tr>"
        for st in t.get("caution_flow") or []
    )
    flow_rows = caution_rows + "".join(
        f"<tr><td>{_esc(labels[st['criterion']])}</td><td>{_n(st['entering'])}</td><td>{_n(st['lost'])}</td>"
        f"<td>{_n(st['remaining'])}</td><td>{_n(st['indeterminate'])}</td></tr>"
        for st in t["flow"]
    )
    all_cautions = t.get("cautions") or {}
    cautions_table = "".join(
        f"<tr><td>{_esc(caution_label(c))}</td><td>{_n(all_cautions.get(c, 0))}</td>"
        f"<td>{_pct(all_cautions.get(c, 0), cohort)}</td></tr>"
        for c in CAUTION_CODES
    )
    crit_rows = "".join(
        f"<tr><td>{_esc(labels[c])}</td><td>{_n(t['criteria'][c]['met'])}</td>"
        f"<td>{_n(t['criteria'][c]['indeterminate'])}</td><td>{_n(t['criteria'][c]['not_met'])}</td></tr>"
        for c in CRITERIA
    )
    skipped = "".join(f"<li>{_esc(f)}: {_esc(why)}</li>" for f, why in s.get("skipped_files", []))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Milan criteria cohort screening, {_esc(s['as_of'])}</title>
<style>{_CSS}</style></head>
<body>
<h1>Milan criteria for NET liver metastases: cohort screening</h1>
<p class="meta">As of {_esc(s['as_of'])} · rule set {_esc(s['rule_set'])} {_esc(s['rule_set_version'])} ·
mappings {_esc(s['mapping_version'])} · milan-fhir {_esc(s.get('software_version', ''))}</p>
<p class="big"><strong>{_n(cohort)}</strong> patients in the cohort ({_esc(s['cohort_definition'])}), of
{_n(s['patients_seen'])} patients in the export. <strong>{_n(v['eligible'])} ({_pct(v['eligible'], cohort)})</strong>
within Milan (every criterion met); {_n(v['indeterminate'])} ({_pct(v['indeterminate'], cohort)}) possibly within
Milan, data missing or a capping caution; {_n(v['ineligible'])} ({_pct(v['ineligible'], cohort)}) outside.</p>

<h2>Flow of patients through the criteria</h2>
<p class="note">First the prerequisites: deceased patients and those with a prior liver transplant leave the
flow; patients with a capping caution (no liver metastasis record, another active malignancy) stay in but cannot be
within Milan (shown in purple); a prior malignancy is counted and changes nothing. Then the criteria in the order
below; a patient leaves the flow at the first criterion that is not met. Patients for whom a criterion is
indeterminate stay in the flow (shown in amber).</p>
<div class="legend">{legend}</div>
{_flow_svg(s)}
<table id="flow-table"><thead><tr><th>criterion</th><th>entering</th><th>lost (not met)</th><th>remaining</th>
<th>of which indeterminate</th></tr></thead><tbody>{flow_rows}</tbody></table>

<h2>Each criterion over the whole cohort</h2>
<p class="note">Every patient of the cohort, whatever the other criteria say; numbers: met / indeterminate / not met.</p>
{_criteria_svg(s)}
<table id="criteria-table"><thead><tr><th>criterion</th><th>met</th><th>indeterminate</th><th>not met</th></tr>
</thead><tbody>{crit_rows}</tbody></table>

<h2>Cautions over the whole cohort</h2>
<p class="note">Prerequisites checked before the criteria; a patient may carry several.</p>
<table id="cautions-table"><thead><tr><th>caution</th><th>patients</th><th>of the cohort</th></tr></thead>
<tbody>{cautions_table}</tbody></table>

<h2>Input</h2>
<p>{_n(s['lines'])} lines read from {_n(len(s['files']))} files; {_n(s['resources_kept'])} resources used by the
rules; <strong>{_n(s['errors'])}</strong> malformed lines or invalid resources skipped (listed in
<code>errors.ndjson</code>).</p>
{f'<p>Files skipped:</p><ul>{skipped}</ul>' if skipped else ''}
<p class="note">Results per patient: <code>results.ndjson</code>; RiskAssessments: <code>risk-assessments.ndjson</code>.
A screening aid, not a clinical decision: each patient's result lists the evidence and what is missing.</p>
</body></html>
"""
