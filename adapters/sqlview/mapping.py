"""Rows of a lab-result middle table → a FHIR transaction Bundle (pure).

One report's rows (same report number) make one Bundle: the patient (conditional create on
the member's MRN, never overwriting what the HIS sent), the DiagnosticReport (conditional
update on the member's filler number) and one Observation per row (conditional update on
report number, item code), with the same identifier conventions as the HL7 v2 mapping, so a
member that later moves from its view to an HL7 interface converges on the same resources.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any

from adapters.feeds.config import Community, Member
from adapters.hl7v2.ack import ErrorDetail
from adapters.hl7v2.datatypes import identifier_query
from adapters.hl7v2.errors import REQUIRED_FIELD_MISSING, TABLE_VALUE_NOT_FOUND
from adapters.hl7v2.mapped import Mapped, MappingError
from adapters.sqlview.config import SqlFeed

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://ygt.example.org/fhir/sql-mapping")
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_FLAGS = {"H": "H", "L": "L", "N": "N", "HH": "HH", "LL": "LL", "A": "A", "↑": "H", "↓": "L"}
_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)\s*$")
_RANGE = re.compile(r"^\s*([+-]?\d*\.?\d+)\s*[-~–]\s*([+-]?\d*\.?\d+)\s*$")
_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}
_REPORT_CATEGORY = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]
}


def _text(row: dict[str, Any], feed: SqlFeed, name: str) -> str:
    column = feed.column(name)
    value = row.get(column) if column else None
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value)


def _when(row: dict[str, Any], feed: SqlFeed, name: str, community: Community) -> str | None:
    """A time column (datetime, date or text) → FHIR dateTime; naive times are +08:00."""
    column = feed.column(name)
    value = row.get(column) if column else None
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=community.tz)
        return moment.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip().replace("/", "-")
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        moment = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError as exc:
        raise MappingError(f"{name} {text!r} is not a date or time", code="102") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=community.tz)
    return moment.isoformat(timespec="seconds")


class _Bundle:
    """Entries with fullUrls derived from the source rows (pure: same rows, same Bundle)."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.entries: list[dict[str, Any]] = []

    def add(self, resource: dict[str, Any], request: dict[str, str]) -> str:
        url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{self.seed}#{len(self.entries)}')}"
        self.entries.append({"fullUrl": url, "resource": resource, "request": request})
        return url


def _patient(
    rows: list[dict[str, Any]], feed: SqlFeed, community: Community, member: Member
) -> tuple[dict[str, Any], str]:
    row = rows[0]
    mrn = _text(row, feed, "mrn")
    identifiers = [
        {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ]
            },
            "system": member.system("mrn"),
            "value": mrn,
        }
    ]
    if resident := _text(row, feed, "resident_id").upper():
        identifiers.append({"system": community.resident_id_system, "value": resident})
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": identifiers,
        "managingOrganization": {"reference": member.reference},
    }
    if name := _text(row, feed, "name"):
        patient["name"] = [
            {"text": name, "family": name[:1], "given": [name[1:]]}
            if len(name) > 1
            else {"text": name}
        ]
    if sex := feed.sex.get(_text(row, feed, "sex")):
        patient["gender"] = sex
    if born := _when(row, feed, "birth_date", community):
        patient["birthDate"] = born[:10]
    return patient, f"{member.system('mrn')}|{mrn}"


def _observation(
    row: dict[str, Any],
    feed: SqlFeed,
    community: Community,
    member: Member,
    patient_url: str,
    report_no: str,
    unmapped: list[str],
) -> dict[str, Any]:
    item = _text(row, feed, "item_code")
    coding = [{"system": member.local_code_system, "code": item}]
    if display := _text(row, feed, "item_name"):
        coding[0]["display"] = display
    if standard := community.standard_coding(member.code, item):
        coding.append(standard.as_fhir())
    elif f"{member.code}|{item}" not in unmapped:
        unmapped.append(f"{member.code}|{item}")
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": member.system("obx"), "value": f"{report_no}|{item}|"}],
        "status": feed.status.get(_text(row, feed, "status"), "final"),
        "category": [_CATEGORY],
        "code": {"coding": coding, "text": display or item},
        "subject": {"reference": patient_url},
        "performer": [{"reference": member.reference}],
    }
    if when := _when(row, feed, "observed_at", community):
        obs["effectiveDateTime"] = when
    value, unit = _text(row, feed, "value"), _text(row, feed, "unit")
    if _NUMBER.match(value):
        obs["valueQuantity"] = {"value": float(value), **({"unit": unit} if unit else {})}
    else:
        obs["valueString"] = value
    if ranged := _RANGE.match(_text(row, feed, "range")):
        low, high = float(ranged.group(1)), float(ranged.group(2))
        extra = {"unit": unit} if unit else {}
        obs["referenceRange"] = [{"low": {"value": low, **extra}, "high": {"value": high, **extra}}]
    elif text := _text(row, feed, "range"):
        obs["referenceRange"] = [{"text": text}]
    if flag := _FLAGS.get(_text(row, feed, "flag").upper()):
        obs["interpretation"] = [{"coding": [{"system": _INTERPRETATION, "code": flag}]}]
    return obs


