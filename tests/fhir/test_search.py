"""Search over HTTP: each parameter type, modifier and prefix, chains, includes, sort, paging."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hub.store.schema import idx_quantity, idx_token

FHIR = {"Content-Type": "application/fhir+json"}
LOINC = "http://loinc.org"
MRN = "urn:oid:2.16.156.XRMYY.mrn"


def create(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    res = client.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=FHIR
    )
    assert res.status_code == 201, res.text
    return res.json()


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def find(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    res = client.get(f"/fhir/{path}", params=params)
    assert res.status_code == 200, res.text
    return res.json()


@pytest.fixture
def community(client: TestClient) -> dict[str, Any]:
    """Two patients, reports and observations, with Chinese names and +08:00 times."""
    org = create(
        client,
        {
            "resourceType": "Organization",
            "name": "县临床检验中心",
            "identifier": [{"system": "urn:ygt:org", "value": "XJYZX"}],
        },
    )
    zhang = create(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": MRN, "value": "ZY0099123"}],
            "name": [{"family": "张", "given": ["三"], "text": "张三"}],
            "gender": "male",
            "birthDate": "1960-03-15",
            "telecom": [{"system": "phone", "value": "13800000001"}],
            "address": [{"city": "青山镇", "district": "某县"}],
            "managingOrganization": {"reference": f"Organization/{org['id']}"},
        },
    )
    li = create(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": MRN, "value": "ZY0099124"}],
            "name": [{"family": "Müller", "given": ["Zoë"]}],
            "gender": "female",
            "birthDate": "1985",
        },
    )
    obs = []
    for i, (pat, code, value, unit, when) in enumerate(
        [
            (zhang, "718-7", 135, "g/L", "2026-10-03T08:30:00+08:00"),
            (zhang, "718-7", 120, "g/L", "2026-10-20T09:00:00+08:00"),
            (zhang, "2339-0", 6.1, "mmol/L", "2026-10-03T08:30:00+08:00"),
            (li, "718-7", 110, "g/L", "2026-09-30T23:30:00+08:00"),
            (li, "2339-0", 5400, "umol/L", "2026-10-01T00:30:00+08:00"),
        ]
    ):
        obs.append(
            create(
                client,
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": "laboratory",
                                }
                            ]
                        }
                    ],
                    "code": {
                        "coding": [
                            {
                                "system": LOINC,
                                "code": code,
                                "display": "Hemoglobin" if code == "718-7" else "Glucose",
                            }
                        ],
                        "text": "血红蛋白" if code == "718-7" else "血糖",
                    },
                    "subject": {"reference": f"Patient/{pat['id']}"},
                    "effectiveDateTime": when,
                    "valueQuantity": {
                        "value": value,
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": unit,
                    },
                    "performer": [{"reference": f"Organization/{org['id']}"}],
                    "identifier": [{"system": "urn:ygt:obs", "value": f"O{i}"}],
                },
            )
        )
    report = create(
        client,
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "58410-2"}]},
            "subject": {"reference": f"Patient/{zhang['id']}"},
            "effectiveDateTime": "2026-10-03T08:30:00+08:00",
            "result": [
                {"reference": f"Observation/{obs[0]['id']}"},
                {"reference": f"Observation/{obs[2]['id']}"},
            ],
            "performer": [{"reference": f"Organization/{org['id']}"}],
        },
    )
    return {"org": org, "zhang": zhang, "li": li, "obs": obs, "report": report}


def test_token_forms(client: TestClient, community: dict[str, Any]) -> None:
    z = community["zhang"]["id"]
    assert ids(find(client, "Patient", identifier=f"{MRN}|ZY0099123")) == [z]
    assert ids(find(client, "Patient", identifier="ZY0099123")) == [z]
    assert ids(find(client, "Patient", identifier=f"{MRN}|")) != []
    assert ids(find(client, "Patient", identifier="|ZY0099123")) == []  # has a system
    assert len(ids(find(client, "Observation", code=f"{LOINC}|718-7"))) == 3
    assert len(ids(find(client, "Observation", **{"code:text": "血红"}))) == 3
    assert len(ids(find(client, "Observation", **{"code:not": f"{LOINC}|718-7"}))) == 2
    assert ids(find(client, "Patient", gender="male")) == [z]
    assert ids(find(client, "Patient", phone="13800000001")) == [z]
    assert len(ids(find(client, "Observation", code="718-7,2339-0"))) == 5


def test_string_forms(client: TestClient, community: dict[str, Any]) -> None:
    z, li = community["zhang"]["id"], community["li"]["id"]
    assert ids(find(client, "Patient", name="张")) == [z]
    assert ids(find(client, "Patient", family="muller")) == [li]  # accent- and case-folded
    assert ids(find(client, "Patient", given="ZOE")) == [li]
    assert ids(find(client, "Patient", **{"family:exact": "Muller"})) == []
    assert ids(find(client, "Patient", **{"family:exact": "Müller"})) == [li]
    assert ids(find(client, "Patient", **{"name:contains": "ll"})) == [li]
    assert ids(find(client, "Patient", address="青山")) == [z]


def test_date_prefixes_and_time_zones(client: TestClient, community: dict[str, Any]) -> None:
    # 2026-09-30T23:30+08:00 is on 30 September in the community's time zone.
    assert len(ids(find(client, "Observation", date="2026-10"))) == 4
    assert len(ids(find(client, "Observation", date="2026-09-30"))) == 1
    assert len(ids(find(client, "Observation", date="ge2026-10-03"))) == 3
    assert len(ids(find(client, "Observation", date="lt2026-10-03"))) == 2
    assert len(ids(find(client, "Observation", date="gt2026-10-03"))) == 1
    assert len(ids(find(client, "Observation", date="le2026-10-01T00:30:00+08:00"))) == 2
    assert len(ids(find(client, "Observation", date="2026-10-03T00:30:00Z"))) == 2
    assert len(ids(find(client, "Observation", date="ne2026-10-03"))) == 3
    assert len(ids(find(client, "Observation", date=["ge2026-10-01", "le2026-10-10"]))) == 3
    assert ids(find(client, "Patient", birthdate="1985")) == [community["li"]["id"]]
    assert ids(find(client, "Patient", birthdate="1985-06")) == []  # 1985 is not inside June
    assert ids(find(client, "Patient", birthdate="ap1960-03-14")) == [community["zhang"]["id"]]
    bad = client.get("/fhir/Observation", params={"date": "2026-02-30"})
    assert bad.status_code == 400


def test_reference_forms_and_chains(client: TestClient, community: dict[str, Any]) -> None:
    z = community["zhang"]["id"]
    assert len(ids(find(client, "Observation", patient=z))) == 3
    assert len(ids(find(client, "Observation", patient=f"Patient/{z}"))) == 3
    assert len(ids(find(client, "Observation", subject=f"Patient/{z}"))) == 3
    assert len(ids(find(client, "Observation", **{"subject:Patient": z}))) == 3
    chained = find(client, "Observation", **{"subject:Patient.identifier": f"{MRN}|ZY0099123"})
    assert len(ids(chained)) == 3
    assert len(ids(find(client, "Observation", **{"patient.name": "张"}))) == 3
    assert len(ids(find(client, "DiagnosticReport", **{"result.code": "2339-0"}))) == 1
    two = find(client, "DiagnosticReport", **{"subject:Patient.organization.name": "县临床"})
    assert ids(two) == [community["report"]["id"]]


def test_reverse_chain(client: TestClient, community: dict[str, Any]) -> None:
    z = community["zhang"]["id"]
    assert ids(find(client, "Patient", **{"_has:Observation:patient:code": "2339-0"})) != []
    assert set(
        ids(find(client, "Patient", **{"_has:Observation:patient:value-quantity": "gt5000"}))
    ) == {community["li"]["id"]}
    nested = find(
        client,
        "Patient",
        **{"_has:Observation:patient:_has:DiagnosticReport:result:code": "58410-2"},
    )
    assert ids(nested) == [z]
    assert ids(find(client, "Patient", **{"_has:DiagnosticReport:patient:code": "58410-2"})) == [z]


def test_quantity_and_units(client: TestClient, community: dict[str, Any]) -> None:
    def matching(value: str) -> int:
        return len(ids(find(client, "Observation", **{"value-quantity": value})))

    assert matching("gt115|http://unitsofmeasure.org|g/L") == 2
    assert matching("135") == 1
    # 5400 umol/L is 5.4 mmol/L: UCUM canonical units make them comparable.
    assert matching("5.4|http://unitsofmeasure.org|mmol/L") == 1
    assert matching("ge5|http://unitsofmeasure.org|mmol/L") == 2
    comp = find(client, "Observation", **{"code-value-quantity": f"{LOINC}|718-7$gt125"})
    assert len(ids(comp)) == 1


def test_id_tag_missing_and_last_updated(client: TestClient, community: dict[str, Any]) -> None:
    z, li = community["zhang"]["id"], community["li"]["id"]
    assert sorted(ids(find(client, "Patient", _id=f"{z},{li}"))) == sorted([z, li])
    assert ids(find(client, "Patient", **{"organization:missing": "true"})) == [li]
    assert ids(find(client, "Patient", **{"organization:missing": "false"})) == [z]
    assert len(ids(find(client, "Patient", _lastUpdated="gt2000-01-01"))) == 2
    assert ids(find(client, "Patient", _lastUpdated="lt2000-01-01")) == []


def test_include_revinclude_iterate(client: TestClient, community: dict[str, Any]) -> None:
    bundle = find(
        client, "DiagnosticReport", _include=["DiagnosticReport:subject", "DiagnosticReport:result"]
    )
    assert len(ids(bundle)) == 1
    included = ids(bundle, "include")
    assert community["zhang"]["id"] in included and len(included) == 3
    rev = find(client, "Patient", _id=community["zhang"]["id"], _revinclude="Observation:patient")
    assert len(ids(rev, "include")) == 3
    it = find(
        client,
        "DiagnosticReport",
        _include=["DiagnosticReport:result", "Observation:performer:iterate"],
    )
    assert community["org"]["id"] in ids(it, "include")


def test_sort_and_paging_while_writing(client: TestClient, community: dict[str, Any]) -> None:
    z = community["zhang"]["id"]
    newest = find(client, "Observation", patient=z, code="718-7", _sort="-date", _count=10)
    dates = [e["resource"]["effectiveDateTime"] for e in newest["entry"]]
    assert dates == sorted(dates, reverse=True)
    by_two = find(client, "Observation", _sort="date,_id", _count=2)
    seen = ids(by_two)
    nxt = [link["url"] for link in by_two["link"] if link["relation"] == "next"]
    # A write between pages must not shift or repeat entries.
    create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "effectiveDateTime": "2000-01-01",
        },
    )
    while nxt:
        page = client.get(nxt[0].split("testserver", 1)[1]).json()
        seen += ids(page)
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        prev = [link["url"] for link in page["link"] if link["relation"] == "previous"]
        assert prev
    original = {o["id"] for o in community["obs"]}
    assert len(seen) == len(set(seen))
    assert set(seen) == original
    missing_last = find(client, "Patient", _sort="birthdate")
    assert ids(missing_last)[0] == community["zhang"]["id"]


def test_previous_link_walks_back(client: TestClient, community: dict[str, Any]) -> None:
    first = find(client, "Observation", _count=2)
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = client.get(nxt.split("testserver", 1)[1]).json()
    prev = next(link["url"] for link in second["link"] if link["relation"] == "previous")
    back = client.get(prev.split("testserver", 1)[1]).json()
    assert ids(back) == ids(first)


def test_summary_elements_total(client: TestClient, community: dict[str, Any]) -> None:
    assert find(client, "Observation", _summary="count")["total"] == 5
    counted = find(client, "Observation", _count=1, _total="accurate")
    assert counted["total"] == 5 and len(counted["entry"]) == 1
    slim = find(client, "Patient", _elements="gender")
    for entry in slim["entry"]:
        assert set(entry["resource"]) <= {"resourceType", "id", "meta", "gender"}
        assert any(t["code"] == "SUBSETTED" for t in entry["resource"]["meta"]["tag"])


def test_post_search_equals_get(client: TestClient, community: dict[str, Any]) -> None:
    res = client.post(
        "/fhir/Observation/_search",
        content=b"code=718-7&_sort=date",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert res.status_code == 200
    assert ids(res.json()) == ids(find(client, "Observation", code="718-7", _sort="date"))


def test_unknown_parameters_strict_and_lenient(
    client: TestClient, community: dict[str, Any]
) -> None:
    strict = client.get("/fhir/Patient", params={"shoe-size": "42"})
    assert strict.status_code == 400
    assert strict.json()["resourceType"] == "OperationOutcome"
    assert "shoe-size" in strict.json()["issue"][0]["diagnostics"]
    lenient = client.get(
        "/fhir/Patient", params={"shoe-size": "42"}, headers={"Prefer": "handling=lenient"}
    )
    assert lenient.status_code == 200
    outcome = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome
    assert client.get("/fhir/Patient", params={"_count": "x"}).status_code == 400
    assert client.get("/fhir/Patient", params={"_cursor": "bm9wZQ"}).status_code == 400


def test_values_with_sql_and_like_characters_are_data(client: TestClient) -> None:
    """Searches are built as SQL text: every value must stay a bound parameter, and LIKE's
    own wildcards in a value must match only themselves."""
    odd = create(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": MRN, "value": "A?%_'; --"}],
            "name": [{"family": "O'Hara_50%?", "given": ["x"]}],
        },
    )
    plain = create(client, {"resourceType": "Patient", "name": [{"family": "OXHaraX50"}]})
    assert ids(find(client, "Patient", identifier=f"{MRN}|A?%_'; --")) == [odd["id"]]
    assert ids(find(client, "Patient", family="O'Hara_50%")) == [odd["id"]]
    assert ids(find(client, "Patient", **{"family:contains": "_50%?"})) == [odd["id"]]
    assert ids(find(client, "Patient", **{"family:exact": "O'Hara_50%?"})) == [odd["id"]]
    assert ids(find(client, "Patient", family="OXHaraX")) == [plain["id"]]
    assert ids(find(client, "Patient", _id=f"{odd['id']},{plain['id']}", _sort="_id")) == sorted(
        [odd["id"], plain["id"]]
    )


def test_combo_parameters_are_answered_from_code_and_component_rows(
    client: TestClient, engine: Any
) -> None:
    """combo-code is code | component.code (and so on): no rows of its own are stored."""

    def quantity(value: float, unit: str) -> dict[str, Any]:
        return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}

    def concept(code: str) -> dict[str, Any]:
        return {"coding": [{"system": LOINC, "code": code}]}

    bp = create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": concept("85354-9"),
            "component": [
                {"code": concept("8480-6"), "valueQuantity": quantity(140, "mm[Hg]")},
                {"code": concept("8462-4"), "valueQuantity": quantity(90, "mm[Hg]")},
            ],
        },
    )["id"]
    hb = create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": concept("718-7"),
            "valueQuantity": quantity(135, "g/L"),
        },
    )["id"]
    assert ids(find(client, "Observation", **{"combo-code": "8480-6"})) == [bp]
    assert ids(find(client, "Observation", **{"combo-code": f"{LOINC}|85354-9"})) == [bp]
    assert ids(find(client, "Observation", **{"combo-code": "718-7"})) == [hb]
    assert ids(find(client, "Observation", **{"combo-code:not": "8480-6"})) == [hb]
    assert set(ids(find(client, "Observation", **{"combo-value-quantity": "gt130"}))) == {bp, hb}
    assert ids(find(client, "Observation", **{"combo-value-quantity": "140||mm[Hg]"})) == [bp]
    both = find(client, "Observation", **{"combo-code-value-quantity": "8480-6$gt130"})
    assert ids(both) == [bp]
    assert len(ids(find(client, "Observation", **{"combo-code:missing": "false"}))) == 2
    assert ids(find(client, "Observation", **{"combo-value-concept:missing": "true"})) != []
    # Sorted by the least code either way: hb's 718-7 before bp's 8462-4.
    assert ids(find(client, "Observation", _sort="combo-code")) == [hb, bp]
    assert ids(find(client, "Observation", _sort="-combo-code")) == [bp, hb]
    with engine.connect() as conn:
        for table in (idx_token, idx_quantity):
            combos = select(func.count()).where(table.c.param.startswith("combo-"))
            assert conn.execute(combos).scalar() == 0, table.name
