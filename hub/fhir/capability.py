"""The CapabilityStatement: built from the same tables the server runs on, so it cannot lie."""

from __future__ import annotations

from functools import cache
from typing import Any

from hub import __version__
from hub.fhir.validation import SUPPORTED_TYPES
from hub.search.definitions import params_for

_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
_RESULT_PARAMS = (
    ("_sort", "string", "Sort by one or more parameters; '-' descends"),
    ("_count", "number", "Page size"),
    ("_include", "special", "Include referenced resources (:iterate supported)"),
    ("_revinclude", "special", "Include referencing resources (:iterate supported)"),
    ("_summary", "token", "true | count | text | data | false"),
    ("_elements", "string", "Return only the listed elements"),
    ("_total", "token", "none | estimate | accurate"),
    ("_has", "special", "Reverse chaining"),
)


_PATIENT_DOC = (
    "Patient index: each member's record is its own Patient; records of one person are linked "
    "through a master Patient (id 'mpi-...', meta.tag "
    "https://ygt.example.org/fhir/CodeSystem/patient-index|master; link seealso to each record, "
    "each record link refer to it).  Masters answer only a search that asks for them (_tag as "
    "above, or _id).  Community-wide search: a reference parameter to Patient given a master "
    "(DiagnosticReport?patient=Patient/mpi-...), an :identifier modifier "
    "(patient:identifier=system|value) or a chain into Patient (patient.identifier=..., "
    "patient:Patient.identifier=...) matches every record linked to the person; a member "
    "record's own id matches that record alone."
)
_SUBSCRIPTION_DOC = (
    "Subscriptions (R4): channel type rest-hook only, to an http(s) endpoint, with "
    "channel.header lines sent as HTTP headers; payload omitted (an empty POST to the endpoint) "
    "or application/fhir+json (a PUT of the matching version to {endpoint}/{Type}/{id}).  "
    "A requested Subscription is stored active.  Criteria Type?params over any type served, "
    "with its token, string, date, reference and uri parameters, _id and _tag (modifiers as "
    "in search except chains, _has, :identifier, the ap prefix and master Patients); others "
    "are refused (422).  Delivery is durable, in order per Subscription, retried with "
    "exponential back-off; when retries run out the Subscription turns to status error."
)
_REFERRAL_DOC = (
    "Two-way referral (双向转诊): a ServiceRequest with category SNOMED CT 3457005, status "
    "active, subject a Patient, requester and one performer member Organizations (or "
    "PractitionerRoles of them) opens a referral; its direction (category "
    "https://ygt.example.org/fhir/CodeSystem/referral-direction up|down) is inferred from the "
    "members' kinds when not given, and the hub adds recent DiagnosticReports of the person "
    "and, going down, the discharge document (Bundle) to supportingInfo.  The hub creates a "
    "Task (code fulfill, intent order, focus and basedOn the request, owner the receiving "
    "Organization, restriction.period.end the due time).  That Task's status moves only as "
    "profiles/referral/rules.json allows (requested > received > accepted|rejected > "
    "in-progress > completed, or cancelled); any other update is refused with 422, "
    "rejected needs statusReason.  The receiving member's admission links the Encounter "
    "(Encounter.basedOn) and moves the Task."
)
_ROUTING_DOC = (
    "Order routing (issue 7): an order (ServiceRequest intent order, status active, not a "
    "referral) from a member is routed to a regional centre by profiles/routing/rules.json, or "
    "to the member Organization it names as performer; the hub sets performer when none is "
    "given.  The centre receives it as HL7 v2 (OML^O21 or ORM^O01, per its Endpoint's "
    "payloadType) or, speaking FHIR, as the Task below; status revoked or entered-in-error "
    "cancels it (ORC CA)."
)
_ROUTING_TASK_DOC = (
    "Routing Tasks (code https://ygt.example.org/fhir/CodeSystem/order-routing|routed-order, "
    "id route-<ServiceRequest id>, intent order, focus the order, requester the ordering "
    "member, owner the centre) are written by the hub; businessStatus "
    "https://ygt.example.org/fhir/CodeSystem/routing-status sent | accepted | resulted | "
    "delivered | failed | cancelled, statusReason the failure, output the DiagnosticReport.  A "
    "centre speaking FHIR moves its Task to accepted or in-progress, or to rejected with "
    "statusReason; the hub keeps businessStatus."
)
_ENDPOINT_DOC = (
    "Endpoint/<member>: where the hub delivers to a member (connectionType hl7v2-mllp with "
    "address mllp://host:port and payloadType from HL7 table 0354, or hl7-fhir-rest).  Read at "
    "every delivery attempt: a change takes effect without a restart; status suspended or off "
    "holds the member's queue."
)
_DEFINITIONS = {
    "match": "http://hl7.org/fhir/OperationDefinition/Patient-match",
    "everything": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    "ihe-pix": "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
    "recognize": "https://ygt.example.org/fhir/OperationDefinition/ServiceRequest-recognize",
    "document": "http://hl7.org/fhir/OperationDefinition/Composition-document",
}
# Bulk Data Access IG v2.0.0: one name, three definitions (system, Patient, Group).
_BULK = "http://hl7.org/fhir/uv/bulkdata"
_TYPE_DEFINITIONS = {
    ("Patient", "export"): f"{_BULK}/OperationDefinition/patient-export",
    ("Group", "export"): f"{_BULK}/OperationDefinition/group-export",
}
_EXPORT_DOC = (
    "Bulk Data export (async: Prefer: respond-async; poll the Content-Location; NDJSON files): "
    "_outputFormat (application/fhir+ndjson), _type, _since"
)
_OPERATIONS = {
    "Patient": [
        ("match", "FHIR R4 Patient $match: a scored searchset of persons (match-grade)"),
        ("ihe-pix", "IHE PIXm: every member identifier of the person (GET, sourceIdentifier)"),
        ("everything", "the person's community-wide record: _since, _type, _count, paging"),
        ("merge", "retire a duplicate record into a survivor (R5 $merge parameters)"),
        ("unmerge", "undo a merge, named by its AuditEvent"),
        ("link", "the office says two records are one person (transaction entry too)"),
        ("unlink", "the office says a record is not that person (transaction entry too)"),
        ("export", _EXPORT_DOC + "; every Patient and the Patient compartment"),
    ],
    "Group": [
        (
            "export",
            _EXPORT_DOC + "; the Group's patients (member.entity, or a centre's "
            "residents: characteristic primary-care-organisation)",
        ),
    ],
    "ServiceRequest": [
        ("recognize", "检查检验结果互认: recognisable earlier results per item, or why none"),
    ],
    "Composition": [
        (
            "document",
            "the document (Bundle type document) of a Composition; for the monthly "
            "feedback, the filed version",
        ),
    ],
    "Organization": [
        (
            "inpatient-feedback",
            "住院信息每月反馈: the month's discharge documents addressed to "
            "a primary-care organisation (month=YYYY-MM, _count, paging; the package List "
            "included)",
        ),
    ],
}


