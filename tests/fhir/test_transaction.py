"""Transaction and batch Bundles: placeholders, conditional writes and references, atomicity,
processing order, preconditions, the R4 example Bundle and concurrent conditional creates."""

from __future__ import annotations

import base64
import copy
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from hub.fhir.errors import FhirError, Gone
from hub.fhir.transaction import process_bundle
from hub.store import repository as repo
from hub.store.schema import resources

BASE = "http://hub.test/fhir"
FHIR = "application/fhir+json"
MRN = "urn:oid:2.16.156.XRMYY.mrn"
CORPUS_TRANSACTION = Path("/work/shared/corpus/fhir-r4/bundle-transaction.json")


# --- helpers ---------------------------------------------------------------------------------


def patient(mrn: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": mrn or uuid.uuid4().hex}],
        "name": [{"text": "王五", "family": "王", "given": ["五"]}],
        "gender": "female",
        "birthDate": "1958-07-01",
        **extra,
    }


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 5.6, "unit": "mmol/L"},
        **extra,
    }


def entry(method: str, url: str, resource: Any = None, **request: str) -> dict[str, Any]:
    full_url = request.pop("fullUrl", None)
    out: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        out["resource"] = resource
    if full_url:
        out["fullUrl"] = full_url
    return out


def bundle(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def run(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    return process_bundle(engine, body, base_url=BASE)


def fails(engine: Engine, body: dict[str, Any]) -> FhirError:
    with pytest.raises(FhirError) as info:
        run(engine, body)
    return info.value


def stored(engine: Engine, res_type: str, res_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        content = repo.read(conn, res_type, res_id).content
    assert content is not None
    result: dict[str, Any] = orjson.loads(content)
    return result


def live(engine: Engine, res_type: str | None = None) -> list[tuple[str, str]]:
    """Live resources the clients wrote (the patient index's master records left out)."""
    query = select(resources.c.res_type, resources.c.res_id).where(
        resources.c.deleted.is_(False), resources.c.res_id.not_like("mpi-%")
    )
    if res_type:
        query = query.where(resources.c.res_type == res_type)
    with engine.connect() as conn:
        return [(row.res_type, row.res_id) for row in conn.execute(query)]


def count_all(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(resources)).scalar_one())


def seed(engine: Engine, *resources_: dict[str, Any]) -> list[str]:
    """Create resources through a transaction; their ids, in order."""
    answer = run(engine, bundle(*(entry("POST", r["resourceType"], r) for r in resources_)))
    return [e["resource"]["id"] for e in answer["entry"]]


def put(engine: Engine, resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    answer = run(engine, bundle(entry("PUT", url, resource)))
    result: dict[str, Any] = answer["entry"][0]
    return result


def expressions(error: FhirError) -> list[str]:
    return [e for issue in error.issues for e in issue.expression]


# --- envelope --------------------------------------------------------------------------------


def test_envelope_must_be_a_transaction_or_batch_bundle(engine: Engine, clean_db: None) -> None:
    assert fails(engine, {"resourceType": "Patient"}).status == 400
    error = fails(engine, {"resourceType": "Bundle", "type": "collection"})
    assert (error.status, expressions(error)) == (400, ["Bundle.type"])
    error = fails(engine, bundle(entry("POST", "Patient", patient()), {"request": {"url": "x"}}))
    assert (error.status, expressions(error)) == (400, ["Bundle.entry[1].request.method"])
    error = fails(engine, bundle({"request": {"method": "GET"}}))
    assert expressions(error) == ["Bundle.entry[0].request.url"]
    assert count_all(engine) == 0
    empty = run(engine, bundle())
    assert (empty["type"], empty["entry"]) == ("transaction-response", [])


# --- placeholders ----------------------------------------------------------------------------


def test_placeholders_resolve_everywhere_whatever_the_entry_order(
    engine: Engine, clean_db: None
) -> None:
    p, enc, obs = urn(), urn(), urn()
    ob = observation(
        p,
        encounter={"reference": enc},
        extension=[{"url": "http://hub.test/ext/source", "valueReference": {"reference": enc}}],
        contained=[{"resourceType": "Specimen", "id": "sp", "subject": {"reference": p}}],
        specimen={"reference": "#sp"},
    )
    answer = run(
        engine,
        bundle(
            entry("POST", "Observation", ob, fullUrl=obs),
            entry(
                "POST",
                "Encounter",
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "IMP"},
                    "subject": {"reference": p},
                },
                fullUrl=enc,
            ),
            entry("POST", "Patient", patient("P-1"), fullUrl=p),
        ),
    )
    assert answer["type"] == "transaction-response"
    obs_entry, enc_entry, pat_entry = answer["entry"]
    for e, res_type in (
        (obs_entry, "Observation"),
        (enc_entry, "Encounter"),
        (pat_entry, "Patient"),
    ):
        res_id = e["resource"]["id"]
        assert e["fullUrl"] == f"{BASE}/{res_type}/{res_id}"
        assert e["response"]["status"] == "201 Created"
        assert e["response"]["location"] == f"{res_type}/{res_id}/_history/1"
        assert e["response"]["etag"] == 'W/"1"'
        assert e["response"]["lastModified"] == e["resource"]["meta"]["lastUpdated"]
    pid, eid = pat_entry["resource"]["id"], enc_entry["resource"]["id"]
    saved = stored(engine, "Observation", obs_entry["resource"]["id"])
    assert saved["subject"] == {"reference": f"Patient/{pid}"}
    assert saved["encounter"] == {"reference": f"Encounter/{eid}"}
    assert saved["extension"][0]["valueReference"] == {"reference": f"Encounter/{eid}"}
    assert saved["contained"][0]["subject"] == {"reference": f"Patient/{pid}"}
    assert saved["specimen"] == {"reference": "#sp"}
    assert stored(engine, "Encounter", eid)["subject"] == {"reference": f"Patient/{pid}"}


def test_unknown_placeholder_fails_the_whole_transaction(engine: Engine, clean_db: None) -> None:
    error = fails(
        engine,
        bundle(
            entry("POST", "Patient", patient(), fullUrl=urn()),
            entry("POST", "Observation", observation(urn())),
        ),
    )
    assert error.status == 400
    assert expressions(error) == ["Bundle.entry[1].resource.subject"]
    assert count_all(engine) == 0


def test_the_callers_bundle_is_not_modified(engine: Engine, clean_db: None) -> None:
    p = urn()
    body = bundle(
        entry("POST", "Patient", patient(), fullUrl=p),
        entry("POST", "Observation", observation(p)),
    )
    before = copy.deepcopy(body)
    run(engine, body)
    assert body == before


# --- conditional create, update, delete and references ---------------------------------------


def test_conditional_create_reuses_the_existing_patient(engine: Engine, clean_db: None) -> None:
    [pid] = seed(engine, patient("MRN-7"))
    p = urn()
    answer = run(
        engine,
        bundle(
            entry(
                "POST",
                "Patient",
                patient("MRN-7"),
                fullUrl=p,
                ifNoneExist=f"identifier={MRN}|MRN-7",
            ),
            entry("POST", "Observation", observation(p)),
            # The same conditional create twice in one Bundle is one resource.
            entry("POST", "Patient", patient("MRN-8"), ifNoneExist=f"identifier={MRN}|MRN-8"),
            entry(
                "POST", "Patient", patient("MRN-8"), ifNoneExist=f"Patient?identifier={MRN}|MRN-8"
            ),
        ),
    )
    first, obs, new, again = answer["entry"]
    assert first["response"]["status"] == "200 OK"
    assert first["resource"]["id"] == pid
    assert obs["resource"]["subject"] == {"reference": f"Patient/{pid}"}
    assert (new["response"]["status"], again["response"]["status"]) == ("201 Created", "200 OK")
    assert new["resource"]["id"] == again["resource"]["id"]
    assert len(live(engine, "Patient")) == 2


def test_conditional_reference_resolves_to_the_one_match(engine: Engine, clean_db: None) -> None:
    [pid] = seed(engine, patient("MRN-1"))
    answer = run(
        engine,
        bundle(entry("POST", "Observation", observation(f"Patient?identifier={MRN}|MRN-1"))),
    )
    assert answer["entry"][0]["resource"]["subject"] == {"reference": f"Patient/{pid}"}


def test_conditional_reference_to_a_create_of_the_same_bundle(
    engine: Engine, clean_db: None
) -> None:
    answer = run(
        engine,
        bundle(
            entry("POST", "Observation", observation(f"Patient?identifier={MRN}|NEW-1")),
            entry("POST", "Patient", patient("NEW-1"), ifNoneExist=f"identifier={MRN}|NEW-1"),
        ),
    )
    obs, pat = answer["entry"]
    assert obs["resource"]["subject"] == {"reference": f"Patient/{pat['resource']['id']}"}


@pytest.mark.parametrize("matches", [0, 2])
def test_conditional_reference_without_exactly_one_match_is_412(
    engine: Engine, clean_db: None, matches: int
) -> None:
    for _ in range(matches):
        seed(engine, patient("TWIN"))
    before = count_all(engine)
    error = fails(
        engine,
        bundle(
            entry("POST", "Patient", patient()),
            entry("POST", "Observation", observation(f"Patient?identifier={MRN}|TWIN")),
        ),
    )
    assert error.status == 412
    assert expressions(error) == ["Bundle.entry[1].resource.subject"]
    assert "Bundle.entry[1]" in error.issues[0].diagnostics
    assert count_all(engine) == before


def test_conditional_update_and_delete(engine: Engine, clean_db: None) -> None:
    pid, gone = seed(engine, patient("U-1"), patient("D-1"))
    p = urn()
    answer = run(
        engine,
        bundle(
            entry("PUT", f"Patient?identifier={MRN}|U-1", patient("U-1", active=False)),
            entry("PUT", f"Patient?identifier={MRN}|U-2", patient("U-2"), fullUrl=p),
            entry("POST", "Observation", observation(p)),
            entry("DELETE", f"Patient?identifier={MRN}|D-1"),
            entry("DELETE", f"Patient?identifier={MRN}|nobody"),
        ),
    )
    updated, created, obs, deleted, nothing = answer["entry"]
    assert updated["response"]["status"] == "200 OK"
    assert updated["response"]["location"] == f"Patient/{pid}/_history/2"
    assert updated["resource"]["active"] is False
    assert created["response"]["status"] == "201 Created"
    assert obs["resource"]["subject"]["reference"] == f"Patient/{created['resource']['id']}"
    assert deleted["response"]["status"] == "200 OK"
    assert nothing["response"]["status"] == "204 No Content"
    with engine.connect() as conn, pytest.raises(Gone):
        repo.read(conn, "Patient", gone)


# --- atomicity and order ---------------------------------------------------------------------


def test_a_bad_entry_late_in_the_bundle_leaves_nothing_behind(
    engine: Engine, clean_db: None
) -> None:
    [kept] = seed(engine, patient("KEEP"))
    p = urn()
    before = count_all(engine)
    error = fails(
        engine,
        bundle(
            entry("POST", "Patient", patient(), fullUrl=p),
            entry("PUT", f"Patient/{kept}", {**patient("KEEP"), "id": kept, "active": False}),
            entry("DELETE", "Patient?identifier=" + f"{MRN}|KEEP-other"),
            entry("POST", "Observation", observation(p, effectiveDateTime="2024-13-45")),
        ),
    )
    assert error.status == 422
    assert expressions(error) == ["Bundle.entry[3].resource.effectiveDateTime"]
    assert "Bundle.entry[3].resource.effectiveDateTime" in error.issues[0].diagnostics
    assert count_all(engine) == before
    assert "active" not in stored(engine, "Patient", kept)


def test_deletes_run_before_creates(engine: Engine, clean_db: None) -> None:
    put(engine, {**patient("ORDER-1"), "id": "old-1"})
    answer = run(
        engine,
        bundle(
            entry("POST", "Patient", patient("ORDER-1"), ifNoneExist=f"identifier={MRN}|ORDER-1"),
            entry("DELETE", "Patient/old-1"),
        ),
    )
    created, deleted = answer["entry"]
    # The delete ran first, so the conditional create found nothing and made a new Patient.
    assert created["response"]["status"] == "201 Created"
    assert created["resource"]["id"] != "old-1"
    assert deleted["response"]["status"] == "200 OK"
    assert live(engine, "Patient") == [("Patient", created["resource"]["id"])]


def test_writing_one_resource_twice_is_400(engine: Engine, clean_db: None) -> None:
    error = fails(
        engine,
        bundle(
            entry("PUT", "Patient/twice", {**patient(), "id": "twice"}),
            entry("DELETE", "Patient/twice"),
        ),
    )
    assert error.status == 400
    assert count_all(engine) == 0


def test_reads_see_the_transactions_own_writes(engine: Engine, clean_db: None) -> None:
    answer = run(
        engine,
        bundle(
            entry("GET", f"Patient?identifier={MRN}|SEEN"),
            entry("PUT", "Patient/seen-1", {**patient("SEEN"), "id": "seen-1"}),
            entry("GET", "Patient/seen-1/_history/1"),
            entry("HEAD", "Patient/seen-1"),
        ),
    )
    found, written, version, head = answer["entry"]
    assert found["resource"]["type"] == "searchset"
    assert [e["resource"]["id"] for e in found["resource"]["entry"]] == ["seen-1"]
    assert written["response"]["status"] == "201 Created"
    assert version["resource"]["id"] == "seen-1"
    assert "resource" not in head and head["response"]["etag"] == 'W/"1"'


# --- preconditions and patch -----------------------------------------------------------------


def test_stale_if_match_is_412_and_writes_nothing(engine: Engine, clean_db: None) -> None:
    put(engine, {**patient("IM"), "id": "im-1"})
    put(engine, {**patient("IM"), "id": "im-1", "active": True})  # now version 2
    before = count_all(engine)
    for stale in (
        entry("PUT", "Patient/im-1", {**patient("IM"), "id": "im-1"}, ifMatch='W/"1"'),
        entry("DELETE", "Patient/im-1", ifMatch='W/"1"'),
    ):
        error = fails(engine, bundle(entry("POST", "Patient", patient()), stale))
        assert error.status == 412
        assert all(e.startswith("Bundle.entry[1]") for e in expressions(error))
    assert count_all(engine) == before
    answer = run(
        engine,
        bundle(entry("PUT", "Patient/im-1", {**patient("IM"), "id": "im-1"}, ifMatch='W/"2"')),
    )
    assert answer["entry"][0]["response"]["etag"] == 'W/"3"'


def _binary_patch(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(operations)).decode(),
    }


