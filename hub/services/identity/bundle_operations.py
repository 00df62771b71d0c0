"""$link and $unlink as a unit of work runs them: over HTTP, or as a transaction's entry (a
feed's ADT^A24 / ADT^A37 maps to one, in the same transaction as the two Patients)."""

from __future__ import annotations

from typing import Any

from hub.fhir.errors import BadRequest, NotFound, Unprocessable, info_outcome
from hub.fhir.interactions import Unit
from hub.fhir.operations.parameters import parameters, result, value
from hub.services.identity import lookup
from hub.services.identity import merge as merging
from hub.services.identity.linker import PatientIndex
from hub.services.identity.model import is_master_id, patient_id


def index_of(unit: Unit) -> PatientIndex:
    from hub.services.observers import Observers

    observer = unit.writer.observer
    if isinstance(observer, Observers):
        return observer.get(PatientIndex)
    assert isinstance(observer, PatientIndex)
    return observer


def patient_param(
    unit: Unit, params: list[dict[str, Any]], name: str, *, required: bool = True
) -> str | None:
    """A member record named by ``name`` (a Reference) or ``name-identifier``."""
    reference = value(params, name)
    identifier = value(params, f"{name}-identifier")
    if reference is not None:
        found = patient_id(reference)
        if found is None:
            raise BadRequest(f"{name} must reference a Patient", code="value")
    elif isinstance(identifier, dict) and identifier.get("value"):
        matches = lookup.patients_with_identifier(
            unit.conn, identifier.get("system", ""), identifier["value"]
        )
        if len(matches) != 1:
            raise Unprocessable(
                f"{name}-identifier names {len(matches)} member records, not one", code="not-found"
            )
        found = matches[0]
    elif required:
        raise BadRequest(f"{name} (or {name}-identifier) is required", code="required")
    else:
        return None
    if is_master_id(found):
        raise Unprocessable(
            f"{name} is a master record; name a member's record", code="business-rule"
        )
    if not lookup.contents(unit.conn, [found]) and found not in index_of(unit).written:
        raise NotFound(f"Patient/{found} is not known")
    return found


def audit_part(audit_id: str) -> tuple[str, str, Any]:
    return ("audit-event", "valueReference", {"reference": f"AuditEvent/{audit_id}"})


def link(unit: Unit, body: Any) -> dict[str, Any]:
    params = parameters(body)
    record = patient_param(unit, params, "patient")
    other = patient_param(unit, params, "other")
    assert record is not None and other is not None
    done = merging.link(index_of(unit), unit.writer, record, other)
    return result(
        ("outcome", "resource", info_outcome(f"Patient/{record} linked to Patient/{other}")),
        ("master", "valueReference", {"reference": f"Patient/{done['master']}"}),
        audit_part(done["audit"]),
    )


def unlink(unit: Unit, body: Any) -> dict[str, Any]:
    params = parameters(body)
    record = patient_param(unit, params, "patient")
    other = patient_param(unit, params, "other", required=False)
    assert record is not None
    done = merging.unlink(index_of(unit), unit.writer, record, other)
    return result(
        ("outcome", "resource", info_outcome(f"Patient/{record} unlinked")),
        audit_part(done["audit"]),
    )


_OPERATIONS = {"$link": link, "$unlink": unlink}


def run_operation(unit: Unit, name: str, body: Any) -> dict[str, Any]:
    handler = _OPERATIONS.get(name)
    if handler is None:
        raise BadRequest(f"{name} is not supported inside a Bundle", code="not-supported")
    return handler(unit, body)
