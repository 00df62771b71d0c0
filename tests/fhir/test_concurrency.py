"""Races that make duplicates in other FHIR servers must not make them here."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson

FHIR = {"Content-Type": "application/fhir+json"}


def test_twenty_simultaneous_conditional_creates_make_one(
    live_server: str, admin_headers: dict[str, str]
) -> None:
    value = uuid.uuid4().hex
    ident = f"urn:oid:2.16.156.XRMYY.mrn|{value}"
    body = orjson.dumps(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.156.XRMYY.mrn", "value": value}],
            "name": [{"text": "李四"}],
        }
    )
    barrier = threading.Barrier(20)

    def create(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=live_server, timeout=60, headers=admin_headers) as http:
            barrier.wait()
            res = http.post(
                "/fhir/Patient",
                content=body,
                headers={**FHIR, "If-None-Exist": f"identifier={ident}"},
            )
            return res.status_code, res.json()["id"]

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(create, range(20)))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(201) == 1, statuses
    assert statuses.count(200) == 19, statuses
    assert len({pid for _, pid in results}) == 1
    found = httpx.get(
        f"{live_server}/fhir/Patient", params={"identifier": ident}, headers=admin_headers
    ).json()
    assert found["total"] == 1


def test_concurrent_updates_never_lose_a_version(
    live_server: str, admin_headers: dict[str, str]
) -> None:
    http = httpx.Client(base_url=live_server, timeout=60, headers=admin_headers)
    created = http.post(
        "/fhir/Patient",
        content=orjson.dumps({"resourceType": "Patient", "active": True}),
        headers=FHIR,
    ).json()
    barrier = threading.Barrier(10)

    def update(i: int) -> int:
        with httpx.Client(base_url=live_server, timeout=60, headers=admin_headers) as client:
            barrier.wait()
            body = {**created, "name": [{"text": f"v{i}"}]}
            return client.put(
                f"/fhir/Patient/{created['id']}", content=orjson.dumps(body), headers=FHIR
            ).status_code

    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(update, range(10))) == {200}
    final = http.get(f"/fhir/Patient/{created['id']}").json()
    assert final["meta"]["versionId"] == "11"
    history = http.get(f"/fhir/Patient/{created['id']}/_history", params={"_count": 50}).json()
    assert sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"]) == list(
        range(1, 12)
    )
    http.close()


def test_write_is_visible_to_the_next_search(
    live_server: str, admin_headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=live_server, timeout=30, headers=admin_headers) as http:
        for i in range(5):
            value = uuid.uuid4().hex
            http.post(
                "/fhir/Patient",
                content=orjson.dumps({"resourceType": "Patient", "identifier": [{"value": value}]}),
                headers=FHIR,
            )
            assert http.get("/fhir/Patient", params={"identifier": value}).json()["total"] == 1, i


def test_one_person_sent_by_ten_members_at_once_gets_one_master(
    live_server: str, admin_headers: dict[str, str]
) -> None:
    """Ten transactions each create a member's record of the same new person (the same
    resident ID) at the same moment: the patient index's locks, taken up front with the
    transaction's own, must still let exactly one of them make the person's master."""
    from adapters.feeds.resident_id import check_character

    # Division, birth date, then an odd (male) sequence number not used by other tests.
    first17 = f"33052119800315{(uuid.uuid4().int % 500) * 2 + 1:03d}"
    resident = first17 + check_character(first17)
    barrier = threading.Barrier(10)

    def send(n: int) -> str:
        member = f"M{n}"
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": {
                        "resourceType": "Patient",
                        "identifier": [
                            {"system": f"urn:ygt:{member}:mrn", "value": f"{n}"},
                            {"system": "https://ygt.example.org/fhir/sid/resident-id",
                             "value": resident},
                        ],
                        "name": [{"text": "王小明", "family": "王", "given": ["小明"]}],
                        "gender": "male",
                        "birthDate": "1980-03-15",
                    },
                    "request": {"method": "POST", "url": "Patient"},
                }
            ],
        }  # fmt: skip
        with httpx.Client(base_url=live_server, timeout=60, headers=admin_headers) as http:
            barrier.wait()
            res = http.post("/fhir", content=orjson.dumps(bundle), headers=FHIR)
            assert res.status_code == 200, res.text
            location = res.json()["entry"][0]["response"]["location"]
            record = http.get(f"/fhir/{location.split('/_history')[0]}").json()
        refer = [link["other"]["reference"] for link in record["link"] if link["type"] == "refer"]
        assert len(refer) == 1, record
        return str(refer[0])

    with ThreadPoolExecutor(10) as pool:
        masters = set(pool.map(send, range(10)))
    assert len(masters) == 1, masters