def test_patch_entry_with_a_binary_json_patch(engine: Engine, clean_db: None) -> None:
    [pid] = seed(engine, patient("PATCH"))
    org = urn()
    ops = [
        {"op": "add", "path": "/active", "value": False},
        {"op": "add", "path": "/managingOrganization", "value": {"reference": org}},
    ]
    answer = run(
        engine,
        bundle(
            entry("PATCH", f"Patient/{pid}", _binary_patch(ops), ifMatch='W/"1"'),
            entry(
                "POST",
                "Organization",
                {"resourceType": "Organization", "name": "卫生院"},
                fullUrl=org,
            ),
        ),
    )
    patched, created = answer["entry"]
    assert patched["response"]["status"] == "200 OK"
    assert patched["response"]["etag"] == 'W/"2"'
    assert patched["resource"]["active"] is False
    oid = created["resource"]["id"]
    assert patched["resource"]["managingOrganization"] == {"reference": f"Organization/{oid}"}
    error = fails(
        engine, bundle(entry("PATCH", f"Patient/{pid}", _binary_patch(ops[:1]), ifMatch='W/"1"'))
    )
    assert error.status == 412


# --- batch -----------------------------------------------------------------------------------


def test_batch_entries_fail_independently(engine: Engine, clean_db: None) -> None:
    p = urn()
    answer = run(
        engine,
        bundle(
            entry("POST", "Patient", patient("B-1"), fullUrl=p),
            entry("GET", "Patient/does-not-exist"),
            entry("POST", "Patient", patient("B-2", birthDate="1999-13-45")),
            entry("POST", "Observation", observation(p)),  # batch entries can't refer to others
            {"request": {"url": "Patient"}},
            entry("GET", f"Patient?identifier={MRN}|B-1"),
            kind="batch",
        ),
    )
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == [
        "201 Created",
        "404 Not Found",
        "422 Unprocessable Entity",
        "400 Bad Request",
        "400 Bad Request",
        "200 OK",
    ]
    for failed in answer["entry"][1:5]:
        assert failed["response"]["outcome"]["resourceType"] == "OperationOutcome"
    invalid = answer["entry"][2]["response"]["outcome"]["issue"][0]
    assert invalid["expression"] == ["Bundle.entry[2].resource.birthDate"]
    assert answer["entry"][5]["resource"]["total"] == 1
    assert live(engine) == [("Patient", answer["entry"][0]["resource"]["id"])]


