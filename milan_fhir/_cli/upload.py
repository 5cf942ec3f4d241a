"""``milan-fhir upload PATH --server URL``: post FHIR Bundles (a file or a folder) to a server as transactions."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InputError, printable
from ._common import EXIT_ERROR, EXIT_OK, PROG, server_client, server_option, smart_auth_from_args, smart_options
from ._common import timeout_option, warn

__all__ = ["add_parser", "run"]

_EPILOG = """
examples:
  milan-fhir upload fixtures/ --server http://localhost:8080/fhir
      every Bundle of the folder, one transaction per file (PUT per resource id: uploading twice is harmless)
  milan-fhir upload fixtures/ --server http://localhost:8080/fhir --definitions
      also the StructureDefinitions and CodeSystems milan-fhir's RiskAssessments use (for $validate)
  milan-fhir upload fixtures/ --server http://localhost:8080/fhir --exclude '33-*' --exclude '42-*' --exclude '58-*'
      leave out vignette 33 (data about a Patient that does not exist, on purpose: a server that checks
      references refuses it)

exit status: 0 when every file was written; 2 when a file was refused (the others are still written; a refused
file is written not at all, a transaction being all or nothing).
"""


def _path_argument() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("path", metavar="PATH", help="a FHIR Bundle (JSON) or a folder of them")
    return parent


def _upload_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--definitions", action="store_true",
                        help="also upload milan-fhir's StructureDefinitions and CodeSystems")
    parent.add_argument("--exclude", metavar="PATTERN", action="append", default=[],
                        help="leave out the files of the folder whose name matches this shell pattern (e.g. '33-*'); repeatable")
    parent.add_argument("--tag", metavar="SYSTEM|CODE",
                        help="add this meta.tag to every resource uploaded (to find or purge them later)")
    return parent


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "upload",
        help="upload FHIR Bundles (a file or folder) to a FHIR server as transactions",
        description=(
            "Upload FHIR Bundles to a FHIR R4 server, one transaction per file. A collection Bundle becomes a "
            "transaction with a PUT per resource id; references to other entries by fullUrl become Type/id."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[
            _path_argument(),
            server_option("the FHIR R4 server base URL", required=True),
            _upload_options(),
            timeout_option(60),
            smart_options(),
        ],
    )
    p.set_defaults(run=run)
    return p


def _tag(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    system, sep, code = text.partition("|")
    if not sep or not system or not code:
        raise InputError(f"--tag {text!r} must be SYSTEM|CODE")
    return system, code


def run(args: argparse.Namespace) -> int:
    from .._client._upload import bundle_files, read_bundle, upload_bundle
    from .._client._writeback import upload_definitions
    from ..errors import FhirAuthError, FhirConnectionError, FhirServerError

    tag = _tag(args.tag)
    files = bundle_files(args.path, tuple(args.exclude))
    failed = total = 0
    with server_client(args, smart_auth_from_args(args, args.server, write=True), timeout=args.timeout) as client:
        if args.definitions:
            names = upload_definitions(client, tag=tag)
            print(f"{PROG}: uploaded {len(names)} definitions ({', '.join(names)})", file=sys.stderr)
        for f in files:
            try:
                n = upload_bundle(client, read_bundle(f), tag=tag, file=str(f))
            except (FhirConnectionError, FhirAuthError):
                raise
            except (FhirServerError, InputError) as exc:
                failed += 1
                warn(str(exc))
                continue
            total += n
            print(f"{PROG}: {printable(str(f))}: {n} resources written", file=sys.stderr)
    print(f"{PROG}: {total} resources from {len(files) - failed} of {len(files)} file(s) written to "
          f"{client.base_url}", file=sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK
