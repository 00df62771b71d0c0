"""The ``referrals`` and ``referral_events`` tables: each referral's state and its steps.

Written only by the observer, inside the unit of work that writes the FHIR resources, so the
table and the Task never disagree after a commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from hub.store.schema import referral_events, referrals


@dataclass(frozen=True)
class Referral:
    request_id: str
    task_id: str
    direction: str
    requester: str
    performer: str
    patient_id: str
    priority: str
    green: bool
    status: str
    requested_at: int
    due_at: int
    updated_at: int
    encounter_id: str | None = None


def _row(row: Any) -> Referral:
    return Referral(**{name: getattr(row, name) for name in Referral.__dataclass_fields__})


def _one(conn: Connection, where: Any) -> Referral | None:
    row = conn.execute(select(referrals).where(where)).first()
    return _row(row) if row is not None else None


def by_request(conn: Connection, request_id: str) -> Referral | None:
    return _one(conn, referrals.c.request_id == request_id)


def by_task(conn: Connection, task_id: str) -> Referral | None:
    return _one(conn, referrals.c.task_id == task_id)


def by_encounter(conn: Connection, encounter_id: str) -> Referral | None:
    return _one(conn, referrals.c.encounter_id == encounter_id)


def open_to(conn: Connection, performer: str, states: Iterable[str]) -> list[Referral]:
    """Referrals to ``performer`` in one of ``states`` not yet linked to an admission,
    newest first."""
    rows = conn.execute(
        select(referrals)
        .where(
            referrals.c.performer == performer,
            referrals.c.status.in_(sorted(states)),
            referrals.c.encounter_id.is_(None),
        )
        .order_by(referrals.c.requested_at.desc(), referrals.c.request_id)
    )
    return [_row(r) for r in rows]


def open_referral(conn: Connection, referral: Referral, recorded_at: int) -> None:
    conn.execute(insert(referrals).values(**referral.__dict__))
    conn.execute(
        insert(referral_events).values(
            request_id=referral.request_id,
            status=referral.status,
            at=referral.requested_at,
            recorded_at=recorded_at,
        )
    )


def record_step(conn: Connection, request_id: str, status: str, at: int, recorded_at: int) -> None:
    conn.execute(
        update(referrals)
        .where(referrals.c.request_id == request_id)
        .values(status=status, updated_at=at)
    )
    conn.execute(
        insert(referral_events).values(
            request_id=request_id, status=status, at=at, recorded_at=recorded_at
        )
    )


def link_encounter(conn: Connection, request_id: str, encounter_id: str) -> bool:
    """Link the referral to its admission unless another admission got there first (two
    admissions of one person committing at once: the row lock makes one of them see the
    other's link)."""
    linked = conn.execute(
        update(referrals)
        .where(referrals.c.request_id == request_id, referrals.c.encounter_id.is_(None))
        .values(encounter_id=encounter_id)
    )
    return linked.rowcount == 1