# --- the R4 example transaction --------------------------------------------------------------


def _corpus() -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(CORPUS_TRANSACTION.read_bytes())
    return result


def test_r4_example_transaction_as_published_is_refused(engine: Engine, clean_db: None) -> None:
    # Entry 7 invokes ValueSet/$lookup (an operation R4 defines on CodeSystem, and no operation
    # runs inside a Bundle here): the whole transaction is refused before anything is written.
    error = fails(engine, _corpus())
    assert error.status == 400
    assert expressions(error) == ["Bundle.entry[7].request.url"]
    assert count_all(engine) == 0


def test_r4_example_transaction_needs_its_if_match_target(engine: Engine, clean_db: None) -> None:
    # Without the operation, entry 4 updates Patient/123a If-Match W/"2": it does not exist.
    body = _corpus()
    del body["entry"][7]
    error = fails(engine, body)
    assert error.status == 412
    assert expressions(error) == ["Bundle.entry[4]"]
    assert count_all(engine) == 0


def test_r4_example_transaction_against_the_resources_it_expects(
    engine: Engine, clean_db: None
) -> None:
    body = _corpus()
    del body["entry"][7]
    peter = {"name": [{"family": "Chalmers", "given": ["Peter"]}]}
    put(engine, {"resourceType": "Patient", "id": "123a", **peter})
    put(engine, {"resourceType": "Patient", "id": "123a", **peter, "active": True})
    for version in range(4):  # Patient/12334 at version 4, as the If-None-Match expects
        put(engine, {"resourceType": "Patient", "id": "12334", **peter, "active": version % 2 == 1})
    # A read of a missing resource fails a transaction, like any other entry.
    missing = copy.deepcopy(body)
    missing["entry"][8]["request"]["url"] = "Patient/nobody"
    assert fails(engine, missing).status == 404

    answer = run(engine, body)
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == [
        "201 Created",  # POST Patient
        "201 Created",  # POST Patient, If-None-Exist matched nothing
        "201 Created",  # PUT Patient/123: update as create
        "201 Created",  # conditional PUT, no match: create
        "200 OK",  # PUT Patient/123a If-Match W/"2"
        "204 No Content",  # DELETE Patient/234: nothing to delete
        "204 No Content",  # conditional DELETE: no match
        "200 OK",  # GET Patient?name=peter
        "304 Not Modified",  # GET Patient/12334 If-None-Match W/"4"
    ]
    assert answer["entry"][2]["response"]["location"] == "Patient/123/_history/1"
    assert answer["entry"][4]["response"]["etag"] == 'W/"3"'
    assert answer["entry"][8]["response"]["etag"] == 'W/"4"'
    assert "resource" not in answer["entry"][8]
    searchset = answer["entry"][7]["resource"]
    found = {e["resource"]["id"] for e in searchset["entry"]}
    new_ids = {answer["entry"][i]["resource"]["id"] for i in (0, 1, 3)}
    assert found == new_ids | {"123", "123a", "12334"}


