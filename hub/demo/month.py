"""The state a month's traffic is built on: the random stream, counters, the events so far,
and the lab and imaging centres' reports that every part of the month asks for."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from functools import partial

from adapters.feeds.config import Community
from hub.demo import clinical, messages
from hub.demo.clinical import Panel
from hub.demo.events import Event, Message
from hub.demo.messages import LabResult, Measured
from hub.demo.population import Population, Resident

FULL_COUNTY = 5000  # the residents the daily rates are for
# Events per day for FULL_COUNTY residents, and the floor for a small county, so that even a
# short run shows every kind of traffic.
RATES = {
    "admit-XRMYY": (5.5, 2.0),
    "admit-XZYY": (1.0, 0.3),
    "outpatient": (6.0, 2.0),
    "lab-order": (1.3, 0.4),  # per centre
    "exam-order": (0.25, 0.1),  # per centre
    "refer-up": (1.5, 1.0),
    "health-check": (0.8, 0.4),
    "malformed": (0.4, 0.0),
}
ALWAYS = ("admit-XRMYY", "admit-XZYY", "malformed")  # the same on weekends


def month_window(month: str, days: int, tz: object) -> tuple[datetime, datetime]:
    """The first instant of the month and the end of its first ``days`` days (at most the
    month)."""
    year, mon = (int(x) for x in month.split("-"))
    first = datetime(year, mon, 1, tzinfo=tz)  # type: ignore[arg-type]
    following = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=tz)  # type: ignore[arg-type]
    return first, min(following, first + timedelta(days=days))


class Month:
    """One plan's making: it holds the random stream, so the order of calls is the plan."""

    def __init__(
        self, community: Community, population: Population, month: str, days: int, seed: int
    ) -> None:
        self.community = community
        self.people = population
        self.rng = random.Random(f"traffic-{seed}-{month}-{days}")
        self.start, self.end = month_window(month, days, community.tz)
        self.month_end = month_window(month, 31, community.tz)[1]
        self.scale = len(population.residents) / FULL_COUNTY
        self.events: list[Event] = []
        self.counters: dict[str, int] = {}
        self.busy: dict[str, datetime] = {}  # resident → in hospital until
        self.expected: dict[str, int] = {}
        ages = [r.age_on(self.start.date()) for r in population.residents]
        # Who falls ill: the old far more than the young.
        self.weights = [(0.3 + a / 40) ** 2 for a in ages]
        self.centre_weights = {
            c: [self.weights[r.index] for r in rs] for c, rs in population.by_centre.items()
        }

    # -- counting and drawing --

    def next(self, counter: str) -> int:
        self.counters[counter] = self.counters.get(counter, 0) + 1
        return self.counters[counter]

    def count(self, what: str, when: datetime | None = None) -> None:
        """One more of ``what`` in the figures (if ``when`` is inside the window)."""
        if when is None or self.in_window(when):
            self.expected[what] = self.expected.get(what, 0) + 1

    def how_many(self, rate: str, day: date) -> int:
        per_day, floor = RATES[rate]
        mean = max(per_day * self.scale, floor)
        if day.weekday() >= 5 and rate not in ALWAYS:
            mean *= 0.5  # weekends: outpatient clinics and township orders slow down
        whole = int(mean)
        return whole + (1 if self.rng.random() < mean - whole else 0)

    def at(self, day: date, earliest: float, latest: float) -> datetime:
        """A moment on ``day`` between two hours of the clock."""
        seconds = self.rng.uniform(earliest * 3600, latest * 3600)
        return datetime.combine(day, time(), self.community.tz) + timedelta(seconds=int(seconds))

    def minutes(self, low: int, high: int) -> timedelta:
        return timedelta(minutes=self.rng.randrange(low, high))

    def pick(self, centre: str | None = None, *, clean: bool = False) -> Resident:
        """Someone who falls ill (the old more often), from a centre's catchment if given;
        ``clean``: whose records carry no mistake."""
        for _ in range(50):
            if centre is None:
                r = self.rng.choices(self.people.residents, weights=self.weights)[0]
            else:
                pool = self.people.by_centre[centre]
                r = self.rng.choices(pool, weights=self.centre_weights[centre])[0]
            if not clean or r.typo is None:
                return r
        return r

    def choose(self, weighted: tuple[tuple[str, float], ...]) -> str:
        return self.rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]

    def free(self, r: Resident, when: datetime) -> bool:
        return self.busy.get(r.key, datetime.min.replace(tzinfo=when.tzinfo)) < when

    def in_window(self, moment: datetime) -> bool:
        return moment < self.end

    def centre_name(self, r: Resident) -> str:
        return self.community.members[r.centre].name

    # -- events --

    def send(
        self,
        at: datetime,
        r: Resident | str,
        sender: str,
        kind: str,
        build: Callable[[str], bytes],
        *,
        expect: tuple[str, ...] = ("AA",),
        unless_accepted: str | None = None,
    ) -> None:
        """A message ``sender`` sends at ``at``; ``build`` makes it from its control id."""
        if not self.in_window(at):
            return
        control = f"{sender}{self.next(f'msh-{sender}'):07d}"
        person = r if isinstance(r, str) else r.key
        payload = build(control)
        self.events.append(
            Message(at, person, sender, kind, control, payload, expect, unless_accepted)
        )

    def post(self, event: Event) -> None:
        if self.in_window(event.at):
            self.events.append(event)

    # -- the centres' reports --

    def measure(self, panel: Panel, abnormal: bool) -> tuple[Measured, ...]:
        out = []
        for i, a in enumerate(panel.analytes):
            if not a.unit:
                out.append(Measured(a, clinical.URINE_TEXT[1 if abnormal else 0], "N"))
                continue
            span = a.high - a.low
            value = self.rng.uniform(a.low + span * 0.15, a.high - span * 0.15)
            flag = "N"
            if abnormal and (i == 0 or self.rng.random() < 0.3):
                flag = "H" if self.rng.random() < 0.7 else "L"
                value = (
                    a.high + span * self.rng.uniform(0.05, 0.6)
                    if flag == "H"
                    else max(a.low * self.rng.uniform(0.5, 0.95), 0.1)
                )
            out.append(Measured(a, f"{value:.{a.decimals}f}", flag))
        return tuple(out)

    def lab(
        self,
        r: Resident,
        panel: Panel,
        *,
        member: str,
        placer: str,
        placer_org: str,
        collected: datetime,
        visit: str | None = None,
        abnormal: float = 0.2,
        unless_accepted: str | None = None,
    ) -> None:
        """The lab centre's report of ``placer``'s order, filed under ``member``'s record (and,
        now and then, its correction a few hours later)."""
        reported = collected + self.minutes(60, 200)
        filler = f"JY{self.start:%Y}{self.next('filler-JY'):06d}"
        values = self.measure(panel, self.rng.random() < abnormal)
        result = LabResult(
            panel, member, placer, placer_org, filler, collected, reported, values, visit=visit
        )
        self.send(reported, r, "XJYZX", "ORU^R01", partial(messages.lab_result, r, result),
                  unless_accepted=unless_accepted)  # fmt: skip
        self.count("lab-report", reported)
        if panel.analytes[0].unit and self.rng.random() < 0.04:
            first = values[0]
            changed = float(first.value) * self.rng.uniform(0.85, 0.95)
            fixed = replace(first, value=f"{changed:.{first.analyte.decimals}f}")
            corrected = replace(
                result, status="C", values=(fixed, *values[1:]),
                reported=reported + self.minutes(90, 400), note="复核后更正：首次报告数值录入有误",
            )  # fmt: skip
            self.send(corrected.reported, r, "XJYZX", "ORU^R01",
                      partial(messages.lab_result, r, corrected),
                      unless_accepted=unless_accepted)  # fmt: skip
            self.count("corrected", corrected.reported)

    def exam(
        self,
        r: Resident,
        exam: clinical.Exam,
        *,
        member: str,
        placer: str,
        placer_org: str,
        done: datetime,
        visit: str | None = None,
    ) -> None:
        """The imaging centre's report (findings and impression; about a third abnormal)."""
        reported = done + self.minutes(60, 300)
        filler = f"YX{self.start:%Y}{self.next('filler-YX'):06d}"
        abnormal = self.rng.random() < 0.35
        result = messages.ExamResult(
            exam, member, placer, placer_org, filler, done, reported, abnormal, visit
        )
        self.send(reported, r, "XYXZX", "ORU^R01", partial(messages.exam_result, r, result))
        self.count("exam-report", reported)
