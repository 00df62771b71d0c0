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


def _resource_entry(res_type: str) -> dict[str, Any]:
    params = [
        {"name": code, "type": "special" if p.type == "special" else p.type}
        for code, p in sorted(params_for(res_type).items())
    ]
    params.extend({"name": n, "type": t, "documentation": d} for n, t, d in _RESULT_PARAMS)
    return {
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
        "rest": [
            {
                "mode": "server",
                "resource": [_resource_entry(t) for t in SUPPORTED_TYPES],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
            }
        ],
    }


def capability_statement(base: str) -> dict[str, Any]:
    return {**_statement_body(), "implementation": {"description": "FHIR R4 hub", "url": base}}