# --- concurrency -----------------------------------------------------------------------------


def test_twenty_concurrent_transactions_make_one_patient(engine: Engine, clean_db: None) -> None:
    value = uuid.uuid4().hex
    barrier = threading.Barrier(20)

    def post(_: int) -> dict[str, Any]:
        p = urn()
        body = bundle(
            entry(
                "POST",
                "Patient",
                patient(value),
                fullUrl=p,
                ifNoneExist=f"identifier={MRN}|{value}",
            ),
            entry("POST", "Observation", observation(p)),
        )
        barrier.wait()
        return run(engine, body)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    patients = live(engine, "Patient")
    assert len(patients) == 1
    pid = patients[0][1]
    statuses = sorted(a["entry"][0]["response"]["status"] for a in answers)
    assert statuses == ["200 OK"] * 19 + ["201 Created"]
    observations = live(engine, "Observation")
    assert len(observations) == 20
    for _, oid in observations:
        assert stored(engine, "Observation", oid)["subject"] == {"reference": f"Patient/{pid}"}


# --- over HTTP -------------------------------------------------------------------------------


def test_post_transaction_to_the_base_url(client: TestClient) -> None:
    p = urn()
    body = bundle(
        entry("POST", "Patient", patient("HTTP-1"), fullUrl=p),
        entry("POST", "Observation", observation(p)),
    )
    res = client.post("/fhir", content=orjson.dumps(body), headers={"Content-Type": FHIR})
    assert res.status_code == 200, res.text
    answer = res.json()
    assert answer["type"] == "transaction-response"
    pid = answer["entry"][0]["resource"]["id"]
    location = answer["entry"][1]["response"]["location"]
    oid = location.split("/")[1]
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"] == {
        "reference": f"Patient/{pid}"
    }


