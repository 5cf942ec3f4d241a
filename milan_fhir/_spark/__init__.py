"""The Spark engine of ``milan-fhir cohort`` (public face: :mod:`milan_fhir.spark`; docs/spark.md).

- :mod:`._tasks`: what runs inside the executors, on Arrow batches (no pyspark import): the scan (the local
  engine's prefilter, line reader and adapters, to compact facts) and the group/evaluate step (the local
  engine's :func:`milan_fhir._cohort._group.gather` and ``evaluate_patients``).
- :mod:`._engine`: the driver: the DataFrames, and the outputs written with the local engine's steps.
"""
