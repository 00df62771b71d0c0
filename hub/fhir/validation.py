"""Body parsing and resource validation with the ``fhir.resources.R4B`` models.

R4B's models are identical to R4 for every resource the hub serves, so they validate the R4
wire format.  The client's JSON is what gets stored (the model is only a check), so a resource
reads back exactly as it was written.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from hub.fhir import element_memo, null_check, shape_memo
from hub.fhir.errors import BadRequest, Issue, Unprocessable

# The resource types the hub serves (issue 2); CapabilityStatement lists exactly these.
SUPPORTED_TYPES: tuple[str, ...] = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Group",
    "Encounter",
    "EpisodeOfCare",
    "ServiceRequest",
    "DiagnosticReport",
    "Observation",
    "Specimen",
    "Condition",
    "Procedure",
    "MedicationStatement",
    "CarePlan",
    "Composition",
    "DocumentReference",
    "Bundle",
    "List",
    "Task",
    "Provenance",
    "AuditEvent",
    "Subscription",
    "Endpoint",
    "NamingSystem",
    "CodeSystem",
    "ValueSet",
    "ConceptMap",
    "StructureDefinition",
    "OperationDefinition",
    "DetectedIssue",
)
SUPPORTED = frozenset(SUPPORTED_TYPES)
# Required value-set bindings the R4B models do not enforce (they type codes as plain strings).
TASK_STATUS = frozenset(
    [
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    ]
)
REQUEST_STATUS = frozenset(
    ["draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"]
)
_REQUEST_INTENT = frozenset(
    [
        "proposal",
        "plan",
        "directive",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    ]
)
REQUIRED_CODES: dict[str, dict[str, frozenset[str]]] = {
    "Patient": {"gender": frozenset({"male", "female", "other", "unknown"})},
    "Practitioner": {"gender": frozenset({"male", "female", "other", "unknown"})},
    "Observation": {
        "status": frozenset(
            [
                "registered",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                "entered-in-error",
                "unknown",
            ]
        )
    },
    "DiagnosticReport": {
        "status": frozenset(
            [
                "registered",
                "partial",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "appended",
                "cancelled",
                "entered-in-error",
                "unknown",
            ]
        )
    },
    "Encounter": {
        "status": frozenset(
            [
                "planned",
                "arrived",
                "triaged",
                "in-progress",
                "onleave",
                "finished",
                "cancelled",
                "entered-in-error",
                "unknown",
            ]
        )
    },
    "ServiceRequest": {
        "status": REQUEST_STATUS,
        "intent": _REQUEST_INTENT,
        "priority": frozenset({"routine", "urgent", "asap", "stat"}),
    },
    "Task": {
        "status": TASK_STATUS,
        "intent": _REQUEST_INTENT | {"unknown"},
    },
}
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("the request body is empty", code="structure")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="structure") from exc


def check_id(res_id: str) -> None:
    if not ID_RE.match(res_id):
        raise BadRequest(
            f"{res_id!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)",
            code="value",
            expression=["id"],
        )


@cache
def _model(res_type: str) -> Any:
    element_memo.install()
    null_check.install()
    return get_fhir_model_class(res_type)


def _fhirpath(res_type: str, loc: tuple[int | str, ...]) -> str:
    path = res_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in ("__root__",):
            continue
        else:
            path += f".{part}"
    return path


def validate_resource(
    data: Any, expected_type: str | None = None, *, model: bool = True
) -> dict[str, Any]:
    """Check a parsed body is a valid R4 resource of a served type; return it unchanged.

    Failures carry one issue per problem with the FHIRPath of the failing element.
    ``model`` False leaves out the R4 model check, for resources that passed it already (a
    feed's mapped Bundle, validated at intake); the cheap checks still run.
    """
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object (a FHIR resource)", code="structure")
    res_type = data.get("resourceType")
    if not isinstance(res_type, str) or not res_type:
        raise BadRequest("resourceType is missing", code="required", expression=["resourceType"])
    if expected_type is not None and res_type != expected_type:
        raise BadRequest(
            f"resourceType {res_type!r} does not match the URL's {expected_type!r}",
            code="invalid",
            expression=["resourceType"],
        )
    if res_type not in SUPPORTED:
        raise BadRequest(
            f"resourceType {res_type!r} is not served by this hub",
            code="not-supported",
            expression=["resourceType"],
        )
    if "id" in data and not (isinstance(data["id"], str) and ID_RE.match(data["id"])):
        raise Unprocessable(
            f"{data['id']!r} is not a valid FHIR id", code="value", expression=[f"{res_type}.id"]
        )
    for element, allowed in REQUIRED_CODES.get(res_type, {}).items():
        value = data.get(element)
        if value is not None and value not in allowed:
            raise Unprocessable(
                f"{res_type}.{element} {value!r} is not in its required value set",
                code="code-invalid",
                expression=[f"{res_type}.{element}"],
            )
    if not model or shape_memo.valid(res_type, data):
        return data
    try:
        with element_memo.validating():
            _model(res_type).model_validate(data)
    except ValidationError as exc:
        issues = [
            Issue(
                "error",
                "structure" if err["type"] == "extra_forbidden" else "value",
                f"{_fhirpath(res_type, tuple(err['loc']))}: {err['msg']}",
                [_fhirpath(res_type, tuple(err["loc"]))],
            )
            for err in exc.errors()[:50]
        ]
        raise Unprocessable(
            f"{res_type} is not valid: {issues[0].diagnostics}", issues=issues
        ) from exc
    except (ValueError, TypeError, AttributeError) as exc:
        # AttributeError: some fhir_core validators assume a string (a url given as a number)
        raise Unprocessable(f"{res_type} is not valid: {exc}") from exc
    shape_memo.learn(res_type, data, _model(res_type))
    return data
