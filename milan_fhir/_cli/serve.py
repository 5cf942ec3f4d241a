"""``milan-fhir serve``: run the CDS Hooks service (:mod:`milan_fhir._service`) under uvicorn."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ._common import EXIT_OK, as_of_option, mappings_option, parse_as_of

if TYPE_CHECKING:
    from .._service import ServiceConfig

__all__ = ["add_parser", "build_config", "run"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090

_EPILOG = """\
examples:
  milan-fhir serve --trust https://ehr.example.org=https://ehr.example.org/.well-known/jwks.json \\
      --public-url https://cds.example.org
      the service, trusting the JWTs the EHR signs with the keys of its JWKS
  milan-fhir serve --insecure-no-auth --as-of 2026-06-30
      a local trial without authentication (a warning is printed on every start), evaluating as of a fixed date

endpoints: GET /cds-services (discovery), POST /cds-services/{rule set} (the patient-view hook),
POST /cds-services/{rule set}/feedback. See docs/cds-hooks.md.
"""

_INSECURE_WARNING = (
    "WARNING: --insecure-no-auth: this CDS service accepts calls from anyone, without a JWT. Use it only for "
    "local trials, never with patient data on a network."
)


def _listen_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parent.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parent.add_argument("--trust", metavar="ISSUER=JWKS_URL_OR_FILE", action="append", default=[],
                        help="a CDS client whose JWTs are accepted: its iss, and its JWKS (URL or file); repeatable")
    parent.add_argument("--allow-alg", metavar="ALG", action="append", default=[], choices=["RS256", "ES256"],
                        help="also accept JWTs signed with RS256 or ES256 (RS384 and ES384 always are); repeatable")
    parent.add_argument("--public-url", metavar="URL",
                        help="the service's external base URL, the prefix of the JWT audience (default "
                             "http://HOST:PORT); set it behind a proxy")
    return parent


def _service_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--cors-origin", metavar="ORIGIN", action="append", default=[],
                        help="allow browser calls from this origin (https://ehr.example.org); repeatable")
    parent.add_argument("--insecure-no-auth", action="store_true",
                        help="accept calls without a JWT (local trials only; warns on every start)")
    parent.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="log level (default info); no level logs tokens, JWTs or patient data")
    return parent


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the CDS Hooks service (patient-view cards; needs milan-fhir[server])",
        description=textwrap.fill(
            "Run a CDS Hooks 2.0 service: one patient-view service per rule set, evaluating the Milan criteria "
            "from the EHR's prefetch (or its FHIR server) and answering one card. Every call must carry a JWT "
            "signed by a trusted CDS client.",
            width=100,
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[
            _listen_options(),
            mappings_option("a YAML mapping file layered on the defaults (its rule sets become services); repeatable"),
            as_of_option("evaluate as of this date (default: today, UTC, at each call); every card names the date"),
            _service_options(),
        ],
    )
    p.set_defaults(run=run)
    return p


def build_config(args: argparse.Namespace) -> ServiceConfig:
    from .._runtime import resolve_mappings
    from .._service import ServiceConfig
    from .._service._security import DEFAULT_ALGORITHMS, JwtVerifier, parse_trust

    if args.insecure_no_auth and args.trust:
        raise InputError("give either --trust ISSUER=JWKS (one or more) or --insecure-no-auth, not both")
    if not args.insecure_no_auth and not args.trust:
        raise InputError(
            "the service needs at least one trusted CDS client: --trust ISSUER=JWKS_URL_OR_FILE "
            "(or --insecure-no-auth for a local trial)"
        )
    if not (0 < args.port < 65536):
        raise InputError(f"--port {args.port} is not a port number")
    public_url = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    if not public_url.startswith(("http://", "https://")):
        raise InputError(f"--public-url {public_url!r} must start with https:// (or http:// for a trial)")
    verifier = None
    if not args.insecure_no_auth:
        verifier = JwtVerifier(parse_trust(args.trust), algorithms=DEFAULT_ALGORITHMS + tuple(args.allow_alg))
    mappings = resolve_mappings(args.mappings or None)
    return ServiceConfig(
        mappings=mappings,
        verifier=verifier,
        public_url=public_url,
        as_of=parse_as_of(args.as_of),
        insecure_no_auth=args.insecure_no_auth,
        cors_origins=list(args.cors_origin),
    )


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise InputError("milan-fhir serve needs the server extra: pip install 'milan-fhir[server]'") from None
    config = build_config(args)
    from .._client._session import install_redaction
    from .._service import create_app

    install_redaction()
    if config.insecure_no_auth:
        print(f"milan-fhir serve: {_INSECURE_WARNING}", file=sys.stderr, flush=True)
    services = ", ".join(config.mappings.rule_sets)
    as_of = config.as_of.isoformat() if config.as_of else "today (UTC) at each call"
    print(
        f"milan-fhir serve: CDS Hooks services {services} at {config.public_url}/cds-services, as of {as_of}",
        file=sys.stderr, flush=True,
    )
    uvicorn.run(
        create_app(config), host=args.host, port=args.port, log_level=args.log_level, access_log=False,
        server_header=False,
    )
    return EXIT_OK
