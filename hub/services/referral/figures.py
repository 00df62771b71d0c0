"""The office's referral figures (绩效考核): per member and month, from the recorded steps.

A referral counts in the month it was made; each outcome (accepted, rejected, cancelled,
completed) in the month it happened, so a month's figures are settled once the month is over,
whenever the referral began.  Each member has two sides: the referrals it sent and those it
received, each split by direction.  Time to accept runs from the request to the acceptance.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import timezone

from sqlalchemy import Connection, or_, select

from hub.services.feedback.stays import month_bounds
from hub.store.schema import referral_events as ev
from hub.store.schema import referrals as rf

OUTCOMES = ("accepted", "rejected", "cancelled", "completed")
MINUTE_US = 60_000_000


@dataclass
class Counts:
    referrals: int = 0
    green_channel: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    minutes_to_accept: list[float] = field(default_factory=list)

    @property
    def median_minutes_to_accept(self) -> float | None:
        return statistics.median(self.minutes_to_accept) if self.minutes_to_accept else None


@dataclass
class MemberFigures:
    member: str
    sent: dict[str, Counts]  # by direction
    received: dict[str, Counts]


@dataclass
class Report:
    month: str
    members: list[MemberFigures]
    total: dict[str, Counts]  # by direction, each referral once


def _sides(directions: list[str]) -> dict[str, Counts]:
    return {d: Counts() for d in directions}


def monthly(
    conn: Connection, month: str, tz: timezone, directions: list[str], member: str | None = None
) -> Report:
    """The month's figures; with ``member``, that member's alone (and the total of the
    referrals it took part in)."""
    start, end = month_bounds(month, tz)
    by_member: dict[str, MemberFigures] = {}
    total = _sides(directions)

    def side(code: str, sent: bool, direction: str) -> Counts | None:
        if member is not None and code != member:
            return None
        figures = by_member.setdefault(
            code, MemberFigures(code, _sides(directions), _sides(directions))
        )
        return (figures.sent if sent else figures.received).setdefault(direction, Counts())

    involved = or_(rf.c.requester == member, rf.c.performer == member)
    made = select(rf.c.requester, rf.c.performer, rf.c.direction, rf.c.green).where(
        rf.c.requested_at >= start, rf.c.requested_at < end
    )
    if member is not None:
        made = made.where(involved)
    for requester, performer, direction, green in conn.execute(made):
        for counts in (
            side(requester, True, direction),
            side(performer, False, direction),
            total.setdefault(direction, Counts()),
        ):
            if counts is not None:
                counts.referrals += 1
                counts.green_channel += bool(green)

    steps = (
        select(
            rf.c.requester, rf.c.performer, rf.c.direction, rf.c.requested_at, ev.c.status, ev.c.at
        )
        .select_from(ev)
        .join(rf, rf.c.request_id == ev.c.request_id)
        .where(ev.c.at >= start, ev.c.at < end, ev.c.status.in_(OUTCOMES))
    )
    if member is not None:
        steps = steps.where(involved)
    for requester, performer, direction, requested_at, status, at in conn.execute(steps):
        for counts in (
            side(requester, True, direction),
            side(performer, False, direction),
            total.setdefault(direction, Counts()),
        ):
            if counts is None:
                continue
            counts.outcomes[status] += 1
            if status == "accepted":
                counts.minutes_to_accept.append((at - requested_at) / MINUTE_US)
    return Report(month, sorted(by_member.values(), key=lambda f: f.member), total)
