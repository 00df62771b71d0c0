"""The dashboard's lists, read straight from the hub's tables (no HTTP): feeds per member and
hour, the message browser, the patient index's open reviews; and the time helpers every page
uses.  The monthly figures are in ``hub.ui.figures``.

Every function takes an open connection and returns plain data for a template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Connection,
    func,
    literal,
    literal_column,
    or_,
    select,
)

from hub.search.engine import find_matches
from hub.services.feedback.document import patient_name
from hub.store.repository import now_micros, read_many
from hub.store.schema import (
    inbox,
    mpi_reviews,
)

HOUR_US = 3_600_000_000
ERROR_STATUSES = ("failed", "rejected")


def local(micros: int | None, tz: timezone, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored instant in the community's time zone, as the office reads clocks."""
    if micros is None:
        return ""
    return datetime.fromtimestamp(micros / 1_000_000, tz).strftime(fmt)


def shift_month(month: str, delta: int) -> str:
    total = int(month[:4]) * 12 + int(month[5:7]) - 1 + delta
    return f"{total // 12:04d}-{total % 12 + 1:02d}"


def months_back(month: str, n: int) -> list[str]:
    """``n`` months ending with ``month``, oldest first."""
    return [shift_month(month, k) for k in range(-(n - 1), 1)]


# --- members and feeds ------------------------------------------------------------------------


@dataclass
class FeedRow:
    sender: str
    name: str
    member: bool
    last_received: int | None = None
    hourly: list[int] = field(default_factory=lambda: [0] * 24)
    hourly_errors: list[int] = field(default_factory=lambda: [0] * 24)
    pending: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return sum(self.hourly)

    @property
    def errors(self) -> int:
        return sum(self.hourly_errors)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.total if self.total else None


@dataclass
class FeedOverview:
    hours: list[str]  # the start of each of the last 24 hours, local HH:00
    rows: list[FeedRow]

    @property
    def hourly(self) -> list[int]:
        return [sum(r.hourly[i] for r in self.rows) for i in range(24)]

    @property
    def hourly_errors(self) -> list[int]:
        return [sum(r.hourly_errors[i] for r in self.rows) for i in range(24)]


def feed_overview(conn: Connection, members: dict[str, Any], tz: timezone,
                  now: int | None = None) -> FeedOverview:  # fmt: skip
    """Per sender: its last message, messages and errors in each of the last 24 hours, its
    queue depth (accepted, not yet applied) and failed messages waiting for a replay.

    ``members``: the community's members by code; those that feed are listed even when
    silent (a silent feed is what the office must notice)."""
    now = now or now_micros()
    start = (now // HOUR_US - 23) * HOUR_US
    rows: dict[str, FeedRow] = {
        code: FeedRow(code, m.name, True)
        for code, m in sorted(members.items())
        if getattr(m, "feeds", True)
    }

    def row(sender: str) -> FeedRow:
        if sender not in rows:
            member = members.get(sender)
            rows[sender] = FeedRow(sender, member.name if member else "", member is not None)
        return rows[sender]

    # Constants inlined (integers only): PostgreSQL takes a GROUP BY expression as the selected
    # one only when both are spelled the same, which two bound parameters are not.
    bucket = (inbox.c.received_at - literal_column(str(start), BigInteger)) // literal_column(
        str(HOUR_US), BigInteger
    )
    recent = conn.execute(
        select(inbox.c.sender, bucket.label("bucket"), inbox.c.status, func.count())
        .where(inbox.c.received_at >= start)
        .group_by(inbox.c.sender, bucket, inbox.c.status)
    )
    for sender, hour, status, count in recent:
        hour = min(max(int(hour), 0), 23)  # a clock step back must not break the page
        target = row(sender)
        target.hourly[hour] += int(count)
        if status in ERROR_STATUSES:
            target.hourly_errors[hour] += int(count)
    for sender, last in conn.execute(
        select(inbox.c.sender, func.max(inbox.c.received_at)).group_by(inbox.c.sender)
    ):
        row(sender).last_received = int(last)
    for status in ("pending", "failed"):
        for sender, count in conn.execute(
            select(inbox.c.sender, func.count())
            .where(inbox.c.status == status)
            .group_by(inbox.c.sender)
        ):
            setattr(row(sender), status, int(count))
    hours = [local(start + i * HOUR_US, tz, "%H:00") for i in range(24)]
    return FeedOverview(hours, list(rows.values()))


# --- the message browser ----------------------------------------------------------------------


@dataclass(frozen=True)
class MessageFilter:
    sender: str = ""
    message_type: str = ""
    control_id: str = ""
    patient: str = ""
    status: str = ""
    since: date | None = None
    until: date | None = None  # inclusive


def _contains(conn: Connection, column: Any, needle: Any) -> Any:
    """Substring test without LIKE's wildcards (the office types what it sees, % included)."""
    if conn.dialect.name == "postgresql":
        return func.strpos(column, needle) > 0
    return func.instr(column, needle) > 0


def _raw_contains(conn: Connection, needle: str) -> Any:
    """The raw bytes contain the text in UTF-8 or GB 18030 (members send either)."""
    encodings = {needle.encode("utf-8"), needle.encode("gb18030", errors="ignore")}
    tests = []
    for encoded in sorted(encodings):
        if conn.dialect.name == "postgresql":
            tests.append(func.position(literal(encoded).op("IN")(inbox.c.raw)) > 0)
        else:
            tests.append(func.instr(inbox.c.raw, literal(encoded)) > 0)
    return or_(*tests)


