"""Names the command line shows before any HTTP is needed (no import of ``requests`` here)."""

from __future__ import annotations

__all__ = ["SMART_ENV"]

#: the environment variables SMART Backend Services options fall back on
SMART_ENV = {
    "client_id": "MILAN_FHIR_SMART_CLIENT_ID",
    "key": "MILAN_FHIR_SMART_KEY",
    "kid": "MILAN_FHIR_SMART_KID",
    "token_url": "MILAN_FHIR_SMART_TOKEN_URL",
    "scopes": "MILAN_FHIR_SMART_SCOPES",
}
