"""FHIR Bulk Data export (async pattern): jobs in the store, a chunked NDJSON writer, a runner.

``jobs`` keeps jobs, their files and the lease; ``scope`` says what each kind covers;
``writer`` writes one job's files; ``runner`` claims and runs jobs (``run_pending``,
``ExportRunner``).  The HTTP side is ``hub.fhir.operations.export``.
"""
