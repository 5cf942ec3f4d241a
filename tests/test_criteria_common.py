import pytest
from builders import src

from milan_fhir._criteria._common import decides_high, fmt_pct, months_back, result
from milan_fhir._domain import Status


@pytest.mark.parametrize(
    "value, comparator, inclusive, expected",
    [
        (10, None, True, True),  # at the limit counts as high when inclusive (Ki-67 >= 10)
        (10, None, False, False),  # not when strict (grade G3 only above 20)
        (9.99, None, True, False),
        (10, "<", True, False),
        (10.01, "<", True, None),
        (10, "<=", True, None),
        (10, "<=", False, False),
        (9, "<=", True, False),
        (10, ">", True, True),
        (10, ">", False, True),
        (9.9, ">", True, None),
        (10, ">=", True, True),
        (10, ">=", False, None),
        (float("nan"), None, True, None),
    ],
)
def test_decides_high(value, comparator, inclusive, expected):
    assert decides_high(value, comparator, 10, inclusive) is expected


def test_met_without_evidence_is_never_reported_as_met():
    res = result("x", Status.MET, "Looks fine")
    assert res.status is Status.INDETERMINATE and res.missing


def test_unverified_codes_flagged_and_missing_only_when_indeterminate():
    s = src("Procedure/p1", "2024-01-01", unverified=("CPT 48150",))
    res = result("x", Status.MET, "Resected", [s, s], missing=["ignored"], notes=["", "note"])
    assert res.reason == "Resected (code CPT 48150 of Procedure/p1 is unverified); note."
    assert res.evidence == (s,) and res.missing == ()


def test_helpers():
    assert fmt_pct(12.0) == "12" and fmt_pct(9.95) == "9.95"
    assert str(months_back(__import__("datetime").date(1, 3, 1), 6)) == "0001-01-01"
