"""Talking to FHIR servers: the HTTP client, fetching one patient's data, and safe write-back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: name -> module; imported on first access (PEP 562), so that ``_client._smart`` (the SMART option names the
#: command line's parser shows) does not import the whole client
_LAZY = {
    "FhirClient": "._client", "entry_error": "._client", "error_for": "._client", "next_link": "._client",
    "FetchResult": "._fetch", "fetch_patient": "._fetch",
    "PatientSelection": "._server", "ServerResult": "._server", "evaluate_on_server": "._server",
    "evaluate_patient": "._server", "list_patients": "._server", "select_patients": "._server",
    "write_back": "._server",
    "to_transaction": "._upload", "upload_bundle": "._upload", "upload_path": "._upload",
    "WriteResult": "._writeback", "find_current": "._writeback", "upload_definitions": "._writeback",
    "validate_resource": "._writeback",
}

if TYPE_CHECKING:
    from ._client import FhirClient, entry_error, error_for, next_link
    from ._fetch import FetchResult, fetch_patient
    from ._server import (
        PatientSelection,
        ServerResult,
        evaluate_on_server,
        evaluate_patient,
        list_patients,
        select_patients,
        write_back,
    )
    from ._upload import to_transaction, upload_bundle, upload_path
    from ._writeback import WriteResult, find_current, upload_definitions, validate_resource


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "FhirClient",
    "FetchResult",
    "PatientSelection",
    "ServerResult",
    "WriteResult",
    "entry_error",
    "error_for",
    "evaluate_on_server",
    "evaluate_patient",
    "fetch_patient",
    "find_current",
    "list_patients",
    "next_link",
    "select_patients",
    "to_transaction",
    "upload_bundle",
    "upload_definitions",
    "upload_path",
    "validate_resource",
    "write_back",
]
