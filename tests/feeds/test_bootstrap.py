"""The demo community's directory and conformance resources in the store."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from hub.feeds.bootstrap import load_community_resources


def test_members_naming_systems_and_maps_are_served(engine: sa.Engine, client: TestClient) -> None:
    community = demo_community()
    first = load_community_resources(engine, community)
    assert first >= len(community.members) * 4
    assert load_community_resources(engine, community) == 0  # unchanged: no new versions
    lab = client.get("/fhir/Organization/XJYZX").json()
    assert lab["name"] == "县临床检验中心"
    assert lab["partOf"] == {"reference": "Organization/XRMYY"}
    assert len(client.get("/fhir/Organization/XJYZX/_history").json()["entry"]) == 1
    found = client.get("/fhir/Organization", params={"partof": "Organization/YGT", "_count": 50})
    assert found.json()["total"] >= 10
    mrn = community.members["XRMYY"].system("mrn")
    ns = client.get("/fhir/NamingSystem/xrmyy-mrn").json()
    assert ns["uniqueId"][0]["value"] == mrn
    cmap = client.get("/fhir/ConceptMap/XJYZX-lab").json()
    codes = {e["code"]: e["target"][0]["code"] for e in cmap["group"][0]["element"]}
    assert codes["CBC"] == "58410-2"
