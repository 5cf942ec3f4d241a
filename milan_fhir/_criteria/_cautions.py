"""The prerequisites of criteria.md §1c (v2): each one that fails is a :class:`Caution`.

``deceased`` and ``prior-liver-transplant`` make the verdict ``ineligible``; ``no-liver-metastasis-record`` and
``other-malignancy`` cap it at ``indeterminate``; ``prior-malignancy`` is shown only. Undated resources count for
every caution. Pure functions over domain facts; no FHIR, no I/O.
"""

from __future__ import annotations

from datetime import date

from .._domain import CAUTION_CODES, Caution, PatientRecord, RuleSet
from ._attribution import NetView, net_view
from ._common import cite, counts_existence, decides_high, months_back, valid_percent

__all__ = ["cautions"]


def _deceased(record: PatientRecord, as_of: date) -> Caution | None:
    demo = record.demographics
    if demo is None:
        return None
    src = demo.source
    if demo.deceased:
        return Caution(code="deceased", reason=f"{src.reference} records the patient as deceased "
                                               "(Patient.deceasedBoolean)", evidence=(src,))
    if demo.deceased_date is not None and demo.deceased_date <= as_of:
        return Caution(code="deceased", reason=f"{src.reference} records the patient as deceased on "
                                               f"{demo.deceased_date} (Patient.deceasedDateTime)", evidence=(src,))
    if demo.deceased_unreadable:
        return Caution(code="deceased", reason=f"{src.reference} records a death whose date cannot be read "
                                               f"({demo.deceased_unreadable}); read as deceased", evidence=(src,))
    return None


def _transplant(record: PatientRecord, as_of: date) -> Caution | None:
    procs = [p for p in record.procedures if p.kind == "liver_transplant" and counts_existence(p.source, as_of)]
    status = [t for t in record.transplant_status if counts_existence(t.source, as_of)]
    if not procs and not status:
        return None
    parts = [f"{p.source.value or 'liver transplantation'} ({cite(p.source)})" for p in procs]
    parts += [f"{t.label} ({cite(t.source)})" for t in status]
    return Caution(code="prior-liver-transplant",
                   reason="A liver transplantation is already recorded: " + "; ".join(parts),
                   evidence=tuple([p.source for p in procs] + [t.source for t in status]))


def _no_liver_record(record: PatientRecord, rules: RuleSet, view: NetView, as_of: date) -> Caution | None:
    liver = [m for m in view.metastases if m.location == "liver" and m.active_on(as_of)]
    if liver:
        return None
    window = months_back(as_of, rules.burden_window_months)
    burden = [
        b for b in record.liver_burden
        if counts_existence(b.source, as_of) and (b.source.date is None or b.source.date >= window)
        and valid_percent(b.percent) and decides_high(b.percent, b.comparator, 0, False) is True
    ]
    if burden:
        return None
    return Caution(
        code="no-liver-metastasis-record",
        reason="No active liver metastasis Condition (e.g. ICD-10-CM C7B.02 or C78.7) and no liver tumour burden "
               f"above 0 % within {rules.burden_window_months} months before {as_of} is recorded: the liver "
               "metastases the Milan criteria are about are not documented",
    )


def _others(view: NetView, as_of: date) -> tuple[Caution | None, Caution | None]:
    active = [o for o in view.others if o.active_on(as_of)]
    inactive = [o for o in view.others if not o.active_on(as_of)] + view.history
    act = None
    if active:
        parts = []
        for o in active:
            text = f"{o.label} ({cite(o.source)}"
            if o.suspected:
                text += f", suspected: {o.verification}"
            text += ")"
            if o.kind == "site_code" and not o.has_morphology:
                text += " - with no morphology recorded it may be the NET primary or another cancer"
            parts.append(text)
        act = Caution(code="other-malignancy",
                      reason="Another malignancy is active: " + "; ".join(parts)
                      + "; a transplant team must weigh it",
                      evidence=tuple(o.source for o in active))
    prior = None
    if inactive:
        prior = Caution(code="prior-malignancy",
                        reason="A malignancy other than the NET is recorded that is not active: "
                        + "; ".join(f"{o.label} ({cite(o.source)})" for o in inactive)
                        + "; weigh the cancer-free interval",
                        evidence=tuple(o.source for o in inactive))
    return act, prior


def cautions(record: PatientRecord, rules: RuleSet, as_of: date, view: NetView | None = None) -> tuple[Caution, ...]:
    """The failed prerequisites of ``record`` as of ``as_of``, in the order of ``CAUTION_CODES``."""
    view = view or net_view(record, rules, as_of)
    other, prior = _others(view, as_of)
    found = [
        _deceased(record, as_of),
        _transplant(record, as_of),
        _no_liver_record(record, rules, view, as_of),
        other,
        prior,
    ]
    out = [c for c in found if c is not None]
    order = {code: i for i, code in enumerate(CAUTION_CODES)}
    return tuple(sorted(out, key=lambda c: order[c.code]))
