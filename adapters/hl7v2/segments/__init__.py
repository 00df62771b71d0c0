"""Segment mappers shared by every message type: PID/PD1/NK1 → Patient, PV1/PV2 → Encounter,
DG1 → Condition, PR1 → Procedure, ORC/OBR → ServiceRequest, OBR → DiagnosticReport,
OBX → Observation, SPM → Specimen, and the Provenance of the message.  Pure functions that add
entries to a ``Context``."""
