"""The CDS Hooks 2.0 service (FastAPI): discovery, one ``patient-view`` service per rule set, feedback.

- ``GET /cds-services``: the discovery document; one service per rule set of the mappings (``milan-net``,
  ``milan-2007``, layered local ones), its ``id`` the rule set's name, hook ``patient-view``, and the prefetch
  templates of :mod:`._prefetch`.
- ``POST /cds-services/{id}``: evaluate the patient of ``context.patientId`` from prefetch (what it lacks read
  from ``fhirServer`` with ``fhirAuthorization``), through the same reader, record builder and evaluation as
  every other path; answer one card. Prefetch lacking and no ``fhirServer``: ``412`` with an OperationOutcome.
- ``POST /cds-services/{id}/feedback``: accepted (``200``) and logged as counts (card uuid, outcome): no PHI.
- Every call is authorised by the CDS client's JWT (:mod:`._security`), unless the service was started with
  ``insecure_no_auth`` for local trials. Refusals are ``401`` with ``WWW-Authenticate: Bearer``; the log says why
  in words that name no token, patient or resource.
"""


import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from .._mappings import Mappings
from ..errors import FhirServerError, MilanFhirError
from ._prefetch import PrefetchMissing, prefetch_templates, resolve_prefetch
from ._security import AuthFailure, JwtVerifier

__all__ = ["ServiceConfig", "create_app", "evaluate_hook", "HookError"]

log = logging.getLogger("milan_fhir.service")

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass
class ServiceConfig:
    """What ``milan-fhir serve`` was started with."""

    mappings: Mappings
    verifier: JwtVerifier | None  # None only with insecure_no_auth
    public_url: str  # the service's external base URL ("https://cds.example.org"): the JWT audience's prefix
    as_of: dt.date | None = None  # None: today (UTC) at each call
    insecure_no_auth: bool = False
    cors_origins: list[str] = field(default_factory=list)
    fhir_timeout: float = 10.0  # seconds for each request to the EHR's FHIR server
    client_factory: Callable[..., Any] | None = None  # (base_url, token) -> FhirClient; tests may replace it


class HookError(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid") -> None:  # noqa: D107
        self.status = status
        self.code = code
        super().__init__(message)


def operation_outcome(message: str, code: str = "processing") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": message}],
    }


def _software() -> str:
    from .._runtime import software_version

    return software_version()


def discovery(config: ServiceConfig) -> dict[str, Any]:
    prefetch = prefetch_templates(config.mappings)
    services = []
    for name, rules in config.mappings.rule_sets.items():
        services.append({
            "hook": "patient-view",
            "id": name,
            "title": f"Milan criteria for liver transplantation: {rules.title}",
            "description": (
                f"Whether a patient with neuroendocrine tumour liver metastases meets the Milan criteria of rule "
                f"set {name} {rules.version} ({rules.source}): each of six criteria met, not met or "
                "indeterminate, with its evidence and what would settle it."
            ),
            "prefetch": prefetch,
            "usageRequirements": (
                "Prefetch as templated, or give fhirServer and fhirAuthorization with read access to Patient, "
                "Condition, Observation and Procedure."
            ),
        })
    return {"services": services}


def _client_factory(config: ServiceConfig, fhir_server: str, authorization: dict[str, Any] | None) -> Callable[[], Any]:
    token = None
    if isinstance(authorization, dict):
        token = authorization.get("access_token")
        token_type = str(authorization.get("token_type") or "Bearer")
        if token_type.lower() != "bearer":
            raise HookError(400, f"fhirAuthorization.token_type {token_type!r} is not supported (Bearer only)")
        if token is not None and not isinstance(token, str):
            raise HookError(400, "fhirAuthorization.access_token must be a string")

    def make() -> Any:
        if config.client_factory is not None:
            return config.client_factory(fhir_server, token)
        from .._client import FhirClient

        return FhirClient(fhir_server, token=token, timeout=config.fhir_timeout, retries=1)

    return make


