"""Which inpatient stays ended in a month, and everything a stay's document draws on.

A stay belongs to the month its discharge (Encounter.period.end) falls in, in the community's
time zone: a stay admitted on 30 September and discharged on 2 October is October's; one
discharged at 23:59:59 on 31 October is October's, at 00:00:00 on 1 November November's.
Stays are read in batches with set-based queries (IN lists over the search index), so a city's
month costs a few queries per hundred stays, not a few per stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import Connection, and_, select

from hub.search.values import DateFormatError, date_range
from hub.services.identity.model import is_master_id
from hub.store.repository import read_many
from hub.store.schema import MIN_TIME, idx_date, idx_reference, idx_token, mpi_records, resources

_INPATIENT = frozenset({"IMP", "ACUTE", "NONAC", "I"})


@dataclass(frozen=True)
class Stay:
    """A stay as the search index knows it: small, so a city's month fits in memory."""

    encounter_id: str
    patient_id: str
    admitted_at: int | None  # µs since epoch
    discharged_at: int  # the exclusive upper bound of the discharge time: sorts the same


@dataclass
class StayRecords:
    """One stay and the resources its document is built from (parsed JSON, by id)."""

    stay: Stay
    encounter: dict[str, Any]
    patient: dict[str, Any] | None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    procedures: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    observations: dict[str, dict[str, Any]] = field(default_factory=dict)
    care_plans: list[dict[str, Any]] = field(default_factory=list)
    # The person's Patient records, the stay's own first (for the addressee).
    person: list[dict[str, Any]] = field(default_factory=list)


def month_bounds(month: str, tz: timezone) -> tuple[int, int]:
    """[start, end) of a YYYY-MM month in µs, midnight to midnight in the community's zone."""
    year, mon = int(month[:4]), int(month[5:7])
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return int(start.timestamp() * 1_000_000), int(end.timestamp() * 1_000_000)


def _ref_id(reference: Any, res_type: str) -> str | None:
    text = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(text, str) and text.startswith(f"{res_type}/"):
        return text.split("/")[1]
    return None


def _lo(text: str | None, tz: timezone) -> int | None:
    if not text:
        return None
    try:
        return date_range(text, tz)[0]
    except DateFormatError:
        return None


def discharged_in(conn: Connection, month: str, tz: timezone) -> list[Stay]:
    """Finished inpatient stays whose discharge falls in ``month``, in discharge order.

    Answered from the search index alone (no resource is parsed), so a city's month costs one
    query and a few MB."""
    start, end = month_bounds(month, tz)
    klass = idx_token.alias("klass")
    status = idx_token.alias("status")
    subject = idx_reference.alias("subject")
    # The period's exclusive upper bound is just after its end: a discharge in [start, end)
    # has its bound in (start, end].  A stay starts before it ends, so lo < end narrows the
    # index range.  No end (still in hospital): the bound is open and out of range.
    rows = conn.execute(
        select(resources.c.res_id, idx_date.c.lo, idx_date.c.hi, subject.c.target_id)
        .join(idx_date, idx_date.c.rid == resources.c.rid)
        .join(subject, subject.c.rid == resources.c.rid)
        .where(
            idx_date.c.res_type == "Encounter",
            idx_date.c.param == "date",
            idx_date.c.lo < end,
            idx_date.c.hi > start,
            idx_date.c.hi <= end,
            resources.c.deleted.is_(False),
            subject.c.param == "subject",
            subject.c.target_type == "Patient",
            select(klass.c.rid)
            .where(
                klass.c.rid == resources.c.rid,
                klass.c.param == "class",
                klass.c.code.in_(sorted(_INPATIENT)),
            )
            .exists(),
            select(status.c.rid)
            .where(
                status.c.rid == resources.c.rid,
                status.c.param == "status",
                status.c.code == "finished",
            )
            .exists(),
        )
    ).all()
    stays = [
        Stay(r.res_id, r.target_id, r.lo if r.lo > MIN_TIME else None, r.hi)
        for r in {r.res_id: r for r in rows}.values()
    ]
    stays.sort(key=lambda s: (s.discharged_at, s.encounter_id))
    return stays


