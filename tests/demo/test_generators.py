"""The demo's generators are pure and deterministic, and what they make is what the hub takes:
valid resident IDs, addresses in the centres' catchments, HL7 v2 the mapping accepts (and the
broken messages it refuses), FHIR requests that validate."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from typing import Any

import pytest

from adapters.feeds.config import demo_community
from adapters.feeds.resident_id import parse_resident_id
from adapters.hl7v2.messages import map_message
from adapters.hl7v2.parse import parse
from hub.demo.events import Check, Decide, Message, Move, Transaction
from hub.demo.population import TYPOS, build_population, catchment_prefixes, record_view
from hub.demo.traffic import Plan, build_plan
from hub.fhir.validation import validate_resource

COMMUNITY = demo_community()
HANZI = re.compile(r"^[\u4e00-\u9fff]{2,4}$")


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan(COMMUNITY, build_population(COMMUNITY, 400), "2026-10", 6)


def test_the_community_has_eight_township_centres_with_catchments() -> None:
    townships = [m for m in COMMUNITY.members.values() if m.kind == "township-centre"]
    assert len(townships) == 8
    kinds = {m.kind for m in COMMUNITY.members.values()}
    assert {"lead-hospital", "lab-centre", "imaging-centre", "health-archive"} <= kinds
    prefixes = catchment_prefixes()
    for centre in townships:
        assert centre.division.startswith(prefixes[centre.code]), centre.code


def test_the_population_is_deterministic_and_its_ids_valid() -> None:
    people = build_population(COMMUNITY, 3000, seed=7)
    assert people == build_population(COMMUNITY, 3000, seed=7)
    assert people.residents != build_population(COMMUNITY, 3000, seed=8).residents
    prefixes = catchment_prefixes()
    ids = [r.resident_id for r in people.residents if r.resident_id]
    assert len(ids) == len(set(ids)) >= 2950  # only babies have none yet
    for r in people.residents:
        assert HANZI.match(r.name), r.name
        assert re.fullmatch(r"1[3-9]\d{9}", r.phone)
        assert r.division.startswith(prefixes[r.centre]) and len(r.division) == 12
        assert r.street.startswith(("城东街道", "城西街道")) or "村" in r.street
        if r.resident_id:
            parsed = parse_resident_id(r.resident_id, today=date(2026, 10, 1))
            assert (parsed.birth_date, parsed.sex) == (r.born, r.sex)
    # Most live in the county, some came from elsewhere; about two in three have a contract.
    local = sum(1 for i in ids if i.startswith("330521")) / len(ids)
    assert 0.8 < local < 0.95
    assert 0.55 < sum(r.contracted for r in people.residents) / 3000 < 0.75


def test_a_few_records_carry_each_kind_of_mistake() -> None:
    people = build_population(COMMUNITY, 5000)
    typos = Counter(r.typo for r in people.residents if r.typo)
    assert set(typos) == set(TYPOS) and 80 < sum(typos.values()) < 220
    for r in people.residents:
        if r.typo == "id":
            view = record_view(r, "XRMYY")
            assert view.resident_id != r.resident_id and not view.resident_id_valid
            with pytest.raises(ValueError):
                parse_resident_id(view.resident_id or "")
            assert record_view(r, r.centre).resident_id == r.resident_id
        elif r.typo == "no-id":
            assert record_view(r, r.centre).resident_id is None
            assert record_view(r, r.centre).phone != r.phone
        elif r.typo == "name":
            assert record_view(r, "XRMYY").name != r.name
        elif r.typo == "birth":
            assert record_view(r, "XZYY").born != r.born


def test_the_plan_is_deterministic(plan: Plan) -> None:
    again = build_plan(COMMUNITY, build_population(COMMUNITY, 400), "2026-10", 6)
    assert again.events == plan.events and again.setup == plan.setup
    assert again.expected == plan.expected
    other = build_plan(COMMUNITY, build_population(COMMUNITY, 400), "2026-10", 6, seed=1)
    assert other.events != plan.events


def test_the_plan_holds_every_kind_of_traffic_in_time_order(plan: Plan) -> None:
    times = [e.at for e in plan.events]
    assert times == sorted(times)
    assert all(e.at < plan.end for e in plan.events)
    kinds = plan.expected.by_kind
    for kind in ("ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ORM^O01", "ORU^R01"):
        assert kinds.get(kind), kind
    for kind in ("care-plan", "referral", "order", "move", "check", "decide"):
        assert kinds.get(kind), kind
    e = plan.expected
    assert e.referrals_up and e.green_channel and e.discharges_in_month and e.malformed == 3
    assert sum(len(t.entries) for t in plan.setup) == e.residents == 400
    # The statuses referral desks move Tasks through.
    moves = {m.status for m in plan.events if isinstance(m, Move)}
    assert {"received", "accepted"} <= moves
    # A check's decision follows the check, an order it holds back follows both.
    seen: set[str] = set()
    for event in plan.events:
        if isinstance(event, Check):
            seen.add(event.key)
        elif isinstance(event, Decide):
            assert event.check in seen
        elif isinstance(event, Message | Transaction) and event.unless_accepted:
            assert event.unless_accepted in seen


def _mapped(message: Message) -> dict[str, Any]:
    member = COMMUNITY.member(message.sender)
    charset = (member.charset if member else "UTF-8").lower().replace(" ", "")
    mapped = map_message(
        parse(message.payload, charset), COMMUNITY, source_ref="inbox/1",
        received_at="2026-10-01T08:00:00+08:00",
    )  # fmt: skip
    return mapped.bundle


def test_every_message_maps_and_the_broken_ones_are_refused(plan: Plan) -> None:
    messages = [e for e in plan.events if isinstance(e, Message)]
    refused = 0
    for message in messages:
        if message.expect == ("AA",):
            bundle = _mapped(message)
            for entry in bundle["entry"][:6]:
                validate_resource(entry["resource"])
        else:
            with pytest.raises(ValueError):  # parse and mapping errors are ValueErrors
                _mapped(message)
            refused += 1
    assert refused == plan.expected.malformed
    # Charsets as the members' systems write them: GB 18030 from the HIS, UTF-8 from the LIS.
    lead = next(m for m in messages if m.sender == "XRMYY")
    assert b"GB 18030-2000" in lead.payload
    lead.payload.decode("gb18030")
    controls = [(m.sender, m.control_id) for m in messages]
    assert len(controls) == len(set(controls))


def test_every_fhir_request_validates(plan: Plan) -> None:
    transactions = [*plan.setup, *(e for e in plan.events if isinstance(e, Transaction))]
    for t in transactions:
        for entry in t.entries:
            resource = entry["resource"]
            validate_resource(resource)
            assert entry["request"]["method"] in ("PUT", "POST")
    first = plan.setup[0].entries[0]["resource"]
    assert first["managingOrganization"]["reference"].startswith("Organization/")
    assert first["address"][0]["extension"][0]["valueCode"].startswith("330521")
