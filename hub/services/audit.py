"""AuditEvent resources for what the hub itself does to records (IHE BALP conventions).

Issue 8 audits every access; this module builds the event for the hub's own record changes
(patient merges and links), so that each can be traced and undone.
"""

from __future__ import annotations

from typing import Any

from hub.search.values import format_instant
from hub.store.repository import now_micros

DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
HUB_DEVICE = {"display": "县域医共体 shared-records hub"}


def audit_event(
    *,
    subtype: dict[str, str],
    action: str,
    entities: list[tuple[str, str]],
    description: str,
    agent: str | None = None,
    outcome: str = "0",
) -> dict[str, Any]:
    """``entities``: (reference, role) pairs; role is an object-role code (1 = patient)."""
    return {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110110", "display": "Patient Record"},
        "subtype": [subtype],
        "action": action,
        "recorded": format_instant(now_micros()),
        "outcome": outcome,
        "outcomeDesc": description,
        "agent": [
            {
                "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
                "who": {"display": agent or HUB_DEVICE["display"]},
                "requestor": agent is not None,
            }
        ],
        "source": {"observer": HUB_DEVICE},
        "entity": [
            {"what": {"reference": reference}, "role": {"system": _ENTITY_ROLE, "code": role}}
            for reference, role in entities
        ],
    }
