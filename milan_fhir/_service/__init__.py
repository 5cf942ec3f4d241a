"""The CDS Hooks service of ``milan-fhir serve`` (extra ``milan-fhir[server]``): discovery with prefetch
templates, one ``patient-view`` service per rule set, cards that agree with ``evaluate``, feedback, and the
verification of the CDS client's JWT. See ``docs/cds-hooks.md``."""

from __future__ import annotations

from ._app import ServiceConfig, create_app, discovery, evaluate_hook
from ._prefetch import prefetch_templates
from ._security import JwtVerifier, TrustedIssuer, parse_trust

__all__ = [
    "ServiceConfig",
    "create_app",
    "discovery",
    "evaluate_hook",
    "prefetch_templates",
    "JwtVerifier",
    "TrustedIssuer",
    "parse_trust",
]
