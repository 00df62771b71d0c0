"""The office's monthly figures that no service computes already, and the open items.

Recognition per month (a year's trend), referrals and routed orders still open, and the
monthly feedback per primary-care centre: SQL on the hub's own tables, no HTTP.  The month's
recognition, referral and routing reports themselves come from their services.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone
from typing import Any

import orjson
from sqlalchemy import Connection, and_, case, func, select

from hub.services.feedback.document import patient_name
from hub.services.feedback.model import PRIMARY_CARE_KINDS
from hub.services.feedback.stays import month_bounds
from hub.store.repository import read_many
from hub.store.schema import (
    export_jobs,
    feedback_documents,
    feedback_runs,
    recognition_checks,
    referrals,
    routed_orders,
    subscription_notifications,
)

OPEN_ROUTED = ("sent", "accepted", "resulted", "failed")


# --- mutual recognition -----------------------------------------------------------------------


@dataclass
class MonthFigures:
    month: str
    checked: int = 0
    accepted: int = 0
    reordered: int = 0
    saved: float = 0.0

    @property
    def rate(self) -> float:
        decided = self.accepted + self.reordered
        return self.accepted / decided if decided else 0.0


def recognition_trend(conn: Connection, months: list[str]) -> list[MonthFigures]:
    by_month = {m: MonthFigures(m) for m in months}
    rc = recognition_checks
    rows = conn.execute(
        select(rc.c.month, rc.c.decision, func.count(), func.sum(rc.c.price))
        .where(rc.c.month >= months[0], rc.c.month <= months[-1])
        .group_by(rc.c.month, rc.c.decision)
    )
    for month, decision, count, price in rows:
        figures = by_month[month]
        figures.checked += int(count)
        if decision == "accepted":
            figures.accepted += int(count)
            figures.saved += float(price or 0)
        elif decision == "reordered":
            figures.reordered += int(count)
    return list(by_month.values())


# --- referrals and routed orders: what is still open ------------------------------------------


def open_referrals(conn: Connection, terminal: frozenset[str], limit: int = 200) -> list[Any]:
    return list(
        conn.execute(
            select(referrals)
            .where(referrals.c.status.not_in(sorted(terminal)))
            .order_by(referrals.c.due_at)
            .limit(limit)
        )
    )


def open_routed(conn: Connection, limit: int = 200) -> list[Any]:
    """Orders not yet delivered back (failed ones included: they wait for the office)."""
    return list(
        conn.execute(
            select(routed_orders)
            .where(routed_orders.c.status.in_(OPEN_ROUTED))
            .order_by(routed_orders.c.ordered_at)
            .limit(limit)
        )
    )


# --- monthly feedback -------------------------------------------------------------------------


@dataclass
class CentreFeedback:
    code: str
    name: str
    sent: int = 0
    amended: int = 0
    withdrawn: int = 0
    pulled: int = 0
    exports: int = 0


def feedback_by_centre(conn: Connection, month: str, members: dict[str, Any],
                       tz: timezone) -> list[CentreFeedback]:  # fmt: skip
    """Per primary-care centre: the month's documents (withdrawn ones apart), those amended,
    those delivered to a subscriber, and the Bulk exports of its residents that finished in
    the month."""
    fd = feedback_documents
    centres = {
        code: CentreFeedback(code, m.name)
        for code, m in sorted(members.items())
        if m.kind in PRIMARY_CARE_KINDS
    }

    def centre(code: str) -> CentreFeedback:
        if code not in centres:
            member = members.get(code)
            centres[code] = CentreFeedback(code, member.name if member else "")
        return centres[code]

    live = fd.c.digest != "withdrawn"
    for addressee, sent, amended, withdrawn in conn.execute(
        select(fd.c.addressee, _count_if(live), _count_if(and_(live, fd.c.version > 1)),
               _count_if(~live))
        .where(fd.c.month == month, fd.c.addressee.is_not(None))
        .group_by(fd.c.addressee)
    ):  # fmt: skip
        figures = centre(addressee)
        figures.sent, figures.amended = int(sent or 0), int(amended or 0)
        figures.withdrawn = int(withdrawn or 0)
    sn = subscription_notifications
    delivered = (
        select(fd.c.addressee, func.count(func.distinct(fd.c.composition_id)))
        .select_from(fd.join(sn, and_(sn.c.res_type == "Composition",
                                      sn.c.res_id == fd.c.composition_id)))
        .where(fd.c.month == month, fd.c.addressee.is_not(None), live, sn.c.status == "sent")
        .group_by(fd.c.addressee)
    )  # fmt: skip
    for addressee, count in conn.execute(delivered):
        centre(addressee).pulled = int(count)
    start, end = month_bounds(month, tz)
    for group_id, count in conn.execute(
        select(export_jobs.c.group_id, func.count())
        .where(
            export_jobs.c.status == "completed",
            export_jobs.c.group_id.like("residents-%"),
            export_jobs.c.finished_at >= start,
            export_jobs.c.finished_at < end,
        )
        .group_by(export_jobs.c.group_id)
    ):
        centre(str(group_id).removeprefix("residents-")).exports = int(count)
    return list(centres.values())


def _count_if(condition: Any) -> Any:
    return func.sum(case((condition, 1), else_=0))


def feedback_trend(conn: Connection, months: list[str]) -> dict[str, tuple[int, int]]:
    """Per month: documents sent and amended (withdrawn left out)."""
    fd = feedback_documents
    out = dict.fromkeys(months, (0, 0))
    for month, sent, amended in conn.execute(
        select(fd.c.month, func.count(), _count_if(fd.c.version > 1))
        .where(fd.c.month >= months[0], fd.c.month <= months[-1], fd.c.digest != "withdrawn",
               fd.c.addressee.is_not(None))
        .group_by(fd.c.month)
    ):  # fmt: skip
        out[month] = (int(sent), int(amended or 0))
    return out


def unaddressed(conn: Connection, month: str) -> list[dict[str, Any]]:
    """The month's stays no centre was found for (they are never dropped: the office acts)."""
    fd = feedback_documents
    rows = conn.execute(
        select(fd)
        .where(fd.c.month == month, fd.c.addressee.is_(None), fd.c.digest != "withdrawn")
        .order_by(fd.c.discharged_at)
    ).all()
    patients = read_many(conn, "Patient", [r.patient_id for r in rows])
    return [
        {
            "encounter": r.encounter_id, "patient": r.patient_id,
            "name": patient_name(patients.get(r.patient_id)), "discharged": r.discharged_at,
            "composition": r.composition_id,
        }
        for r in rows
    ]  # fmt: skip


def feedback_runs_recent(conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
    runs = conn.execute(select(feedback_runs).order_by(feedback_runs.c.id.desc()).limit(limit))
    return [
        {
            "id": r.id, "month": r.month, "org": r.org, "trigger": r.trigger,
            "status": r.status, "started": r.started_at,
            "summary": orjson.loads(r.summary) if r.summary else {},
        }
        for r in runs
    ]  # fmt: skip


def latest_feedback_month(conn: Connection) -> str | None:
    return conn.execute(select(func.max(feedback_documents.c.month))).scalar()
