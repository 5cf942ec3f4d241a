"""The ``milan-fhir`` command line (criteria.md §6): the top layer of the package (nothing imports it).

Structure, for whoever adds a command: one module per subcommand (:mod:`.evaluate`, :mod:`.cohort`,
:mod:`.upload`, :mod:`.serve`), each with ``add_parser(subparsers)`` that registers its parser (its options as
argparse parent parsers, the shared ones from :mod:`._common`) and sets ``run=<function(args) -> int>`` on it;
:data:`COMMANDS` lists them in help order. A command raises :class:`~milan_fhir.errors.MilanFhirError` for anything
the user can fix; :func:`main` turns it into one line ``milan-fhir: error: ...`` on stderr and exit status 2, never
a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from ..errors import MilanFhirError
from . import cohort, evaluate, serve, upload
from ._common import EXIT_ERROR, EXIT_OK, PROG, Parser, error_line

__all__ = ["main", "build_parser", "COMMANDS"]

#: The subcommands, in help order. Each registers its parser and sets ``run`` on it.
COMMANDS: tuple[Callable[[Any], argparse.ArgumentParser], ...] = (
    evaluate.add_parser,
    cohort.add_parser,
    upload.add_parser,
    serve.add_parser,
)


def build_parser() -> argparse.ArgumentParser:
    from .._runtime import software_version

    parser = Parser(
        prog=PROG,
        description=(
            "milan-fhir decides, from FHIR R4 data, whether a patient with neuroendocrine tumour (NET) liver "
            "metastases meets the Milan criteria for liver transplantation."
        ),
        epilog="Run 'milan-fhir COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {software_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0: done, 2: unusable input or options)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    try:
        return int(args.run(args))
    except MilanFhirError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `milan-fhir evaluate ... | head`: the reader left; not an error
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return EXIT_OK
