"""The RiskAssessment writer validates in parts (to be fast): it must accept and reject exactly what R4B does."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milan_fhir._domain import Status
from milan_fhir._mappings import default_mappings
from milan_fhir._writers import fhir
from milan_fhir._writers.fhir import FhirBuildError

from _writer_samples import CAUTIONS, evaluation, full_record

_MAPPINGS = default_mappings()


def _samples() -> list[dict]:
    return [
        fhir.risk_assessment(evaluation(record=full_record()), _MAPPINGS, validate=False),
        fhir.risk_assessment(evaluation(), _MAPPINGS, validate=False),
        fhir.risk_assessment(
            evaluation(statuses={"stable_disease": Status.INDETERMINATE, "age": Status.NOT_MET}, cautions=tuple(CAUTIONS.values())),
            _MAPPINGS, validate=False,
        ),
    ]


def _paths(node, prefix=()):
    """Every path to a value inside ``node`` (dict keys and list indexes)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


_HOSTILE = st.sampled_from(["", " ", "\u0000", "x", 0, -1, 1.5, True, None, [], {}, ["x"], {"x": 1},
                            "2026-13-45", "not a uri with spaces", "a" * 3])


def _verdict(check, ra) -> bool:
    try:
        check(ra)
    except FhirBuildError:
        return False
    return True


def test_valid_resources_pass_both_ways():
    for ra in _samples():
        assert _verdict(fhir._check_risk_assessment, ra)
        assert _verdict(lambda r: fhir._check("RiskAssessment", r), ra)


def test_an_invalid_reason_in_a_criterion_extension_is_refused():
    ra = _samples()[2]
    paths = [p for p in _paths(ra) if p and p[-1] == "valueString" and "prediction" in p]
    assert paths, "the sample has criterion reasons"
    for bad in ("", 7):
        broken = copy.deepcopy(ra)
        node = broken
        for k in paths[0][:-1]:
            node = node[k]
        node["valueString"] = bad
        with pytest.raises(FhirBuildError):
            fhir._check_risk_assessment(broken)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_parts_agree_with_the_whole(data):
    ra = copy.deepcopy(data.draw(st.sampled_from(_samples())))
    paths = [p for p in _paths(ra) if p]
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(paths))
        node = ra
        try:
            for k in path[:-1]:
                node = node[k]
            key = path[-1]
            if not (isinstance(node, dict) and isinstance(key, str) or isinstance(node, list) and isinstance(key, int)):
                continue  # an earlier change put another kind of value on the way there
            if data.draw(st.booleans()) and isinstance(node, dict):
                node.pop(key, None)
            else:
                node[key] = copy.deepcopy(data.draw(_HOSTILE))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced the way there
    whole = _verdict(lambda r: fhir._check("RiskAssessment", r), copy.deepcopy(ra))
    parts = _verdict(fhir._check_risk_assessment, copy.deepcopy(ra))
    assert parts == whole, ra
