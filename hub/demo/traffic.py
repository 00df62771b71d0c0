"""A month of the county's traffic as pure data: ``build_plan(...)`` → ``Plan``.

What happens, per day (rates for 5,000 residents in ``month.RATES``; a smaller county gets
proportionally less, with a floor so that even a short run shows every kind of traffic):

- the lead hospital (XRMYY) and 县中医院 admit, transfer and discharge (ADT A01/A02/A03 with
  DG1, PR1, 离院方式); the lab centre reports each stay's blood counts and panels, the imaging
  centre its exams (ORU^R01, some abnormal, a few corrected); the hospital's EMR files the
  discharge advice (a CarePlan over FHIR) — ``hospital``;
- outpatients register at the hospitals (ADT^A04), half with a lab test;
- the township and community centres order tests from the lab and imaging centres (ORM^O01,
  OML^O21, or a FHIR ServiceRequest from the one centre whose HIS speaks FHIR), sometimes
  asking ``$recognize`` first; the results come back; a few orders are cancelled — ``centres``;
- centres refer patients up to the lead hospital, some by the green channel — ``referrals``;
  the hospital refers patients down after discharge, with the discharge document, and the
  centre's desk sees them through; discharged patients visit their family doctor, who asks
  ``$recognize`` before ordering and mostly takes the hospital's blood count;
- the lab centre's health-check clinic (体检) files results under its own record numbers;
- a few malformed messages arrive: a wrong character set, a missing PID, an unknown MSH-4.

Before the month every centre has registered its residents' archive records (``Plan.setup``).
The same arguments give the same plan, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from adapters.feeds.config import Community
from hub.demo import centres, hospital, referrals, requests
from hub.demo.events import Event, Expected, Message, Transaction
from hub.demo.month import RATES, Month, month_window
from hub.demo.population import Population

__all__ = ["Plan", "build_plan", "month_window", "registrations"]


@dataclass(frozen=True)
class Plan:
    month: str
    start: datetime  # the month's first instant (stays already under way begin before it)
    end: datetime  # the end of the window (exclusive)
    setup: tuple[Transaction, ...]
    events: tuple[Event, ...]
    expected: Expected


def registrations(
    community: Community, population: Population, at: datetime, batch: int = 100
) -> list[Transaction]:
    """Each centre's residents' archive records (居民健康档案), ``batch`` to a transaction."""
    out = []
    for centre, residents in population.by_centre.items():
        for i in range(0, len(residents), batch):
            entries = tuple(requests.archive_record(community, r) for r in residents[i : i + batch])
            out.append(Transaction(at, f"archive-{centre}-{i}", centre, "archive", entries))
    return out


def _month(m: Month) -> list[Event]:
    hospital.census(m)
    day = m.start.date()
    while datetime.combine(day, time(), m.community.tz) < m.end:
        hospital.admissions(m, day)
        referrals.refer_up(m, day)
        hospital.outpatients(m, day)
        centres.orders(m, day)
        centres.health_checks(m, day)
        day += timedelta(days=1)
    # Every kind of breakage at least once, about one every two or three days in a full county.
    days = (m.end - m.start).days
    centres.malformed(m, max(3, round(RATES["malformed"][0] * m.scale * days)))
    order = sorted(range(len(m.events)), key=lambda i: (m.events[i].at, i))
    return [m.events[i] for i in order]


def build_plan(
    community: Community, population: Population, month: str, days: int, seed: int = 2026
) -> Plan:
    m = Month(community, population, month, days, seed)
    events = _month(m)
    first = min([e.at for e in events], default=m.start)
    setup = registrations(community, population, first - timedelta(hours=1))
    got = m.expected
    kinds: dict[str, int] = {}
    for e in events:
        name = e.kind if isinstance(e, Message | Transaction) else type(e).__name__.lower()
        kinds[name] = kinds.get(name, 0) + 1
    expected = Expected(
        residents=len(population.residents),
        records_at_centres=len(population.residents),
        admissions=got.get("admission", 0),
        discharges_in_month=got.get("discharge", 0),
        referrals_up=got.get("referral-up", 0),
        green_channel=got.get("green-channel", 0),
        referrals_down=got.get("referral-down", 0),
        township_orders=got.get("township-order", 0),
        checks=got.get("check", 0),
        malformed=got.get("malformed", 0),
        messages=sum(1 for e in events if isinstance(e, Message)),
        requests=sum(1 for e in events if not isinstance(e, Message)) + len(setup),
        by_kind=kinds,
    )
    return Plan(month, m.start, m.end, tuple(setup), tuple(events), expected)