def search_messages(conn: Connection, wanted: MessageFilter, tz: timezone, *,
                    before: int | None = None, limit: int = 50) -> list[Any]:  # fmt: skip
    """Newest first, ``limit`` rows older than inbox id ``before``."""
    query = select(
        inbox.c.id, inbox.c.transport, inbox.c.sender, inbox.c.control_id,
        inbox.c.message_type, inbox.c.status, inbox.c.error, inbox.c.received_at,
        inbox.c.applied_at,
    ).order_by(inbox.c.id.desc()).limit(limit)  # fmt: skip
    if before is not None:
        query = query.where(inbox.c.id < before)
    if wanted.sender:
        query = query.where(inbox.c.sender == wanted.sender)
    if wanted.status:
        query = query.where(inbox.c.status == wanted.status)
    if wanted.message_type:
        # ORU, ORU^R01 or ORU^R01^ORU_R01: the start of the stored type.
        query = query.where(
            func.substr(inbox.c.message_type, 1, len(wanted.message_type)) == wanted.message_type
        )
    if wanted.control_id:
        query = query.where(inbox.c.control_id == wanted.control_id)
    if wanted.patient:
        query = query.where(
            or_(
                _raw_contains(conn, wanted.patient),
                _contains(conn, inbox.c.bundle, wanted.patient),
            )
        )
    if wanted.since is not None:
        start = datetime(wanted.since.year, wanted.since.month, wanted.since.day, tzinfo=tz)
        query = query.where(inbox.c.received_at >= int(start.timestamp() * 1_000_000))
    if wanted.until is not None:
        end = datetime(wanted.until.year, wanted.until.month, wanted.until.day, tzinfo=tz)
        end += timedelta(days=1)
        query = query.where(inbox.c.received_at < int(end.timestamp() * 1_000_000))
    return list(conn.execute(query))


def senders(conn: Connection) -> list[str]:
    return [s for (s,) in conn.execute(select(inbox.c.sender).distinct().order_by(inbox.c.sender))]


def message(conn: Connection, inbox_id: int) -> Any | None:
    return conn.execute(select(inbox).where(inbox.c.id == inbox_id)).first()


def bundle_entries(bundle_json: str | None) -> list[dict[str, str]]:
    """The mapped transaction's entries: what the message asks the store to do."""
    if not bundle_json:
        return []
    entries = []
    for entry in orjson.loads(bundle_json).get("entry") or []:
        request = entry.get("request") or {}
        resource = entry.get("resource") or {}
        entries.append({
            "method": str(request.get("method", "")),
            "url": str(request.get("url", "")),
            "type": str(resource.get("resourceType", "")),
        })  # fmt: skip
    return entries


def provenance(conn: Connection, identifier_base: str, sender: str,
               control_id: str) -> dict[str, Any] | None:  # fmt: skip
    """The Provenance the message left when it was applied (adapters' map_provenance names
    the message by ``sender|control id`` in ``entity.what.identifier``)."""
    value = f"{identifier_base}/hl7v2-message|{sender}|{control_id}"
    found = find_matches(conn, "Provenance", [("entity:identifier", value)], limit=2)
    if not found:
        return None
    return read_many(conn, "Provenance", [found[0][1]]).get(found[0][1])


# --- the patient index's reviews --------------------------------------------------------------


@dataclass
class PatientCard:
    id: str
    name: str
    gender: str
    birth: str
    identifiers: list[tuple[str, str]]
    phone: str
    address: str


def _card(res_id: str, patient: dict[str, Any] | None) -> PatientCard:
    patient = patient or {}
    identifiers = [
        (str(i.get("system", "")).rsplit("/sid/", 1)[-1], str(i.get("value", "")))
        for i in patient.get("identifier") or []
    ]
    phones = [t.get("value", "") for t in patient.get("telecom") or [] if t.get("value")]
    addresses = [
        a.get("text") or "".join(a.get("line") or []) for a in patient.get("address") or []
    ]
    return PatientCard(
        res_id, patient_name(patient) if patient else "", str(patient.get("gender", "")),
        str(patient.get("birthDate", "")), identifiers, ", ".join(phones),
        ", ".join(a for a in addresses if a),
    )  # fmt: skip


@dataclass
class Review:
    task_id: str
    score: float
    created: int
    record: PatientCard
    candidate: PatientCard
    description: str


def open_reviews(conn: Connection, limit: int = 200) -> list[Review]:
    rows = conn.execute(
        select(mpi_reviews)
        .where(mpi_reviews.c.status == "open")
        .order_by(mpi_reviews.c.created_at)
        .limit(limit)
    ).all()
    ids = {r.patient_id for r in rows} | {r.candidate_id for r in rows}
    patients = read_many(conn, "Patient", ids)
    tasks = read_many(conn, "Task", [r.task_id for r in rows])
    return [
        Review(
            r.task_id, float(r.score), int(r.created_at),
            _card(r.patient_id, patients.get(r.patient_id)),
            _card(r.candidate_id, patients.get(r.candidate_id)),
            str((tasks.get(r.task_id) or {}).get("description", "")),
        )
        for r in rows
        if r.task_id in tasks  # a Task deleted through the API is no longer a question
    ]  # fmt: skip
