"""What is patient data, and whose: the test every audit decision rests on (pure).

"Patient data" is a Patient, or a resource of a type in the Patient compartment: a type with a
``patient`` or ``subject`` search parameter that references Patient (the test Bulk Data export
uses too).  Bundles and Parameters are looked into, so a document or an operation's answer
counts by what it holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from hub.search.definitions import type_params

# An event names at most this many patients and resources: a searchset page or a 100-entry
# transaction stays one compact event (its index rows are written with it); the query, the
# history rows stamped with the same instant and the count in outcomeDesc say the rest.
MAX_PATIENTS = 100
MAX_RESOURCES = 50
_FHIR_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")


def is_fhir_id(value: str) -> bool:
    return _FHIR_ID.match(value) is not None


@cache
def patient_paths(res_type: str) -> tuple[tuple[str, ...], ...]:
    """Element paths of ``res_type`` that reference the patient (empty: not in the compartment)."""
    params = type_params(res_type)
    paths: list[tuple[str, ...]] = []
    for code in ("patient", "subject"):
        param = params.get(code)
        if param is not None and param.type == "reference" and "Patient" in param.targets:
            paths += [tuple(p.split(".")) for p in param.paths if tuple(p.split(".")) not in paths]
    return tuple(paths)


@cache
def patient_data_types() -> frozenset[str]:
    from hub.fhir.validation import SUPPORTED_TYPES

    return frozenset({"Patient", *(t for t in SUPPORTED_TYPES if patient_paths(t))})


def _values(node: Any, steps: tuple[str, ...]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _values(item, steps)
    elif not steps:
        yield node
    elif isinstance(node, dict):
        step, rest = steps[0], steps[1:]
        if step.endswith("[x]"):
            prefix = step[:-3]
            for key, value in node.items():
                if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isupper():
                    yield from _values(value, rest)
        elif step in node:
            yield from _values(node[step], rest)


def patient_id(reference: Any) -> str | None:
    """The id in a reference to a Patient (relative, absolute or versioned), else None."""
    if not isinstance(reference, str):
        return None
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient" and _FHIR_ID.match(parts[-1]):
        return parts[-1]
    return None


def patients_of(resource: dict[str, Any], res_id: str | None = None) -> list[str]:
    """``Patient/<id>`` of the patients a resource is about (itself, for a Patient)."""
    res_type = resource.get("resourceType")
    if res_type == "Patient":
        rid = res_id or resource.get("id")
        return [f"Patient/{rid}"] if rid else []
    out: list[str] = []
    for steps in patient_paths(str(res_type)):
        for value in _values(resource, steps):
            pid = patient_id(value.get("reference")) if isinstance(value, dict) else None
            if pid and f"Patient/{pid}" not in out:
                out.append(f"Patient/{pid}")
    return out


@dataclass
class Disclosure:
    """The patient data in something the hub answered or wrote."""

    patients: dict[str, None] = field(default_factory=dict)  # ordered set, capped
    resources: dict[str, None] = field(default_factory=dict)
    found: int = 0  # patient-data resources seen (uncapped)

    def add(self, resource: dict[str, Any], res_id: str | None = None) -> None:
        res_type = resource.get("resourceType")
        rid = res_id or resource.get("id")
        if res_type not in patient_data_types() or not rid:
            return
        self.found += 1
        # A Patient is named once, as the patient (role 1), not again as a resource.
        if res_type != "Patient" and len(self.resources) < MAX_RESOURCES:
            self.resources[f"{res_type}/{rid}"] = None
        for ref in patients_of(resource, rid):
            if len(self.patients) < MAX_PATIENTS:
                self.patients[ref] = None

    def walk(self, body: Any) -> None:
        """A resource, or every resource inside a Bundle or Parameters (answers, documents)."""
        if not isinstance(body, dict):
            return
        kind = body.get("resourceType")
        if kind == "Bundle":
            for entry in body.get("entry") or ():
                if isinstance(entry, dict):
                    self.walk(entry.get("resource"))
        elif kind == "Parameters":
            stack = list(body.get("parameter") or ())
            while stack:
                part = stack.pop()
                if isinstance(part, dict):
                    self.walk(part.get("resource"))
                    stack += part.get("part") or ()
        else:
            self.add(body)


def query_patients(res_type: str | None, query: str) -> list[str]:
    """Patients a search names in its criteria (``patient=``, ``subject=``, Patient ``_id``):
    asking about a patient is an access to that patient's record even when nothing matched."""
    out: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=False):
        code = name.split(":")[0].split(".")[0]
        for item in value.split(","):
            pid: str | None = None
            if code in ("patient", "subject"):
                pid = patient_id(item) or (item if code == "patient" and "/" not in item else None)
            elif code == "_id" and res_type == "Patient":
                pid = item
            ok = pid is not None and _FHIR_ID.match(pid) is not None
            if ok and f"Patient/{pid}" not in out and len(out) < MAX_PATIENTS:
                out.append(f"Patient/{pid}")
    return out