def map_report_rows(
    rows: list[dict[str, Any]],
    feed: SqlFeed,
    community: Community,
    *,
    source_ref: str,
    received_at: str,
) -> Mapped:
    """One report's rows → transaction Bundle; MappingError when a required column is empty."""
    member = community.member(feed.member)
    if member is None:
        raise MappingError(
            f"SQL feed {feed.id}: member {feed.member!r} is not in the community",
            code="204",
            reject=True,
        )
    for i, row in enumerate(rows):
        for name in ("mrn", "report_no", "item_code", "value"):
            if not _text(row, feed, name):
                raise MappingError(
                    f"row {i + 1}: {feed.column(name)} ({name}) is empty",
                    code=REQUIRED_FIELD_MISSING,
                )
    report_no = _text(rows[0], feed, "report_no")
    bundle = _Bundle(source_ref)
    patient, key = _patient(rows, feed, community, member)
    patient_url = bundle.add(
        patient,
        {
            "method": "POST",
            "url": "Patient",
            "ifNoneExist": identifier_query(member.system("mrn"), _text(rows[0], feed, "mrn")),
        },
    )
    unmapped: list[str] = []
    results = []
    for row in rows:
        obs = _observation(row, feed, community, member, patient_url, report_no, unmapped)
        query = identifier_query(member.system("obx"), obs["identifier"][0]["value"])
        results.append(
            {"reference": bundle.add(obs, {"method": "PUT", "url": f"Observation?{query}"})}
        )
    statuses = {o["resource"]["status"] for o in bundle.entries[1:]}
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": member.system("filler"), "value": report_no}],
        "status": "corrected"
        if "corrected" in statuses
        else ("preliminary" if "preliminary" in statuses else "final"),
        "category": [_REPORT_CATEGORY],
        "code": {"text": "检验报告"},
        "subject": {"reference": patient_url},
        "performer": [{"reference": member.reference}],
        "result": results,
    }
    if when := _when(rows[0], feed, "observed_at", community):
        report["effectiveDateTime"] = when
    if issued := _when(rows[0], feed, "reported_at", community):
        report["issued"] = issued if "T" in issued else f"{issued}T00:00:00+08:00"
    bundle.add(
        report,
        {
            "method": "PUT",
            "url": f"DiagnosticReport?{identifier_query(member.system('filler'), report_no)}",
        },
    )
    targets = [{"reference": e["fullUrl"]} for e in bundle.entries]
    bundle.add(
        {
            "resourceType": "Provenance",
            "target": targets,
            "recorded": received_at,
            "agent": [{"who": {"reference": member.reference}}],
            "entity": [
                {
                    "role": "source",
                    "what": {
                        "identifier": {
                            "system": f"{community.identifier_base}/sql-row",
                            "value": source_ref,
                        },
                        "display": f"{feed.table} {report_no}",
                    },
                }
            ],
        },
        {"method": "POST", "url": "Provenance"},
    )
    warnings = [
        ErrorDetail(
            f"local code {code.split('|', 1)[1]!r} of {member.code} has no standard mapping",
            TABLE_VALUE_NOT_FOUND,
            severity="W",
        )
        for code in unmapped
    ]
    return Mapped(
        bundle={"resourceType": "Bundle", "type": "transaction", "entry": bundle.entries},
        patient_key=key,
        warnings=warnings,
        unmapped_codes=unmapped,
    )
