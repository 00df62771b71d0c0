"""Names the patient index uses on the wire: its tag, its identifier system, its codes."""

from __future__ import annotations

from typing import Any

PATIENT_INDEX = "https://ygt.example.org/fhir/CodeSystem/patient-index"
EMPI_SYSTEM = "https://ygt.example.org/fhir/sid/empi"
INVALID_IDENTIFIER = "https://ygt.example.org/fhir/StructureDefinition/identifier-invalid"
MASTER_TAG = {"system": PATIENT_INDEX, "code": "master", "display": "主索引 master record"}
# Master ids live in their own namespace, so a client can never write one by accident.
MASTER_PREFIX = "mpi-"


def is_master_id(res_id: str) -> bool:
    return res_id.startswith(MASTER_PREFIX)


def patient_id(reference: Any) -> str | None:
    """The id of a ``Patient/<id>`` reference (relative or absolute), else None."""
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str):
        return None
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    if len(parts) >= 4 and parts[-4] == "Patient" and parts[-2] == "_history":
        return parts[-3]
    return None


def ref(res_id: str) -> dict[str, str]:
    return {"reference": f"Patient/{res_id}"}
