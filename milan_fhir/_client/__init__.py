"""Talking to FHIR servers: the HTTP client, fetching one patient's data, and safe write-back."""

from __future__ import annotations

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
