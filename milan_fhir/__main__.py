"""``python -m milan_fhir``: the same as the ``milan-fhir`` command."""

from ._cli import main

raise SystemExit(main())
