"""Writers: turn :class:`~milan_fhir._domain.Evaluation` results into JSON lines, terminal tables and FHIR.

``_writers.fhir`` is the only code in the package that builds FHIR resources.
"""
