"""Endpoints for the community office (not FHIR): runs, lists and printable views."""