def evaluate_hook(config: ServiceConfig, service_id: str, body: Any) -> dict[str, Any]:
    """The CDS Hooks response (``{"cards": [...]}``) for one call of service ``service_id``."""
    from .._adapters import build_records
    from .._runtime import today_utc as _today_utc
    from .._domain import PatientRecord
    from .._evaluate import evaluate_record
    from .._sources import read_resources
    from ._cards import card

    rules = config.mappings.rule_sets.get(service_id)
    if rules is None:
        raise HookError(404, f"no CDS service {service_id!r} here (see GET /cds-services)", "not-found")
    if not isinstance(body, dict):
        raise HookError(400, "the request body must be a JSON object (a CDS Hooks request)")
    hook = body.get("hook")
    if hook != "patient-view":
        raise HookError(400, f"service {service_id} answers the patient-view hook, not {hook!r}")
    if not isinstance(body.get("hookInstance"), str):
        raise HookError(400, "hookInstance is missing")
    context = body.get("context")
    patient_id = context.get("patientId") if isinstance(context, dict) else None
    if not isinstance(patient_id, str) or not _FHIR_ID.match(patient_id):
        raise HookError(400, "context.patientId is missing or not a FHIR id")
    fhir_server = body.get("fhirServer")
    authorization = body.get("fhirAuthorization")
    if authorization is not None and not fhir_server:
        raise HookError(400, "fhirAuthorization is given without fhirServer")
    if fhir_server is not None and (not isinstance(fhir_server, str) or not fhir_server.startswith(("https://", "http://"))):
        raise HookError(400, "fhirServer must be an http(s) URL")
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise HookError(400, "prefetch must be a JSON object")
    factory = _client_factory(config, fhir_server, authorization) if fhir_server else None
    try:
        inputs, origin = resolve_prefetch(prefetch, patient_id, config.mappings, factory)
    except FhirServerError as exc:
        log.warning("reading the EHR's FHIR server failed: %s", type(exc).__name__)
        raise HookError(502, f"the FHIR server could not give the data prefetch lacked: {exc}", "exception") from None
    problems: list[Any] = []
    patient = f"Patient/{patient_id}"
    try:
        records = build_records(read_resources(inputs, problems), config.mappings, problems, patient=patient)
    except MilanFhirError as exc:
        raise HookError(400, f"the prefetch data cannot be read: {exc}") from None
    record = records.get(patient) or PatientRecord(patient=patient)
    as_of = config.as_of or _today_utc()
    ev = evaluate_record(record, rules, as_of, config.mappings.version)
    if problems:
        log.info("%d resource(s) of a hook call skipped as invalid", len(problems))
    return {"cards": [card(ev, rules, software=_software(), data_origin=origin)]}


# ---------------------------------------------------------------------------------------------- the app


def create_app(config: ServiceConfig) -> Any:
    """The FastAPI application of the service."""
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="milan-fhir CDS Hooks service", docs_url=None, redoc_url=None, openapi_url=None)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
            max_age=600,
        )
    base = config.public_url.rstrip("/")

    def answer(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        media = "application/fhir+json" if isinstance(data, dict) and "resourceType" in data else "application/json"
        return Response(orjson.dumps(data), status_code=status, media_type=media, headers=headers)

    def authorise(request: Request, audiences: list[str]) -> Response | None:
        if config.insecure_no_auth:
            return None
        assert config.verifier is not None
        try:
            config.verifier.verify(request.headers.get("authorization"), audiences[0] if len(audiences) == 1 else audiences)
        except AuthFailure as exc:
            log.warning("refused a call to %s: %s", request.url.path, exc)
            return answer(401, operation_outcome(f"unauthorised: {exc}", "security"),
                          {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return None

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise HookError(400, "the request body is not JSON") from None

    @app.get("/cds-services")
    async def get_discovery(request: Request) -> Response:
        refused = authorise(request, [f"{base}/cds-services"])
        if refused is not None:
            return refused
        return answer(200, discovery(config))

    @app.post("/cds-services/{service_id}")
    async def call_service(service_id: str, request: Request) -> Response:
        refused = authorise(request, [f"{base}/cds-services/{service_id}"])
        if refused is not None:
            return refused
        try:
            body = await body_of(request)
            result = await run_in_threadpool(evaluate_hook, config, service_id, body)
        except PrefetchMissing as exc:
            log.info("answered 412: prefetch incomplete and no fhirServer")
            return answer(412, operation_outcome(str(exc), "incomplete"))
        except HookError as exc:
            log.info("answered %d: %s", exc.status, exc.code)
            return answer(exc.status, operation_outcome(str(exc), exc.code))
        except Exception as exc:  # a bug: say so without a traceback that could carry patient data into the log
            log.error("hook evaluation failed (%s); answered 500", type(exc).__name__)
            return answer(500, operation_outcome("the service failed to evaluate this call", "exception"))
        return answer(200, result)

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> Response:
        refused = authorise(request, [f"{base}/cds-services/{service_id}/feedback", f"{base}/cds-services/{service_id}"])
        if refused is not None:
            return refused
        if service_id not in config.mappings.rule_sets:
            return answer(404, operation_outcome(f"no CDS service {service_id!r} here", "not-found"))
        try:
            body = await body_of(request)
        except HookError as exc:
            return answer(400, operation_outcome(str(exc)))
        items = body.get("feedback") if isinstance(body, dict) else None
        if not isinstance(items, list):
            return answer(400, operation_outcome("feedback must be a list"))
        outcomes: dict[str, int] = {}
        for item in items:
            outcome = str(item.get("outcome")) if isinstance(item, dict) else "invalid"
            key = outcome if outcome in ("accepted", "overridden") else "other"
            outcomes[key] = outcomes.get(key, 0) + 1
        # no PHI: the service id and how many cards were accepted or overridden, nothing else
        log.info("feedback for %s: %s", service_id, ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "empty")
        return answer(200, {})

    return app
