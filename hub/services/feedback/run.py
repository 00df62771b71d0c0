"""A feedback run: the month's stays → documents, each filed in its centre's monthly package.

Idempotent by construction: a document is written only when its digest (what it says) differs
from the last one filed for the stay; then it is a new version with status ``amended`` and the
package, rewritten, flags the entry.  A rerun on unchanged data writes nothing at all.  Each
batch of stays is one transaction; a run cut off half-way is finished by the next one.  One
run at a time across processes (a lease); a second one is refused, not queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, insert, select, update

from adapters.feeds.config import Community
from hub.feeds.bootstrap import COMMUNITY_ORG
from hub.fhir.interactions import Unit
from hub.search.values import date_range, format_instant, from_micros
from hub.services.feedback import packages
from hub.services.feedback.addressee import resolve
from hub.services.feedback.document import build
from hub.services.feedback.model import check_month, composition_id
from hub.services.feedback.stays import Stay, collect, discharge_time, discharged_in
from hub.store import leases
from hub.store.repository import now_micros, read_many
from hub.store.schema import feedback_documents, feedback_runs

LEASE = "monthly-feedback"
LEASE_SECONDS = 600.0
DEFAULT_BASE = "https://ygt.example.org/fhir"
Progress = Callable[[int, int], None]  # (done, total)


class FeedbackBusy(RuntimeError):
    """Another process is running the feedback."""


@dataclass
class Summary:
    month: str
    org: str | None
    stays: int = 0
    new: int = 0
    amended: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    unaddressed: list[str] = field(default_factory=list)  # Encounter ids
    packages_written: int = 0
    run_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stored(conn: Connection, ids: list[str]) -> dict[str, Any]:
    rows = conn.execute(
        select(feedback_documents).where(feedback_documents.c.encounter_id.in_(ids))
    ).all()
    return {r.encounter_id: r for r in rows}


def _file_batch(
    conn: Connection,
    community: Community,
    stays: list[Stay],
    organizations: dict[str, dict[str, Any]],
    summary: Summary,
    *,
    org: str | None,
    base: str,
) -> None:
    tz = community.tz
    unit = Unit.on(conn)
    known = _stored(conn, [s.encounter_id for s in stays])
    timestamp = format_instant(now_micros())
    for records in collect(conn, stays, tz):
        stay = records.stay
        addressee = resolve(records.person or [records.patient or {}], community)
        if org is not None and addressee.org_id != org:
            continue
        summary.stays += 1
        if addressee.org_id is None:
            summary.unaddressed.append(stay.encounter_id)
        row = known.get(stay.encounter_id)
        version = 1 if row is None else row.version + 1
        doc = build(
            records,
            addressee,
            tz=tz,
            base=base,
            custodian=f"Organization/{COMMUNITY_ORG}",
            organizations=organizations,
            version=version,
            timestamp=timestamp,
        )
        if row is not None and row.digest == doc.digest:
            summary.unchanged += 1
            continue
        if row is None:
            # The ids are the stay's own and the row is written in this same transaction: a
            # stay without a row has no document yet, so no lock-and-read round trip is needed.
            unit.writer.create(doc.composition, doc.composition["id"])
            unit.writer.create(doc.bundle, doc.bundle["id"])
        else:
            unit.writer.update(doc.composition, doc.composition["id"])
            unit.writer.update(doc.bundle, doc.bundle["id"])
        values = {
            "month": summary.month,
            "patient_id": stay.patient_id,
            "addressee": addressee.org_id,
            "addressed_by": addressee.by,
            "composition_id": doc.composition["id"],
            "version": version,
            "digest": doc.digest,
            "discharged_at": discharge_time(records.encounter, tz) or stay.discharged_at,
            "updated_at": now_micros(),
        }
        if row is None:
            summary.new += 1
            conn.execute(
                insert(feedback_documents).values(encounter_id=stay.encounter_id, **values)
            )
        else:
            summary.amended += 1
            conn.execute(
                update(feedback_documents)
                .where(feedback_documents.c.encounter_id == stay.encounter_id)
                .values(**values)
            )
    unit.writer.flush()


def _withdraw(conn: Connection, month: str, current: set[str], org: str | None) -> int:
    """Stays filed for the month that no longer end in it (a discharge cancelled or moved):
    their document is withdrawn (entered-in-error), never silently left standing."""
    query = select(feedback_documents).where(
        feedback_documents.c.month == month, feedback_documents.c.digest != "withdrawn"
    )
    if org is not None:
        query = query.where(feedback_documents.c.addressee == org)
    gone = [r for r in conn.execute(query).all() if r.encounter_id not in current]
    if not gone:
        return 0
    unit = Unit.on(conn)
    held = read_many(conn, "Composition", [r.composition_id for r in gone])
    for r in gone:
        comp = held.get(r.composition_id)
        if comp is not None:
            comp = {k: v for k, v in comp.items() if k != "meta"}
            comp["status"] = "entered-in-error"
            unit.writer.update(comp, r.composition_id)
        conn.execute(
            update(feedback_documents)
            .where(feedback_documents.c.encounter_id == r.encounter_id)
            .values(digest="withdrawn", version=r.version + 1, updated_at=now_micros())
        )
    unit.writer.flush()
    return len(gone)


def run_month(
    engine: Engine,
    community: Community,
    month: str,
    *,
    org: str | None = None,
    trigger: str = "cli",
    base: str | None = None,
    progress: Progress | None = None,
    batch_size: int = 200,
    holder: str | None = None,
    done: str | None = None,
) -> Summary:
    """Build, amend and file the feedback documents of ``month`` (YYYY-MM); see the module.

    ``done``: the scheduled period this run completes, recorded with the lease on success."""
    check_month(month)
    holder = holder or leases.holder_name()
    if not leases.acquire(engine, LEASE, holder, LEASE_SECONDS):
        raise FeedbackBusy("another feedback run is in progress; try again when it ends")
    summary = Summary(month, org)
    try:
        with engine.begin() as conn:
            summary.run_id = int(
                conn.execute(
                    insert(feedback_runs)
                    .values(
                        month=month, org=org, trigger=trigger, started_at=now_micros(),
                        status="running",
                    )
                    .returning(feedback_runs.c.id)
                ).scalar_one()
            )  # fmt: skip
        try:
            _run(engine, community, summary, org, base or DEFAULT_BASE, progress, batch_size,
                 holder)  # fmt: skip
        except BaseException:
            _finish(engine, summary, "failed")
            raise
        _finish(engine, summary, "completed")
    except BaseException:
        leases.release(engine, LEASE, holder)
        raise
    leases.release(engine, LEASE, holder, done=done)
    return summary


def _run(
    engine: Engine,
    community: Community,
    summary: Summary,
    org: str | None,
    base: str,
    progress: Progress | None,
    batch_size: int,
    holder: str,
) -> None:
    month = summary.month
    with engine.connect() as conn:
        stays = discharged_in(conn, month, community.tz)
        org_ids = [COMMUNITY_ORG, *(m.org_id for m in community.members.values())]
        organizations = read_many(conn, "Organization", org_ids)
    total = len(stays)
    for at in range(0, total, batch_size):
        batch = stays[at : at + batch_size]
        with engine.begin() as conn:
            _file_batch(conn, community, batch, organizations, summary, org=org, base=base)
        leases.acquire(engine, LEASE, holder, LEASE_SECONDS)  # still ours: renew
        if progress:
            progress(min(at + batch_size, total), total)
    with engine.begin() as conn:
        summary.withdrawn = _withdraw(conn, month, {s.encounter_id for s in stays}, org)
        summary.packages_written = packages.file_packages(
            conn, community, month, org=org, organizations=organizations
        )
    if progress and not total:
        progress(0, 0)


def _finish(engine: Engine, summary: Summary, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(feedback_runs)
            .where(feedback_runs.c.id == summary.run_id)
            .values(
                finished_at=now_micros(),
                status=status,
                summary=orjson.dumps(summary.as_dict()).decode(),
            )
        )


def file_stay(
    conn: Connection, community: Community, encounter_id: str, *, base: str | None = None
) -> str | None:
    """File (or refresh) the document of one finished stay now, in the caller's transaction;
    its Composition id, or None when the Encounter is not a finished stay with a discharge.

    For services that need a stay's document before the month's run (a down-referral sends
    the discharge document with the patient); the month's run then finds it filed."""
    encounter = read_many(conn, "Encounter", [encounter_id]).get(encounter_id)
    if encounter is None or encounter.get("status") != "finished":
        return None
    ends = discharge_time(encounter, community.tz)
    subject = (encounter.get("subject") or {}).get("reference", "")
    if ends is None or not subject.startswith("Patient/"):
        return None
    month = from_micros(ends).astimezone(community.tz).strftime("%Y-%m")
    starts = (encounter.get("period") or {}).get("start")
    stay = Stay(encounter_id, subject.split("/")[1],
                date_range(starts, community.tz)[0] if starts else None, ends + 1)  # fmt: skip
    org_ids = [COMMUNITY_ORG, *(m.org_id for m in community.members.values())]
    summary = Summary(month, None)
    _file_batch(conn, community, [stay], read_many(conn, "Organization", org_ids), summary,
                org=None, base=base or DEFAULT_BASE)  # fmt: skip
    return composition_id(encounter_id)


def previous_month(now: datetime) -> str:
    first = now.replace(day=1)
    year, month = (first.year - 1, 12) if first.month == 1 else (first.year, first.month - 1)
    return f"{year:04d}-{month:02d}"


__all__ = ["FeedbackBusy", "Summary", "composition_id", "previous_month", "run_month"]
