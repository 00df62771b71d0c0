"""The routing rules (pure): which centre an order goes to, and which orders are routed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.feeds.config import demo_community
from hub.services.recognition.catalogue import load_catalogue
from hub.services.routing.router import order_facts
from hub.services.routing.rules import OrderFacts, decide, load_rules, parse_rules

MEMBERS = set(demo_community().members)
RULES = load_rules(demo_community())
LOCAL_QS = "https://ygt.example.org/fhir/CodeSystem/local/QSWSY"


def facts(orderer: str = "QSWSY", kind: str | None = "lab", **more: object) -> OrderFacts:
    community = demo_community()
    named = more.pop("named", None)
    return OrderFacts(
        orderer=orderer,
        orderer_kind=community.members[orderer].kind,
        named=named,  # type: ignore[arg-type]
        named_kind=community.members[named].kind if named else None,  # type: ignore[index]
        kind=kind,
        item=more.pop("item", None),  # type: ignore[arg-type]
        codes=frozenset(more.pop("codes", ())),  # type: ignore[arg-type]
    )


def test_defaults_lab_to_the_lab_centre_and_imaging_to_the_imaging_centre() -> None:
    assert decide(RULES, facts(kind="lab")).destination == "XJYZX"  # type: ignore[union-attr]
    assert decide(RULES, facts(kind="imaging")).destination == "XYXZX"  # type: ignore[union-attr]
    assert decide(RULES, facts(orderer="CDSQ", kind="ecg")).destination == "XRMYY"  # type: ignore[union-attr]


def test_an_item_rule_comes_before_its_kind() -> None:
    echo = decide(RULES, facts(kind="imaging", item="YGT-I011"))
    assert echo is not None and echo.destination == "XRMYY" and "YGT-I011" in echo.because


def test_a_destination_named_in_the_order_wins() -> None:
    named = decide(RULES, facts(kind="lab", named="XYXZX"))
    assert named is not None and (named.destination, named.because) == (
        "XYXZX",
        "named by the order",
    )


def test_who_is_routed() -> None:
    # The lead hospital's orders stay in the hospital, unless they name a regional centre.
    assert decide(RULES, facts(orderer="XRMYY", kind="lab")) is None
    assert decide(RULES, facts(orderer="XRMYY", named="XJYZX")).destination == "XJYZX"  # type: ignore[union-attr]
    assert decide(RULES, facts(orderer="XRMYY", named="XZYY")) is None
    # An order naming its own orderer, or of no known kind, is not routed.
    assert decide(RULES, facts(named="QSWSY")) is None
    assert decide(RULES, facts(kind=None)) is None


def test_a_rule_by_local_code_and_orderer() -> None:
    rules = parse_rules(
        {
            "routeOrdersOf": ["township-centre"],
            "rules": [
                {"code": f"{LOCAL_QS}|XT", "orderer": "QSWSY", "destination": "XRMYY"},
                {"kind": "lab", "destination": "XJYZX"},
            ],
        },
        MEMBERS,
    )
    sugar = facts(kind="lab", codes={(LOCAL_QS, "XT")})
    assert decide(rules, sugar).destination == "XRMYY"  # type: ignore[union-attr]
    assert decide(rules, facts(orderer="BSWSY", codes={(LOCAL_QS, "XT")})).destination == "XJYZX"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"kind": "lab", "destination": "NOPE"}, "destination 'NOPE' is not a member"),
        ({"kind": "blood", "destination": "XJYZX"}, "kind 'blood'"),
        ({"destination": "XJYZX"}, "matches on kind, item or code"),
        ({"code": "58410-2", "destination": "XJYZX"}, "system|code"),
        ({"kind": "lab", "orderer": "X", "destination": "XJYZX"}, "orderer 'X'"),
    ],
)
def test_a_bad_rules_file_says_what_is_wrong(rule: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match="rules\\[0\\]") as caught:
        parse_rules({"rules": [rule]}, MEMBERS)
    assert problem in str(caught.value)


def test_the_demo_rules_file_is_what_the_hub_reads() -> None:
    path = Path(__file__).resolve().parents[3] / "profiles" / "routing" / "rules.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert parse_rules(data, MEMBERS) == RULES


def test_facts_from_a_service_request() -> None:
    community, catalogue = demo_community(), load_catalogue()
    request = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": LOCAL_QS, "code": "XCG"}]},  # via QSWSY's ConceptMap
        "requester": {"reference": "Practitioner/p1"},
        "identifier": [
            {"system": "https://ygt.example.org/fhir/sid/QSWSY/placer", "value": "QS-1"}
        ],
    }
    found = order_facts(request, community, catalogue)
    assert found is not None
    assert (found.orderer, found.kind, found.item, found.named) == ("QSWSY", "lab", "58410-2", None)
    imaging = {
        **request,
        "code": {"text": "床旁超声"},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]}],
        "performer": [{"reference": "Organization/XYXZX"}],
    }
    found = order_facts(imaging, community, catalogue)
    assert found is not None and (found.kind, found.named) == ("imaging", "XYXZX")
    # An order known only from a result (no requester) is no order to route.
    assert order_facts({**request, "requester": None}, community, catalogue) is None