def _referring(
    conn: Connection, res_type: str, param: str, target_type: str, ids: Iterable[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(target id, resource) for each ``res_type`` whose ``param`` points at one of ``ids``."""
    wanted = sorted(set(ids))
    for at in range(0, len(wanted), 500):
        rows = conn.execute(
            select(idx_reference.c.target_id, resources.c.content)
            .join(resources, resources.c.rid == idx_reference.c.rid)
            .where(
                and_(
                    idx_reference.c.res_type == res_type,
                    idx_reference.c.param == param,
                    idx_reference.c.target_type == target_type,
                    idx_reference.c.target_id.in_(wanted[at : at + 500]),
                    resources.c.deleted.is_(False),
                )
            )
        ).all()
        for row in rows:
            if row.content:
                yield row.target_id, orjson.loads(row.content)


def _records_of_persons(conn: Connection, patient_ids: list[str]) -> dict[str, set[str]]:
    """Each patient record → every record of the same person (itself included)."""
    own = {p: {p} for p in patient_ids}
    rows = conn.execute(
        select(mpi_records.c.patient_id, mpi_records.c.master_id).where(
            mpi_records.c.patient_id.in_(patient_ids)
        )
    ).all()
    master_of = {r.patient_id: r.master_id for r in rows}
    masters = sorted(set(master_of.values()))
    if not masters:
        return own
    members: dict[str, set[str]] = {}
    for at in range(0, len(masters), 500):
        for r in conn.execute(
            select(mpi_records.c.patient_id, mpi_records.c.master_id).where(
                mpi_records.c.master_id.in_(masters[at : at + 500])
            )
        ).all():
            members.setdefault(r.master_id, set()).add(r.patient_id)
    for patient, master in master_of.items():
        own[patient] |= {m for m in members.get(master, ()) if not is_master_id(m)}
    return own


def discharge_time(encounter: dict[str, Any], tz: timezone) -> int | None:
    return _lo((encounter.get("period") or {}).get("end"), tz)


def _within(report: dict[str, Any], lo: int | None, hi: int, tz: timezone) -> bool:
    when = _lo(
        report.get("effectiveDateTime")
        or (report.get("effectivePeriod") or {}).get("start")
        or report.get("issued"),
        tz,
    )
    return when is not None and (lo is None or when >= lo) and when < hi


def collect(conn: Connection, stays: list[Stay], tz: timezone) -> list[StayRecords]:
    """The records of each stay: its diagnoses, procedures, and the results made during it.

    Results are the reports filed against the stay, and the person's reports from any member
    (the lab centre's under its own record of the same person) made between admission and
    discharge that name no other stay.
    """
    ids = [s.encounter_id for s in stays]
    encounters = read_many(conn, "Encounter", ids)
    patients = read_many(conn, "Patient", [s.patient_id for s in stays])
    out = {
        s.encounter_id: StayRecords(s, encounters[s.encounter_id], patients.get(s.patient_id))
        for s in stays
        if s.encounter_id in encounters  # deleted since the month was listed
    }
    ids = list(out)
    stays = [out[i].stay for i in ids]
    by_encounter: dict[str, dict[str, dict[str, Any]]] = {i: {} for i in ids}
    for target, cond in _referring(conn, "Condition", "encounter", "Encounter", ids):
        by_encounter[target][cond["id"]] = cond
    listed = {
        s.encounter_id: [
            c
            for d in out[s.encounter_id].encounter.get("diagnosis") or ()
            if (c := _ref_id(d.get("condition"), "Condition"))
        ]
        for s in stays
    }
    missing = {c for cs in listed.values() for c in cs} - {
        c for conds in by_encounter.values() for c in conds
    }
    extra = read_many(conn, "Condition", missing)
    for enc_id, conds in listed.items():
        for c in conds:
            if c in extra:
                by_encounter[enc_id].setdefault(c, extra[c])
    for enc_id, conds in by_encounter.items():
        out[enc_id].conditions = sorted(conds.values(), key=lambda c: c["id"])
    for target, proc in _referring(conn, "Procedure", "encounter", "Encounter", ids):
        out[target].procedures.append(proc)
    reports: dict[str, dict[str, dict[str, Any]]] = {i: {} for i in ids}
    for target, report in _referring(conn, "DiagnosticReport", "encounter", "Encounter", ids):
        reports[target][report["id"]] = report
    persons = _records_of_persons(conn, sorted({s.patient_id for s in stays}))
    record_stays: dict[str, list[Stay]] = {}
    for s in stays:
        for record in persons.get(s.patient_id, {s.patient_id}):
            record_stays.setdefault(record, []).append(s)
    for target, report in _referring(conn, "DiagnosticReport", "subject", "Patient", record_stays):
        other = _ref_id(report.get("encounter"), "Encounter")
        for s in record_stays[target]:
            if (other is None or other == s.encounter_id) and _within(
                report, s.admitted_at, s.discharged_at, tz
            ):
                reports[s.encounter_id].setdefault(report["id"], report)
    wanted = {
        o
        for rs in reports.values()
        for r in rs.values()
        for ref in r.get("result") or ()
        if (o := _ref_id(ref, "Observation"))
    }
    observations = read_many(conn, "Observation", wanted)
    for enc_id, rs in reports.items():
        records = out[enc_id]
        records.reports = sorted(rs.values(), key=lambda r: r["id"])
        for r in records.reports:
            for ref in r.get("result") or ():
                o = _ref_id(ref, "Observation")
                if o in observations:
                    records.observations[o] = observations[o]
    for target, plan in _referring(conn, "CarePlan", "encounter", "Encounter", ids):
        out[target].care_plans.append(plan)
    everyone = read_many(conn, "Patient", {r for rs in persons.values() for r in rs})
    for records in out.values():
        records.procedures.sort(key=lambda p: p["id"])
        records.care_plans.sort(key=lambda p: p["id"])
        own = records.stay.patient_id
        others = sorted(persons.get(own, {own}) - {own})
        records.person = [everyone[r] for r in (own, *others) if r in everyone]
    return [out[i] for i in ids]
