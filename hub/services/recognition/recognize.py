"""Is there a result the orderer must recognise instead of testing again? (检查检验结果互认)

For each ordered item: the person's DiagnosticReports of that item, across every record linked
to the person, judged one by one.  A report is recognisable when it is final, was made by a lab
certified for the item on the day of the result, and is still valid at ``at`` (the result's day,
in the community's time zone, plus the item's validity in days, to the end of that day).
Results under a record linked to the asked one only by a probabilistic match do not count: the
identity is not certain.  Otherwise the answer names the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import Connection

from adapters.feeds.config import Community
from hub.search.sql import Sql, execute
from hub.search.values import date_range, from_micros
from hub.services.identity import lookup
from hub.services.identity.model import is_master_id
from hub.services.recognition.catalogue import Catalogue, Item
from hub.store.schema import mpi_records

LOINC = "http://loinc.org"
CATALOGUE = "https://ygt.example.org/fhir/CodeSystem/recognition-catalogue"
REASONS = "https://ygt.example.org/fhir/CodeSystem/recognition-reason"
REASON_TEXT = {
    "recognised": "可互认 a recognisable result exists",
    "not-in-catalogue": "不在互认目录 not a recognised item",
    "no-result": "无既往结果 no earlier result",
    "expired": "已过有效期 past its validity",
    "not-certified": "检验机构未质控合格 lab not certified on the result's date",
    "not-final": "报告未终审 report not final",
    "corrected": "报告已更正 report corrected",
    "cancelled": "报告已取消 report cancelled",
    "identity-uncertain": "患者身份未确认 identity not certain",
}
# When no report is recognisable, the reason given is the most telling one met.
_PRECEDENCE = ("identity-uncertain", "expired", "not-certified", "corrected", "not-final",
               "cancelled")  # fmt: skip
_FINAL = frozenset({"final", "appended"})
_CORRECTED = frozenset({"amended", "corrected"})
_CANCELLED = frozenset({"cancelled", "entered-in-error"})
_NOT_FINAL = frozenset({"registered", "partial", "preliminary", "unknown"})


@dataclass
class Candidate:
    report_id: str
    performer: str | None  # Organization reference
    effective: datetime
    valid_until: datetime
    observations: list[str]


@dataclass
class Answer:
    coding: dict[str, Any]
    item: Item | None
    recognisable: bool
    reports: list[Candidate] = field(default_factory=list)
    reason: str = "no-result"


def reason_coding(code: str) -> dict[str, str]:
    return {"system": REASONS, "code": code, "display": REASON_TEXT[code]}


def resolve_item(coding: dict[str, Any], catalogue: Catalogue, community: Community) -> Item | None:
    """A standard code, the catalogue's own, or a member's local code through its ConceptMap."""
    system, code = coding.get("system"), coding.get("code")
    if not code:
        return None
    if system in (LOINC, CATALOGUE, None):
        return catalogue.item(code)
    for member in community.members.values():
        if member.local_code_system == system:
            standard = community.standard_coding(member.code, code)
            return catalogue.item(standard.code) if standard else None
    return None


def person_records(conn: Connection, patient_ids: list[str]) -> tuple[list[str], set[str]]:
    """(every record of the persons, the records whose results count as certainly theirs)."""
    asked = set(patient_ids)
    persons = {p for r in patient_ids if (p := lookup.person_of(conn, r))}
    rows = (
        conn.execute(mpi_records.select().where(mpi_records.c.master_id.in_(sorted(persons)))).all()
        if persons
        else []
    )
    methods = {r.patient_id: r.method for r in rows}
    records = sorted({*(r for r in asked if not is_master_id(r)), *methods})
    asked_by_score = any(methods.get(r) == "score" for r in asked)
    certain = {
        r for r in records if r in asked or (methods.get(r) != "score" and not asked_by_score)
    }
    return records, certain


def _local_end_of(day: date, tz: timezone) -> datetime:
    return datetime.combine(day, time(23, 59, 59, 999_000), tzinfo=tz)


def _effective(report: dict[str, Any], tz: timezone) -> datetime | None:
    text = (
        report.get("effectiveDateTime")
        or (report.get("effectivePeriod") or {}).get("start")
        or report.get("issued")
    )
    if not text:
        return None
    return from_micros(date_range(text, tz)[0]).astimezone(tz)


def effective_day(report: dict[str, Any], tz: timezone) -> date | None:
    moment = _effective(report, tz)
    return moment.date() if moment else None


def _reports(conn: Connection, records: list[str], codes: list[str]) -> list[tuple[str, dict]]:
    if not records or not codes:
        return []
    marks_r = ",".join("?" for _ in records)
    marks_c = ",".join("?" for _ in codes)
    query = Sql(
        "SELECT r.res_id, r.content FROM resources r WHERE r.res_type = 'DiagnosticReport' "
        "AND NOT r.deleted AND r.rid IN (SELECT rid FROM idx_reference WHERE "
        "res_type = 'DiagnosticReport' AND param = 'subject' AND target_type = 'Patient' "
        f"AND target_id IN ({marks_r})) AND r.rid IN (SELECT rid FROM idx_token WHERE "
        "res_type = 'DiagnosticReport' AND param = 'code' AND system IN (?, ?) "
        f"AND code IN ({marks_c}))",
        (*records, LOINC, CATALOGUE, *codes),
    )
    return [(res_id, orjson.loads(content)) for res_id, content in execute(conn, query)]


def standard_codes(report: dict[str, Any]) -> set[str]:
    """The report's LOINC and catalogue codes."""
    return {
        c.get("code")
        for c in (report.get("code") or {}).get("coding") or []
        if c.get("system") in (LOINC, CATALOGUE)
    }


