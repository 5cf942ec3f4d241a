"""An explicit argument wins over the environment variable that sets its default: ``FhirClient(retries=...)`` over
``MILAN_FHIR_RETRIES`` (tests/test_client_unit.py counts the requests), a ``--smart-*`` option over its
``MILAN_FHIR_SMART_*`` variable, ``Limits(...)`` over ``MILAN_FHIR_MAX_LINE_BYTES``, ``render(colour=True)`` over
``NO_COLOR``."""

from __future__ import annotations

from pathlib import Path

import pytest

from milan_fhir import FhirClient, evaluate, render_table
from milan_fhir._cli import build_parser
from milan_fhir._cli._common import smart_auth_from_args
from milan_fhir._sources import Limits, read_path
from milan_fhir.errors import InputError
from smart_servers import pem, rsa_key

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "01-ileal-net-eligible.json"


def test_retries_argument_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("MILAN_FHIR_RETRIES", "0")
    with FhirClient("http://127.0.0.1:9", retries=4) as explicit, FhirClient("http://127.0.0.1:9") as from_env:
        assert explicit.retries == 4
        assert from_env.retries == 0


def test_smart_options_win_over_their_environment_variables(tmp_path, monkeypatch):
    mine, theirs = tmp_path / "mine.pem", tmp_path / "theirs.pem"
    mine.write_bytes(pem(rsa_key()))
    theirs.write_bytes(pem(rsa_key()))
    monkeypatch.delenv("MILAN_FHIR_TOKEN", raising=False)
    monkeypatch.setenv("MILAN_FHIR_SMART_CLIENT_ID", "from-env")
    monkeypatch.setenv("MILAN_FHIR_SMART_KEY", str(theirs))
    monkeypatch.setenv("MILAN_FHIR_SMART_KID", "env-kid")
    monkeypatch.setenv("MILAN_FHIR_SMART_SCOPES", "system/Patient.rs")
    base = ["evaluate", "--server", "https://fhir.example.org/fhir", "--patient", "p1"]
    args = build_parser().parse_args([*base, "--smart-client-id", "from-option", "--smart-key", str(mine),
                                      "--smart-kid", "option-kid", "--smart-scope", "system/Condition.rs"])
    auth = smart_auth_from_args(args, args.server)
    assert (auth.client_id, auth.kid, auth._scopes_given) == ("from-option", "option-kid", ["system/Condition.rs"])
    fallback = smart_auth_from_args(build_parser().parse_args(base), "https://fhir.example.org/fhir")
    assert (fallback.client_id, fallback.kid, fallback._scopes_given) == ("from-env", "env-kid", ["system/Patient.rs"])


def test_limits_argument_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("MILAN_FHIR_MAX_LINE_BYTES", "100")  # far smaller than the fixture Bundle
    problems: list = []
    with pytest.raises(InputError):
        list(read_path(FIXTURE, problems))
    read = list(read_path(FIXTURE, problems := [], Limits(max_line_bytes=64 << 20)))
    assert read and not problems


def test_colour_argument_wins_over_no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    evs = evaluate(FIXTURE, as_of="2026-06-30")
    assert "\x1b[" in render_table(evs, colour=True)
    assert "\x1b[" not in render_table(evs)