def test_prefer_minimal_leaves_resources_out_of_write_entries(client: TestClient) -> None:
    p = urn()
    body = bundle(
        entry("POST", "Patient", patient("HTTP-MIN"), fullUrl=p),
        entry("POST", "Observation", observation(p)),
        entry("GET", f"Patient?identifier={MRN}|HTTP-MIN"),
    )
    headers = {"Content-Type": FHIR, "Prefer": "return=minimal"}
    res = client.post("/fhir", content=orjson.dumps(body), headers=headers)
    assert res.status_code == 200, res.text
    created, observed, searched = res.json()["entry"]
    for answer in (created, observed):
        assert "resource" not in answer
        assert answer["response"]["status"].startswith("201")
        assert answer["response"]["location"].count("/_history/") == 1
    # A read in the same Bundle still answers with what it read.
    assert searched["resource"]["total"] == 1
    pid = created["response"]["location"].split("/")[1]
    assert searched["resource"]["entry"][0]["resource"]["id"] == pid


def test_failed_transaction_over_http_is_the_entrys_outcome(client: TestClient) -> None:
    body = bundle(
        entry("POST", "Patient", patient("HTTP-2")),
        entry("POST", "Observation", observation(f"Patient?identifier={MRN}|nobody")),
    )
    res = client.post("/fhir", content=orjson.dumps(body), headers={"Content-Type": FHIR})
    assert res.status_code == 412
    outcome = res.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource.subject"]
    assert client.get("/fhir/Patient", params={"identifier": f"{MRN}|HTTP-2"}).json()["total"] == 0
    not_a_bundle = client.post(
        "/fhir", content=orjson.dumps(patient()), headers={"Content-Type": FHIR}
    )
    assert not_a_bundle.status_code == 400