def _resource_entry(res_type: str) -> dict[str, Any]:
    params = [
        {"name": code, "type": "special" if p.type == "special" else p.type}
        for code, p in sorted(params_for(res_type).items())
    ]
    params.extend({"name": n, "type": t, "documentation": d} for n, t, d in _RESULT_PARAMS)
    entry: dict[str, Any] = {
        "type": res_type,
        "interaction": [{"code": code} for code in _INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "logical", "local"],
        "searchInclude": ["*"],
        "searchRevInclude": ["*"],
        "searchParam": params,
    }
    if res_type == "Patient":
        entry["documentation"] = _PATIENT_DOC
    if res_type == "Subscription":
        entry["documentation"] = _SUBSCRIPTION_DOC
    if res_type == "Task":
        entry["documentation"] = _REFERRAL_DOC + "  " + _ROUTING_TASK_DOC
    if res_type == "ServiceRequest":
        entry["documentation"] = _ROUTING_DOC
    if res_type == "Endpoint":
        entry["documentation"] = _ENDPOINT_DOC
    if res_type in _OPERATIONS:
        entry["operation"] = [
            {
                "name": name,
                "definition": _TYPE_DEFINITIONS.get((res_type, name))
                or _DEFINITIONS.get(
                    name, f"https://ygt.example.org/fhir/OperationDefinition/{res_type}-{name}"
                ),
                "documentation": doc,
            }
            for name, doc in _OPERATIONS[res_type]
        ]
    return entry


@cache
def _statement_body() -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "County medical community records hub",
        "kind": "instance",
        "software": {"name": "county-records-hub", "version": __version__},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "instantiates": [f"{_BULK}/CapabilityStatement/bulk-data"],
        "rest": [
            {
                "mode": "server",
                "resource": [_resource_entry(t) for t in SUPPORTED_TYPES],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "operation": [
                    {
                        "name": "export",
                        "definition": f"{_BULK}/OperationDefinition/export",
                        "documentation": _EXPORT_DOC + "; every type this hub serves",
                    },
                    {
                        "name": "recognition-report",
                        "definition": "https://ygt.example.org/fhir/OperationDefinition/"
                        "recognition-report",
                        "documentation": "检查检验结果互认 figures, GET: month=YYYY-MM, member; "
                        "checked, recognisable, accepted, reordered, money saved, repeats by "
                        "reason",
                    },
                    {
                        "name": "referral-report",
                        "definition": "https://ygt.example.org/fhir/OperationDefinition/"
                        "referral-report",
                        "documentation": "双向转诊 figures (绩效考核), GET: month=YYYY-MM, "
                        "member; per member sent and received, by direction",
                    },
                    {
                        "name": "routing-report",
                        "definition": "https://ygt.example.org/fhir/OperationDefinition/"
                        "routing-report",
                        "documentation": "order routing figures (绩效考核), GET: month=YYYY-MM, "
                        "member; per ordering member and per centre: routed, resulted, "
                        "delivered, failed, cancelled, median turnaround in minutes",
                    },
                ],
            }
        ],
    }


def capability_statement(base: str) -> dict[str, Any]:
    return {**_statement_body(), "implementation": {"description": "FHIR R4 hub", "url": base}}
