"""The office's figures: per member and month, from ``recognition_checks``."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from hub.store.schema import recognition_checks as rc


@dataclass
class Figures:
    member: str
    checked: int = 0
    recognisable: int = 0
    accepted: int = 0
    reordered: int = 0
    pending: int = 0
    saved_yuan: float = 0.0
    repeated_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Recognised instead of repeated, of those that could have been."""
        decided = self.accepted + self.reordered
        return self.accepted / decided if decided else 0.0


def monthly(conn: Connection, month: str, member: str | None = None) -> list[Figures]:
    query = (
        select(
            rc.c.orderer,
            rc.c.decision,
            rc.c.repeat_reason,
            rc.c.recognisable,
            func.count(),
            func.sum(rc.c.price),
        )
        .where(rc.c.month == month)
        .group_by(rc.c.orderer, rc.c.decision, rc.c.repeat_reason, rc.c.recognisable)
    )
    if member is not None:
        query = query.where(rc.c.orderer == member)
    by_member: dict[str, Figures] = {}
    for orderer, decision, reason, recognisable, count, price in conn.execute(query):
        figures = by_member.setdefault(orderer, Figures(orderer))
        figures.checked += count
        if recognisable:
            figures.recognisable += count
        if decision == "accepted":
            figures.accepted += count
            figures.saved_yuan += float(price or 0)
        elif decision == "reordered":
            figures.reordered += count
            key = reason or "unspecified"
            figures.repeated_by_reason[key] = figures.repeated_by_reason.get(key, 0) + count
        elif decision == "pending":
            figures.pending += count
    return sorted(by_member.values(), key=lambda f: f.member)


def total(figures: list[Figures]) -> Figures:
    out = Figures("*")
    for f in figures:
        out.checked += f.checked
        out.recognisable += f.recognisable
        out.accepted += f.accepted
        out.reordered += f.reordered
        out.pending += f.pending
        out.saved_yuan += f.saved_yuan
        for reason, n in f.repeated_by_reason.items():
            out.repeated_by_reason[reason] = out.repeated_by_reason.get(reason, 0) + n
    return out