def recognise(
    conn: Connection,
    *,
    patient_ids: list[str],
    codings: list[dict[str, Any]],
    at: datetime,
    catalogue: Catalogue,
    community: Community,
    identity_certain: bool = True,
) -> list[Answer]:
    tz = community.tz
    members_by_ref = {m.reference: m.code for m in community.members.values()}
    items = [resolve_item(c, catalogue, community) for c in codings]
    records, certain = person_records(conn, patient_ids)
    found = _reports(conn, records, sorted({i.code for i in items if i}))
    answers = []
    for coding, item in zip(codings, items, strict=True):
        if item is None:
            answers.append(Answer(coding, None, False, reason="not-in-catalogue"))
            continue
        answer = Answer(coding, item, False)
        problems: set[str] = set()
        for report_id, report in found:
            if item.code not in standard_codes(report):
                continue
            subject = ((report.get("subject") or {}).get("reference") or "").split("/")[-1]
            status = report.get("status")
            effective = _effective(report, tz)
            performer = next(
                (p.get("reference") for p in report.get("performer") or []
                 if (p.get("reference") or "") in members_by_ref), None,
            )  # fmt: skip
            if not identity_certain or subject not in certain:
                problems.add("identity-uncertain")
                continue
            if status in _CANCELLED:
                problems.add("cancelled")
                continue
            if status in _CORRECTED:
                problems.add("corrected")
                continue
            if status not in _FINAL:
                problems.add("not-final")
                continue
            if effective is None:
                problems.add("not-final")
                continue
            valid_until = _local_end_of(effective.date() + timedelta(days=item.validity_days), tz)
            if at > valid_until:
                problems.add("expired")
                continue
            member = members_by_ref.get(performer or "")
            if member is None or not catalogue.certified(member, item.code, effective.date()):
                problems.add("not-certified")
                continue
            observations = [
                r.get("reference", "").split("/")[-1] for r in report.get("result") or []
            ]
            answer.reports.append(
                Candidate(report_id, performer, effective, valid_until, observations)
            )
        if answer.reports:
            answer.reports.sort(key=lambda c: c.effective, reverse=True)  # newest first
            answer.recognisable, answer.reason = True, "recognised"
        else:
            answer.reason = next((p for p in _PRECEDENCE if p in problems), "no-result")
        answers.append(answer)
    return answers
