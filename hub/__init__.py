"""The shared-records hub of a county medical community: FHIR R4 server, store and services."""

__version__ = "0.1.0"
