"""The office's routing figures (绩效考核): per member and month, from ``routed_orders``.

A month's orders are those placed in it (``authoredOn``, else when the hub routed them, in the
community's zone).  For each ordering member, and for each centre that received orders:

- routed: orders sent to a centre;
- resulted: those with a result (whatever happened after);
- delivered: those whose result reached the orderer (ACK AA, or its rest-hook);
- failed: those whose order or result could not be delivered, as they stand now;
- cancelled: withdrawn by the orderer before a result;
- median turnaround: ordered → first result, in minutes, over the resulted orders.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sqlalchemy import Connection, or_, select

from hub.store.schema import routed_orders as ro

_MINUTE = 60_000_000


@dataclass
class Figures:
    member: str
    routed: int = 0
    resulted: int = 0
    delivered: int = 0
    failed: int = 0
    cancelled: int = 0
    turnarounds: list[int] = field(default_factory=list)  # µs, ordered → resulted

    @property
    def median_turnaround_minutes(self) -> float | None:
        if not self.turnarounds:
            return None
        return statistics.median(self.turnarounds) / _MINUTE

    def count(self, status: str, ordered_at: int, resulted_at: int | None, delivered: bool) -> None:
        self.routed += 1
        if resulted_at is not None:
            self.resulted += 1
            # A result filed before the order's own time (a clock off at the orderer) is no
            # turnaround: counted as zero rather than negative.
            self.turnarounds.append(max(resulted_at - ordered_at, 0))
        if delivered:
            self.delivered += 1
        if status == "failed":
            self.failed += 1
        elif status == "cancelled":
            self.cancelled += 1


@dataclass
class Report:
    month: str
    orderers: list[Figures]
    centres: list[Figures]
    total: Figures


def monthly(conn: Connection, month: str, member: str | None = None) -> Report:
    """The month's figures; with ``member``, only the orders it placed or received."""
    query = select(
        ro.c.orderer, ro.c.destination, ro.c.status, ro.c.ordered_at, ro.c.resulted_at,
        ro.c.delivered_at,
    ).where(ro.c.month == month)  # fmt: skip
    if member is not None:
        query = query.where(or_(ro.c.orderer == member, ro.c.destination == member))
    orderers: dict[str, Figures] = {}
    centres: dict[str, Figures] = {}
    total = Figures("*")
    for orderer, destination, status, ordered_at, resulted_at, delivered_at in conn.execute(query):
        delivered = delivered_at is not None
        for table, code in ((orderers, orderer), (centres, destination)):
            table.setdefault(code, Figures(code)).count(status, ordered_at, resulted_at, delivered)
        total.count(status, ordered_at, resulted_at, delivered)
    if member is not None:
        # Asked about one member: its orders as orderer, its work as centre; not the others'.
        orderers = {k: v for k, v in orderers.items() if k == member}
        centres = {k: v for k, v in centres.items() if k == member}
    return Report(
        month,
        sorted(orderers.values(), key=lambda f: f.member),
        sorted(centres.values(), key=lambda f: f.member),
        total,
    )
