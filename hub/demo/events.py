"""The kinds of event a month is made of (pure data; ``play`` sends them).

Every event has its time in the simulated month and the resident it is about (``person``):
events of one resident are played in order, each after the one before it has taken effect,
while different residents' events overlap, as they do in a county.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Message:
    """An HL7 v2 message a member's system sends over MLLP."""

    at: datetime
    person: str
    sender: str  # member code (MSH-4)
    kind: str  # ADT^A01, ORU^R01, ...
    control_id: str
    payload: bytes
    expect: tuple[str, ...] = ("AA",)  # acceptable MSA-1 codes
    unless_accepted: str | None = None  # a Check's key: not sent if that check was accepted


@dataclass(frozen=True)
class Transaction:
    """A FHIR transaction Bundle a member's system posts; ``keys`` name the ids it makes (by
    entry) for later events to use."""

    at: datetime
    person: str
    client: str  # member code
    kind: str  # what it is, for the progress line: referral, care-plan, order, archive
    entries: tuple[dict[str, Any], ...]
    keys: tuple[str | None, ...] = ()
    unless_accepted: str | None = None


@dataclass(frozen=True)
class Check:
    """``$recognize`` before ordering, and what the clinician does with a recognisable result:
    ``accept`` it (no new test) or ``reorder`` (the order follows; a ``Decide`` records why)."""

    at: datetime
    person: str
    client: str
    key: str
    identifier: tuple[str, str]  # the orderer's own record of the patient (system, value)
    codes: tuple[dict[str, str], ...]
    decision: str  # accept | reorder


@dataclass(frozen=True)
class Decide:
    """The reason recorded on the DetectedIssue of a check whose result was ordered anyway."""

    at: datetime
    person: str
    client: str
    check: str
    reason: str


@dataclass(frozen=True)
class Move:
    """One side of a referral moves its Task (received, accepted, rejected, in-progress,
    completed, cancelled)."""

    at: datetime
    person: str
    client: str
    referral: str  # the Transaction key of the referral ServiceRequest
    status: str
    reason: str | None = None  # statusReason (a rejection says why)


Event = Message | Transaction | Check | Decide | Move


@dataclass(frozen=True)
class Expected:
    """What the month should leave in the hub, for the summary and the tests."""

    residents: int
    records_at_centres: int
    admissions: int
    discharges_in_month: int
    referrals_up: int
    green_channel: int
    referrals_down: int
    township_orders: int
    checks: int
    malformed: int
    messages: int
    requests: int
    by_kind: dict[str, int] = field(default_factory=dict)
