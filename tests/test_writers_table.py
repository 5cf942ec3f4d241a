"""The terminal table: readable without colour, wrapped to the width."""

from __future__ import annotations

from milan_fhir._domain import Status
from milan_fhir._writers import table

from _writer_samples import CAUTIONS, evaluation


def _ev():
    return evaluation(statuses={"age": Status.NOT_MET, "stable_disease": Status.INDETERMINATE})


def test_header_and_one_row_per_criterion():
    out = table.render([_ev()], width=120, colour=False, unicode=False)
    lines = out.splitlines()
    assert lines[0].startswith("Patient/p1  INELIGIBLE  as of 2026-01-15  rule set milan-net")
    for label in table.LABELS.values():
        assert sum(1 for line in lines if line.startswith(label)) == 1, label
    age = next(line for line in lines if line.startswith("Age"))
    assert "x not met" in age and "age is not_met" in age
    assert "\x1b[" not in out  # no colour when not asked


def test_wraps_to_width():
    long_reason = evaluation()
    for width in (60, 80, 120):
        out = table.render([long_reason, _ev()], width=width, colour=False)
        assert max(len(line) for line in out.splitlines()) <= width


def test_narrow_terminal_stacks_reason_under_label():
    out = table.render([_ev()], width=45, colour=False, unicode=False)
    assert max(len(line) for line in out.splitlines()) <= 45
    assert "    age is not_met" in out


def test_colour_only_when_asked_and_status_words_stay():
    out = table.render([_ev()], width=120, colour=True, unicode=True)
    assert "\x1b[31m" in out and "not met" in out and "indeterminate" in out


def test_no_colour_env(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert table.use_colour() is False


def test_empty_input():
    assert "No patients" in table.render([], width=80, colour=False)


def test_cautions_block_above_the_criteria():
    ev = evaluation(cautions=[CAUTIONS["prior-malignancy"], CAUTIONS["deceased"]])
    out = table.render([ev], width=140, colour=False, unicode=False)
    lines = out.splitlines()
    assert lines[0].startswith("Patient/p1  INELIGIBLE")
    head = next(i for i, line in enumerate(lines) if line.startswith("Cautions (2)"))
    deceased = next(i for i, line in enumerate(lines) if line.startswith("Deceased"))
    prior = next(i for i, line in enumerate(lines) if line.startswith("Prior malignancy"))
    first_criterion = next(i for i, line in enumerate(lines) if line.startswith("Age"))
    assert head < deceased < prior < first_criterion  # in the order of CAUTION_CODES, before the criteria
    assert "! excludes" in lines[deceased] and "Patient deceased on 2025-12-01" in lines[deceased]
    assert "verdict ineligible" in out
    assert "! informs" in lines[prior] and "verdict unchanged" in out
    assert "No cautions" not in out


def test_capping_caution_shown_and_no_caution_note():
    out = table.render([evaluation(cautions=[CAUTIONS["other-malignancy"]])], width=120, colour=True, unicode=True)
    assert "Other active malignancy" in out and "! caps" in out and "\x1b[33m! caps" in out
    assert "INDETERMINATE" in out
    plain = table.render([evaluation()], width=120, colour=False)
    assert "No cautions" in plain and "Cautions (" not in plain


def test_cautions_wrap_to_width():
    ev = evaluation(cautions=list(CAUTIONS.values()))
    for width in (45, 60, 100):
        out = table.render([ev], width=width, colour=False)
        assert max(len(line) for line in out.splitlines()) <= width
        assert "prostate" in out and "Liver transplantation" in out
