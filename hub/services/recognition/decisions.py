"""What became of each check: recorded as FHIR, counted in ``recognition_checks``.

- ``$recognize`` records one row per item asked.  A recognisable item also gets a
  DetectedIssue (status preliminary, code ``recognisable-result``, implicated: the reports), which
  is how the ordering system answers: it updates the DetectedIssue to ``final`` with
  ``mitigation.action`` = ``accepted`` (no new test) or ``reordered`` plus a repeat reason from
  the community's CodeSystem (病情变化, 急诊急救, 结果变化快, 诊疗意义重大, 患者要求,
  司法鉴定, 其他).
- A ServiceRequest that arrives any other way (a township HIS's ORM/OML, a FHIR create) is
  checked after the fact: ordered while a recognisable result existed, it counts as reordered
  (its reason from ``reasonCode`` when that is a repeat reason, else unspecified).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from hub.search.values import DateFormatError, date_range, from_micros
from hub.services import context
from hub.services.identity import lookup
from hub.services.recognition.catalogue import Catalogue, load_catalogue
from hub.services.recognition.recognize import Answer, recognise
from hub.store.repository import Writer, now_micros
from hub.store.schema import recognition_checks

DECISION = "https://ygt.example.org/fhir/CodeSystem/recognition-decision"
REPEAT_REASON = "https://ygt.example.org/fhir/CodeSystem/repeat-reason"
ISSUE_CODE = {"system": DECISION, "code": "recognisable-result", "display": "已有可互认结果"}
ORDERER = "https://ygt.example.org/fhir/StructureDefinition/orderer"
REPEAT_REASONS = {
    "condition-changed": "病情变化",
    "emergency": "急诊急救",
    "fast-changing": "结果变化快",
    "decisive": "诊疗意义重大",
    "patient-request": "患者要求",
    "forensic": "司法鉴定",
    "other": "其他",
}


def _month(at: datetime) -> str:
    return at.astimezone(context.community().tz).strftime("%Y-%m")


def detected_issue(patient: str, answer: Answer, orderer: str | None, at: datetime) -> dict:
    assert answer.item is not None
    best = answer.reports[0]
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "status": "preliminary",
        "code": {"coding": [ISSUE_CODE]},
        "severity": "low",
        "patient": {"reference": f"Patient/{patient}"},
        "identifiedDateTime": at.isoformat(timespec="seconds"),
        "implicated": [{"reference": f"DiagnosticReport/{c.report_id}"} for c in answer.reports],
        "evidence": [{"code": [{"coding": [answer.coding]}]}],
        "detail": (
            f"{answer.item.display}: {len(answer.reports)} 份可互认结果, "
            f"最新 {best.effective:%Y-%m-%d}, 有效至 {best.valid_until:%Y-%m-%d}"
        ),
    }
    if orderer:
        issue["extension"] = [{"url": ORDERER, "valueReference": {"reference": orderer}}]
    return issue


def record_checks(
    writer: Writer,
    answers: list[Answer],
    *,
    patient: str,
    orderer: str | None,
    at: datetime,
    emergency: bool,
) -> list[str | None]:
    """One row per answered item; the DetectedIssue id of each recognisable one."""
    person = lookup.person_of(writer.conn, patient) or patient
    member = (orderer or "").rsplit("/", 1)[-1]
    issues: list[str | None] = []
    for answer in answers:
        if answer.item is None:
            issues.append(None)
            continue
        issue_id = None
        if answer.recognisable:
            issue_id = writer.create(detected_issue(patient, answer, orderer, at)).res_id
        writer.conn.execute(
            insert(recognition_checks).values(
                checked_at=int(at.timestamp() * 1_000_000),
                month=_month(at),
                orderer=member,
                patient_id=patient,
                person_id=person,
                item=answer.item.code,
                recognisable=answer.recognisable,
                price=float(answer.item.price_yuan),
                decision="pending" if answer.recognisable else "none",
                issue_id=issue_id,
                source="operation",
                emergency=emergency,
            )
        )
        issues.append(issue_id)
    return issues


def _decision(issue: dict[str, Any]) -> tuple[str | None, str | None]:
    decision = reason = None
    for mitigation in issue.get("mitigation") or []:
        for coding in (mitigation.get("action") or {}).get("coding") or []:
            if coding.get("system") == DECISION and coding.get("code") in ("accepted", "reordered"):
                decision = coding["code"]
            if coding.get("system") == REPEAT_REASON and coding.get("code") in REPEAT_REASONS:
                reason = coding["code"]
    return decision, reason


def _authored(text: Any, tz: Any) -> datetime:
    """When an order was placed: its authoredOn, else now."""
    if isinstance(text, str):
        with suppress(DateFormatError):
            return from_micros(date_range(text, tz)[0]).astimezone(tz)
    return datetime.now(tz)


def _orderer(request: dict[str, Any]) -> str:
    ref = (request.get("requester") or {}).get("reference") or ""
    if ref.startswith("Organization/"):
        return ref.split("/", 1)[1]
    members = context.community().members
    for ident in request.get("identifier") or []:
        parts = (ident.get("system") or "").rstrip("/").split("/")
        if len(parts) >= 2 and parts[-1] == "placer" and parts[-2] in members:
            return parts[-2]
    return ""


@dataclass
class RecognitionDecisions:
    """Keeps ``recognition_checks`` in step with DetectedIssue answers and new orders."""

    conn: Connection
    catalogue: Catalogue = field(default_factory=load_catalogue)
    types: frozenset[str] = frozenset({"DetectedIssue", "ServiceRequest"})
    orders: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def before_write(self, writer: Writer, resource: dict[str, Any], res_id: str) -> dict:
        if resource["resourceType"] == "ServiceRequest":
            # An order the hub only knows from its result (an ORU makes sure it exists, with no
            # requester) was placed elsewhere, unseen: not an order to check.  Counting it would
            # also date the check to the day the result arrived (it has no authoredOn).
            if (
                resource.get("status") == "active"
                and resource.get("intent") in ("order", "original-order", "instance-order")
                and resource.get("requester") is not None
            ):
                self.orders.append((res_id, resource))
            return resource
        decision, reason = _decision(resource)
        if decision and resource.get("status") == "final":
            self.conn.execute(
                update(recognition_checks)
                .where(recognition_checks.c.issue_id == res_id)
                .values(
                    decision=decision, repeat_reason=reason if decision == "reordered" else None
                )
            )
        return resource

    def after_delete(self, writer: Writer, res_type: str, res_id: str) -> None:
        return None

    def before_flush(self, writer: Writer) -> None:
        orders, self.orders = self.orders, []
        for res_id, request in orders:
            self._after_the_fact(res_id, request)

    def _after_the_fact(self, res_id: str, request: dict[str, Any]) -> None:
        conn = self.conn
        if conn.execute(
            select(recognition_checks.c.id).where(recognition_checks.c.request_id == res_id)
        ).first():
            return  # checked when it was first written
        patient = ((request.get("subject") or {}).get("reference") or "").rsplit("/", 1)[-1]
        codings = (request.get("code") or {}).get("coding") or []
        if not patient or not codings:
            return
        community = context.community()
        at = _authored(request.get("authoredOn"), community.tz)
        answers = recognise(
            conn, patient_ids=[patient], codings=codings, at=at,
            catalogue=self.catalogue, community=community,
        )  # fmt: skip
        answers = [a for a in answers if a.item is not None][:1]  # one order, one item
        if not answers:
            return
        answer = answers[0]
        assert answer.item is not None
        person = lookup.person_of(conn, patient) or patient
        reason = next(
            (c.get("code") for rc in request.get("reasonCode") or [] for c in rc.get("coding") or []
             if c.get("system") == REPEAT_REASON and c.get("code") in REPEAT_REASONS), None,
        )  # fmt: skip
        # Asked first ($recognize) and ordered anyway: that check's decision, not a new one.
        pending = conn.execute(
            select(recognition_checks.c.id)
            .where(
                recognition_checks.c.person_id == person,
                recognition_checks.c.item == answer.item.code,
                recognition_checks.c.decision == "pending",
                recognition_checks.c.checked_at >= int(at.timestamp() * 1e6) - 86_400_000_000,
            )
            .order_by(recognition_checks.c.id.desc())
        ).first()
        if pending is not None:
            conn.execute(
                update(recognition_checks)
                .where(recognition_checks.c.id == pending.id)
                .values(
                    decision="reordered", repeat_reason=reason or "unspecified", request_id=res_id
                )
            )
            return
        conn.execute(
            insert(recognition_checks).values(
                checked_at=now_micros(),
                month=_month(at),
                orderer=_orderer(request),
                patient_id=patient,
                person_id=person,
                item=answer.item.code,
                recognisable=answer.recognisable,
                price=float(answer.item.price_yuan),
                decision="reordered" if answer.recognisable else "none",
                repeat_reason=(reason or "unspecified") if answer.recognisable else None,
                request_id=res_id,
                source="order",
                emergency=request.get("priority") in ("stat", "asap"),
            )
        )
