"""Evaluations travel between processes and runs as pickles (cohort workers, the write-back pieces a resumed
cohort reuses): they come back equal, and one pickled before a field was added gets that field's default."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import milan_fhir
from milan_fhir._domain import Evaluation

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "01-ileal-net-eligible.json"


def test_an_evaluation_pickles_whole():
    (ev,) = milan_fhir.evaluate(FIXTURE, as_of="2026-06-30")
    assert ev.liver_metastasis is not None
    back = pickle.loads(pickle.dumps(ev))
    assert back == ev and milan_fhir.to_risk_assessment(back) == milan_fhir.to_risk_assessment(ev)


def test_a_pickle_from_before_a_field_was_added_gets_its_default():
    (ev,) = milan_fhir.evaluate(FIXTURE, as_of="2026-06-30")
    state = ev.__getstate__()
    del state["__dict__"]["liver_metastasis"]  # as written by the version before the field existed
    old = Evaluation.__new__(Evaluation)
    old.__setstate__(state)
    assert old.liver_metastasis is None
    ra = milan_fhir.to_risk_assessment(old)  # no AttributeError: the RiskAssessment just names no condition
    assert "condition" not in ra and ra["subject"] == {"reference": ev.patient}
    assert old.as_of == dt.date(2026, 6, 30)
