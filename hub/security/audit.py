"""AuditEvents for access to patient data, following the IHE BALP conventions (pure).

One event per request: who (the client, its organisation, the token, the caller's address),
what (the patients concerned, the resources or the query), when (``recorded``), the FHIR
interaction (``subtype``) and the outcome (0 success, 4 minor failure, 8 serious failure).
The builders here know neither HTTP nor the store: ``hub.auth.audit`` audits reads and
failures as responses leave the hub, ``hub.services.audit_trail`` audits writes inside the unit
of work that makes them.

What counts as patient data is ``hub.security.patient_data``'s; which interaction a request
is, ``hub.security.audit_context``'s.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hub.search.values import format_instant
from hub.security.audit_context import Interaction, outcome_of
from hub.security.patient_data import (
    MAX_PATIENTS,
    MAX_RESOURCES,
    Disclosure,
    patient_data_types,
    query_patients,
)

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
# The names of the hub's $operations, as a second subtype coding next to "operation".
OPERATION = "https://ygt.example.org/fhir/CodeSystem/fhir-operation"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
USER_AGENT = "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
CLIENT_ID = "https://ygt.example.org/fhir/sid/client-id"
EXPORT_JOB = "https://ygt.example.org/fhir/sid/export-job"
JTI_PREFIX = "urn:ietf:params:oauth:jti:"
HUB_NAME = "县域医共体 shared-records hub"
# What a caller sent may hold anything (a NUL byte, which PostgreSQL text refuses): an event
# that cannot be stored would withhold the answer, so free text is made storable first.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _text(value: str, limit: int = 1000) -> str:
    return _CONTROL.sub("\ufffd", value[:limit])


# --- the events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    """The caller as an audit record names it."""

    client_id: str | None
    org: str | None = None
    token_id: str | None = None
    address: str | None = None
    claimed: bool = False  # named by a credential that did not verify


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _agents(who: Who) -> list[dict[str, Any]]:
    client: dict[str, Any] = {
        "type": {"coding": [_coding(USER_AGENT, "UserOauthAgent", "User OAuth Agent participant")]},
        "requestor": True,
    }
    if who.client_id:
        name = _text(who.client_id, 128)
        # A client system is a Device in FHIR's terms; typed so, its id is not read as a
        # patient identifier by the AuditEvent ``patient`` parameter (agent.who | entity.what).
        client["who"] = {"type": "Device", "identifier": {"system": CLIENT_ID, "value": name}}
        client["name"] = name
        if who.claimed:
            client["who"]["display"] = "claimed, not verified"
    if who.token_id:
        client["policy"] = [JTI_PREFIX + who.token_id]
    if who.address:
        client["network"] = {"address": _text(who.address, 255), "type": "2"}
    agents = [client]
    if who.org:
        agents.append({
            "type": {"coding": [_coding(ROLE_CLASS, "PROV", "healthcare provider")]},
            "who": {"reference": f"Organization/{who.org}"},
            "requestor": False,
        })  # fmt: skip
    hub: dict[str, Any] = {
        "type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]},
        "who": {"display": HUB_NAME},
        "requestor": False,
    }
    agents.append(hub)
    return agents


def _source() -> dict[str, Any]:
    return {
        "observer": {"display": HUB_NAME},
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }


def _entity(what: dict[str, Any], entity_type: tuple[str, str, str],
            role: tuple[str, str]) -> dict[str, Any]:  # fmt: skip
    return {
        "what": what,
        "type": _coding(*entity_type),
        "role": _coding(OBJECT_ROLE, *role),
    }


_PERSON = (ENTITY_TYPE, "1", "Person")
_OBJECT = (ENTITY_TYPE, "2", "System Object")


def _entities(patients: Iterable[str], resources: Iterable[str], query: str | None,
              job: str | None, request_id: str | None,
              job_name: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    out = [_entity({"reference": p}, _PERSON, ("1", "Patient")) for p in patients]
    out += [_entity({"reference": r}, _OBJECT, ("4", "Domain Resource")) for r in resources]
    if query is not None:
        out.append({
            "type": _coding(*_OBJECT),
            "role": _coding(OBJECT_ROLE, "24", "Query"),
            "query": base64.b64encode(query.encode("utf-8")).decode("ascii"),
        })  # fmt: skip
    if job is not None:
        entity = _entity({"identifier": {"system": EXPORT_JOB, "value": job}}, _OBJECT,
                         ("20", "Job"))  # fmt: skip
        if job_name:
            entity["name"] = job_name
        out.append(entity)
    if request_id:
        out.append({
            "what": {"identifier": {"value": request_id}},
            "type": _coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
        })  # fmt: skip
    return out


def rest_event(
    interaction: Interaction,
    who: Who,
    *,
    recorded: int,
    outcome: str = "0",
    patients: Iterable[str] = (),
    resources: Iterable[str] = (),
    query: str | None = None,
    job: str | None = None,
    job_name: str | None = None,
    description: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The event of one FHIR REST request (type ``rest``, subtype its interaction)."""
    subtype = [_coding(INTERACTION, interaction.code, interaction.code)]
    if interaction.operation:
        subtype.append(_coding(OPERATION, interaction.operation, interaction.operation))
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _coding(EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": subtype,
        "action": interaction.action,
        "recorded": format_instant(recorded),
        "outcome": outcome,
    }
    if description:
        event["outcomeDesc"] = _text(description)
    event["agent"] = _agents(who)
    event["source"] = _source()
    entities = _entities(patients, resources, query, job, request_id, job_name)
    if entities:
        event["entity"] = entities
    return event


