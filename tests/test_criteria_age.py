from datetime import date

import pytest
from builders import AS_OF, PATIENT, patient, record, rules, unusable

from milan_fhir._criteria.age import evaluate
from milan_fhir._domain import PartialDate, Status


def run(birth, as_of=AS_OF, rule_set="milan-net"):
    return evaluate(record(demographics=patient(birth)), rules(rule_set), as_of)


@pytest.mark.parametrize(
    "birth, expected",
    [
        ("1965-01-15", Status.NOT_MET),  # 61 today
        ("1965-01-16", Status.MET),  # 60, turns 61 tomorrow
        ("1966-01-15", Status.MET),  # 60 today
        ("1964-06-01", Status.NOT_MET),
    ],
)
def test_full_birth_date_boundary(birth, expected):
    res = run(birth)
    assert res.status is expected
    assert [s.reference for s in res.evidence] == [PATIENT]
    assert PATIENT in res.reason and birth in res.reason


def test_reason_shows_age_and_limit():
    res = run("1966-01-15")
    assert "Age 60 years" in res.reason and "60 years of milan-net" in res.reason


@pytest.mark.parametrize(
    "birth, expected",
    [
        ("1966", Status.MET),  # 59 or 60: both within 60
        ("1965", Status.INDETERMINATE),  # 60 (born after 15 Jan) or 61 (born by 15 Jan)
        ("1964", Status.NOT_MET),  # 61 or 62
        ("1965-01", Status.INDETERMINATE),  # 1-15 Jan: 61; 16-31 Jan: 60
        ("1965-02", Status.MET),  # 60 whatever the day
        ("1964-12", Status.NOT_MET),  # 61 whatever the day
    ],
)
def test_partial_birth_date(birth, expected):
    res = run(birth)
    assert res.status is expected, res.reason
    if expected is Status.INDETERMINATE:
        assert res.missing and "birth" in res.missing[0]


def test_29_february_birthday():
    # born 2000-02-29: in 2061 (not leap) the 61st year completes on 1 March
    assert run("2000-02-29", date(2060, 2, 28)).status is Status.MET  # 59
    assert run("2000-02-29", date(2061, 2, 28)).status is Status.MET  # still 60
    assert run("2000-02-29", date(2061, 3, 1)).status is Status.NOT_MET  # 61


def test_partial_february_in_leap_year_spans_29th():
    # born 1964-02 (leap year: up to the 29th). On 2025-02-28 the person is 60 if born on the 29th, 61 otherwise.
    assert run("1964-02", date(2025, 2, 28)).status is Status.INDETERMINATE
    # on 2025-03-01 everyone born in Feb 1964 is 61
    assert run("1964-02", date(2025, 3, 1)).status is Status.NOT_MET
    # on 2024-02-28 (29th not reached) born on the 29th would be 59, on the 1st 60: both met
    assert run("1964-02", date(2024, 2, 28)).status is Status.MET


def test_no_patient_resource():
    res = evaluate(record(), rules(), AS_OF)
    assert res.status is Status.INDETERMINATE
    assert res.missing and not res.evidence


def test_no_birth_date():
    res = run(None)
    assert res.status is Status.INDETERMINATE
    assert "birthDate" in res.missing[0]


def test_unreadable_birth_date_reported():
    rec = record(demographics=patient(None), unusable=[unusable(PATIENT, "age", "birthDate", "birthDate '1965-13' is not a date")])
    res = evaluate(rec, rules(), AS_OF)
    assert res.status is Status.INDETERMINATE and "1965-13" in res.reason


def test_birth_after_as_of_is_indeterminate():
    assert run("2026-02-01").status is Status.INDETERMINATE


def test_invalid_partial_date_does_not_raise():
    res = evaluate(record(demographics=patient(PartialDate(year=1960, month=2, day=31))), rules(), AS_OF)
    assert res.status is Status.INDETERMINATE


def test_milan_2007_limit_55():
    assert run("1970-01-15", rule_set="milan-2007").status is Status.NOT_MET  # 56
    assert run("1971-01-15", rule_set="milan-2007").status is Status.MET  # 55
    assert run("1971-01-15").status is Status.MET
    assert run("1970-01-15").status is Status.MET  # 56 is fine under milan-net
