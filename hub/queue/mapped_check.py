"""Mapped Bundles are checked against the R4 models before the sender is answered.

A resource the mapping made that fails validation (a value passed through that FHIR does not
take) is answered AE with an ERR naming the segment it came from, and kept for replay, like any
message that cannot be mapped; it is not acknowledged AA only to fail in the worker.  The
Bundle is then tagged, so the worker, which applies it with the hub's own services, does not
validate the same resources a second time.
"""

from __future__ import annotations

from typing import Any

from adapters.hl7v2.errors import DATA_TYPE_ERROR
from adapters.hl7v2.mapped import Mapped, MappingError
from hub.fhir.errors import FhirError
from hub.fhir.validation import validate_resource

VALIDATED = {"system": "https://ygt.example.org/fhir/CodeSystem/feed-intake", "code": "validated"}
# Where each mapped resource type comes from (the ERR names the segment; the text the element).
_SEGMENT = {
    "Patient": "PID",
    "RelatedPerson": "NK1",
    "Encounter": "PV1",
    "Condition": "DG1",
    "Procedure": "PR1",
    "ServiceRequest": "OBR",
    "Specimen": "SPM",
    "DiagnosticReport": "OBR",
    "Observation": "OBX",
    "Provenance": "MSH",
}


def validated(mapped: Mapped) -> Mapped:
    """``mapped`` with its Bundle tagged as validated; MappingError (AE) naming the first
    resource that is not valid FHIR."""
    bundle = mapped.bundle
    seen: dict[str, int] = {}
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource")
        if not isinstance(resource, dict) or "$" in str(entry.get("request", {}).get("url", "")):
            continue  # an operation's Parameters (A24 link) are checked by the operation
        res_type = str(resource.get("resourceType") or "resource")
        seen[res_type] = seen.get(res_type, 0) + 1
        try:
            validate_resource(resource)
        except FhirError as exc:
            raise MappingError(
                f"the {res_type} mapped from this message is not valid FHIR: {exc}",
                segment=_SEGMENT.get(res_type, "MSH"),
                sequence=seen[res_type],  # the n-th OBX gave the n-th Observation
                code=DATA_TYPE_ERROR,
            ) from exc
    meta = bundle.setdefault("meta", {})
    meta["tag"] = [*(meta.get("tag") or []), VALIDATED]
    return mapped


def is_validated(bundle: dict[str, Any]) -> bool:
    return VALIDATED in ((bundle.get("meta") or {}).get("tag") or [])