def login_failure_event(who: Who, *, recorded: int, description: str,
                        request_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A refused credential: bad client credentials at the token endpoint, or a bearer token
    that does not verify (DICOM 110114 User Authentication, subtype 110122 Login, failed)."""
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _coding(DCM, "110114", "User Authentication"),
        "subtype": [_coding(DCM, "110122", "Login")],
        "action": "E",
        "recorded": format_instant(recorded),
        "outcome": "4",
        "outcomeDesc": _text(description),
        "agent": _agents(who),
        "source": _source(),
    }
    entities = _entities((), (), None, None, request_id)
    if entities:
        event["entity"] = entities
    return event


# --- a response's event ----------------------------------------------------------------------


def _transaction_reads(body: dict[str, Any], seen: Disclosure) -> None:
    """Entries of a transaction/batch response that answered a read or a search (writes carry
    a Location and are audited in their own unit of work)."""
    for entry in body.get("entry") or ():
        if isinstance(entry, dict) and "location" not in (entry.get("response") or {}):
            seen.walk(entry.get("resource"))


def _first_diagnostics(body: Any) -> str | None:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        for issue in body.get("issue") or ():
            text = issue.get("diagnostics") if isinstance(issue, dict) else None
            if isinstance(text, str):
                return text
    return None


def response_event(
    interaction: Interaction,
    who: Who,
    *,
    office: bool,
    status: int,
    body: Any,
    recorded: int,
    query: str = "",
    job: str | None = None,
    job_name: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any] | None:
    """The event for a request whose answer is about to leave the hub, or None when it
    involves no patient data (or is the office reading the audit trail)."""
    if office and interaction.res_type == "AuditEvent":
        return None
    seen = Disclosure()
    if status < 400 and isinstance(body, dict):
        if interaction.code in ("transaction", "batch"):
            _transaction_reads(body, seen)
        else:
            seen.walk(body)
    named = interaction.res_type in patient_data_types()
    failed_system_level = interaction.res_type is None and status >= 400
    if not (seen.found or named or failed_system_level or job):
        return None
    patients = dict(seen.patients)
    if interaction.res_type == "Patient" and interaction.res_id:
        patients = {f"Patient/{interaction.res_id}": None, **patients}
    searching = interaction.code.startswith(("search", "history")) or interaction.operation
    if searching and query:
        patients.update(dict.fromkeys(query_patients(interaction.res_type, query)))
    resources: dict[str, None] = {}
    if interaction.target and interaction.res_type != "Patient":
        resources[interaction.target] = None
    if not searching:
        resources.update(seen.resources)
    query_text = None
    if searching and query:
        query_text = f"{interaction.res_type or ''}?{query}"
    description = None
    if status >= 400:
        why = _first_diagnostics(body) or ("refused" if status < 500 else "failed in the hub")
        description = f"HTTP {status}: {why}"
    elif seen.found > len(seen.resources) and not searching:
        description = f"{seen.found} resources of patient data; the first {MAX_RESOURCES} named"
    return rest_event(
        interaction, who, recorded=recorded, outcome=outcome_of(status),
        patients=list(patients)[:MAX_PATIENTS], resources=list(resources)[:MAX_RESOURCES],
        query=query_text, job=job, job_name=job_name, description=description,
        request_id=request_id,
    )  # fmt: skip
