"""Shared pytest fixtures.

HAPI FHIR integration fixtures (helpers in ``tests/hapi.py``; tests using them are marked ``@pytest.mark.hapi``):

- ``hapi_base_url`` (session): the FHIR base URL, without trailing slash. ``$MILAN_FHIR_BASE_URL`` when set;
  otherwise the local test server of ``tests/hapi-server/`` is built (only when its sources changed) and
  started on a free loopback port, and stopped at session end. When it cannot be built or started the test is
  skipped, or fails when ``CI=true``.
- ``fhir_run_tag`` (session): a :class:`hapi.RunTag` unique to this session (system
  ``http://milan-fhir.org/fhir/CodeSystem/test-run``, code a uuid4 hex). Put it on everything a test writes
  (``fhir_run_tag.apply(resource)`` or ``meta=fhir_run_tag.meta()``); at session end everything carrying it is
  deleted and expunged (``hapi.purge``), before the local server stops.
"""

from __future__ import annotations

import os
import warnings

import pytest

import hapi


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"HAPI FHIR test server unavailable (CI=true, so this fails): {reason}", pytrace=False)
    pytest.skip(f"HAPI FHIR test server unavailable: {reason}")


@pytest.fixture(scope="session")
def hapi_base_url():
    external = os.environ.get("MILAN_FHIR_BASE_URL", "").strip()
    if external:
        yield external.rstrip("/")
        return
    try:
        hapi.build_jar()
        server = hapi.LocalHapiServer()
        server.start()
    except hapi.HapiUnavailable as exc:
        _unavailable(str(exc))
        return  # not reached: skip/fail raise
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fhir_run_tag(hapi_base_url):
    tag = hapi.RunTag.new()
    yield tag
    try:
        result = hapi.purge(hapi_base_url, tag)
    except Exception as exc:  # teardown must not hide test results; say what was left
        warnings.warn(f"purging test data tagged {tag.token} from {hapi_base_url} failed: {exc!r}")
        return
    if result["remaining"]:
        warnings.warn(f"test data tagged {tag.token} still on {hapi_base_url}: {result['remaining']}")
    if result["expunge_error"]:
        warnings.warn(f"test data tagged {tag.token} deleted but not all expunged: {result['expunge_error']}")
