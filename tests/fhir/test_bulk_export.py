"""FHIR Bulk Data export over HTTP on the real store: kick-off, poll, manifest, NDJSON files,
scope (system, Patient, a centre's residents, an actual Group), bad requests, cancel, failure,
a dead runner's job resumed, and two runners never running one job."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from adapters.feeds.config import demo_community
from hub.feeds.bootstrap import load_community_resources
from hub.fhir.operations import export as export_http
from hub.services.export import jobs
from hub.services.export.jobs import MAX_ATTEMPTS, SECOND
from hub.services.export.runner import ExportRunner, run_job, run_pending
from hub.services.export.writer import JobWriter, Limits
from hub.store.repository import now_micros
from hub.store.schema import export_files, export_jobs, feedback_documents

FHIR = "application/fhir+json"
ASYNC = {"Prefer": "respond-async"}
BASE = "http://testserver/fhir"
LEASE = 60 * SECOND


# --- data ------------------------------------------------------------------------------------


def put(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    path = f"/fhir/{resource['resourceType']}/{resource['id']}"
    res = client.put(path, content=orjson.dumps(resource), headers={"Content-Type": FHIR})
    assert res.status_code in (200, 201), res.text
    body: dict[str, Any] = res.json()
    return body


def patient(pid: str, name: str, birth: str, gp: str | None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "https://ygt.example.org/fhir/sid/test-mrn", "value": pid}],
        "name": [{"text": name}],
        "gender": "female",
        "birthDate": birth,
    }
    if gp:
        res["generalPractitioner"] = [{"reference": f"Organization/{gp}"}]
    return res


def observation(oid: str, subject: str | None, value: float = 5.0) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}], "text": "血糖"},
        "valueQuantity": {"value": value, "unit": "mmol/L"},
    }
    if subject:
        res["subject"] = {"reference": subject}
    return res


@pytest.fixture
def seeded(client: TestClient, engine: sa.Engine) -> dict[str, Any]:
    """Two residents of QSWSY, one of BSWSY, a hospital record whose feedback went to QSWSY,
    their results, an Observation about no patient, one about a Group, and one deleted."""
    load_community_resources(engine, demo_community())
    put(client, patient("qs-1", "王秀英", "1951-02-03", "QSWSY"))
    put(client, patient("qs-2", "李桂兰", "1947-11-30", "QSWSY"))
    put(client, patient("bs-1", "赵淑珍", "1963-06-21", "BSWSY"))
    put(client, patient("hosp-1", "陈玉梅", "1958-09-09", None))
    for pid in ("qs-1", "qs-2", "bs-1", "hosp-1"):
        put(client, observation(f"glu-{pid}", f"Patient/{pid}"))
    put(client, observation("glu2-qs-1", "Patient/qs-1", 6.1))
    put(client, {"resourceType": "Encounter", "id": "stay-hosp-1", "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                           "code": "IMP"},
                 "subject": {"reference": "Patient/hosp-1"}})  # fmt: skip
    put(client, {"resourceType": "Condition", "id": "dx-bs-1",
                 "subject": {"reference": "Patient/bs-1"},
                 "code": {"text": "高血压"}})  # fmt: skip
    put(client, observation("qc-lot", None))
    put(client, {"resourceType": "Group", "id": "ward-3", "type": "person", "actual": True})
    put(client, observation("glu-ward-3", "Group/ward-3"))
    put(client, observation("gone-qs-1", "Patient/qs-1"))
    assert client.delete("/fhir/Observation/gone-qs-1").status_code in (200, 204)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(feedback_documents).values(
                encounter_id="stay-hosp-1", month="2026-10", patient_id="hosp-1",
                addressee="QSWSY", addressed_by="general-practitioner",
                composition_id="fb-stay-hosp-1", version=1, digest="x" * 64,
                discharged_at=now_micros(), updated_at=now_micros(),
            )
        )  # fmt: skip
    masters = {
        pid: client.get(f"/fhir/Patient/{pid}").json()["link"][0]["other"]["reference"]
        for pid in ("qs-1", "qs-2", "bs-1", "hosp-1")
    }
    assert all(m.startswith("Patient/mpi-") for m in masters.values())
    return {"masters": masters}


def store_ids(engine: sa.Engine) -> dict[str, set[str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT res_type, res_id FROM resources WHERE NOT deleted"))
        out: dict[str, set[str]] = {}
        for res_type, res_id in rows:
            out.setdefault(res_type, set()).add(res_id)
    return out


# --- the protocol ----------------------------------------------------------------------------


def kick(client: TestClient, path: str, **params: str) -> str:
    res = client.get(path, params=params, headers=ASYNC)
    assert res.status_code == 202, res.text
    assert res.json()["resourceType"] == "OperationOutcome"
    status_url: str = res.headers["Content-Location"]
    assert status_url.startswith(f"{BASE}/$export-status/")
    return status_url


def job_id_of(status_url: str) -> str:
    return status_url.rsplit("/", 1)[1]


def manifest_of(client: TestClient, status_url: str) -> dict[str, Any]:
    res = client.get(status_url)
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("application/json")
    assert "GMT" in res.headers["Expires"]
    body: dict[str, Any] = res.json()
    return body


def finish(client: TestClient, engine: sa.Engine, status_url: str, **kw: Any) -> dict[str, Any]:
    run_pending(engine, **kw)
    return manifest_of(client, status_url)


def download(client: TestClient, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every output file, each line checked as FHIR R4 with the fhir.resources models."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        res = client.get(item["url"])
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("application/fhir+ndjson")
        lines = res.content.decode("utf-8").splitlines()
        assert len(lines) == item["count"]
        for line in lines:
            resource = orjson.loads(line)
            assert resource["resourceType"] == item["type"]
            get_fhir_model_class(item["type"]).model_validate(resource)
            out.setdefault(item["type"], []).append(resource)
    return out


def ids(downloaded: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    out = {t: {r["id"] for r in rs} for t, rs in downloaded.items()}
    for t, rs in downloaded.items():
        assert len(rs) == len(out[t]), f"{t} exported twice"
    return out


# --- round trips -----------------------------------------------------------------------------


def test_system_export_round_trip(client: TestClient, engine: sa.Engine, seeded: Any) -> None:
    url = kick(client, "/fhir/$export", _outputFormat="application/fhir+ndjson")
    waiting = client.get(url)
    assert waiting.status_code == 202
    assert waiting.headers["X-Progress"]
    assert int(waiting.headers["Retry-After"]) > 0

    manifest = finish(client, engine, url)
    assert manifest["request"] == f"{BASE}/$export?_outputFormat=application%2Ffhir%2Bndjson"
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z")
    expected = store_ids(engine)
    counts = Counter[str]()
    for item in manifest["output"]:
        counts[item["type"]] += item["count"]
        assert item["url"].startswith(f"{BASE}/$export-file/{job_id_of(url)}/")
    assert dict(counts) == {t: len(v) for t, v in expected.items()}
    got = ids(download(client, manifest))
    assert got == expected
    assert "gone-qs-1" not in got["Observation"]
    assert {"qc-lot", "glu-ward-3"} <= got["Observation"]
    # The stored JSON, line for line.
    first = download(client, {"output": [i for i in manifest["output"] if i["type"] == "Patient"]})
    stored = client.get("/fhir/Patient/qs-1").json()
    assert next(p for p in first["Patient"] if p["id"] == "qs-1") == stored


def test_type_since_and_post_parameters(client: TestClient, engine: sa.Engine, seeded: Any) -> None:
    url = kick(client, "/fhir/$export", _type="Patient,Observation", _since="2000-01-01T00:00:00Z")
    first = finish(client, engine, url)
    assert {i["type"] for i in first["output"]} == {"Patient", "Observation"}
    got = ids(download(client, first))
    assert got == {t: v for t, v in store_ids(engine).items() if t in ("Patient", "Observation")}

    # Changes after the first export's transactionTime, and nothing else, with _since.
    changed = client.get("/fhir/Observation/glu-bs-1").json()
    put(client, {**changed, "valueQuantity": {"value": 9.9, "unit": "mmol/L"}})
    put(client, patient("qs-3", "周凤英", "1970-01-15", "QSWSY"))
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_outputFormat", "valueString": "ndjson"},
            {"name": "_type", "valueString": "Observation"},
            {"name": "_type", "valueString": "Patient"},
            {"name": "_since", "valueInstant": first["transactionTime"]},
        ],
    }
    res = client.post("/fhir/$export", content=orjson.dumps(body),
                      headers={"Content-Type": FHIR, **ASYNC})  # fmt: skip
    assert res.status_code == 202, res.text
    second = finish(client, engine, res.headers["Content-Location"])
    assert second["request"] == f"{BASE}/$export"
    got = ids(download(client, second))
    assert got["Observation"] == {"glu-bs-1"}
    # The new record and the master the patient index made for it.
    assert "qs-3" in got["Patient"]
    assert all(p == "qs-3" or p.startswith("mpi-") for p in got["Patient"])
    assert download(client, second)["Observation"][0]["valueQuantity"]["value"] == 9.9


def test_files_are_cut_by_count_and_size(
    client: TestClient, engine: sa.Engine, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = kick(client, "/fhir/$export", _type="Observation")
    manifest = finish(client, engine, url, limits=Limits(max_resources=2, batch=3))
    files = manifest["output"]
    assert all(f["count"] <= 2 for f in files)
    assert sum(f["count"] for f in files) == len(store_ids(engine)["Observation"])
    assert len(files) >= 3
    assert len({f["url"] for f in files}) == len(files)

    url = kick(client, "/fhir/$export", _type="Observation")
    manifest = finish(client, engine, url, limits=Limits(max_bytes=1, batch=2))
    assert all(f["count"] == 1 for f in manifest["output"])
    # Downloads come from the store in slices; the bytes are the file's, whatever the slice.
    monkeypatch.setattr(export_http, "_SLICE", 37)
    whole = ids(download(client, manifest))
    assert whole["Observation"] == store_ids(engine)["Observation"]


# --- scope -----------------------------------------------------------------------------------


def test_patient_export_is_the_patient_compartment(
    client: TestClient, engine: sa.Engine, seeded: Any
) -> None:
    url = kick(client, "/fhir/Patient/$export")
    manifest = finish(client, engine, url)
    assert manifest["request"] == f"{BASE}/Patient/$export"
    got = ids(download(client, manifest))
    assert got["Patient"] == store_ids(engine)["Patient"]  # member records and masters
    assert got["Observation"] == {"glu-qs-1", "glu2-qs-1", "glu-qs-2", "glu-bs-1", "glu-hosp-1"}
    assert got["Encounter"] == {"stay-hosp-1"}
    assert got["Condition"] == {"dx-bs-1"}
    assert not {"Organization", "Group", "NamingSystem"} & set(got)


def test_group_export_of_a_centres_residents(
    client: TestClient, engine: sa.Engine, seeded: Any
) -> None:
    group = client.get("/fhir/Group/residents-QSWSY").json()
    assert group["actual"] is False
    assert group["characteristic"][0]["valueReference"] == {"reference": "Organization/QSWSY"}
    assert client.get("/fhir/Group/residents-CDSQ").status_code == 200
    assert client.get("/fhir/Group/residents-XRMYY").status_code == 404  # not a primary-care centre

    url = kick(client, "/fhir/Group/residents-QSWSY/$export")
    manifest = finish(client, engine, url)
    got = ids(download(client, manifest))
    # GP-registered residents plus the hospital record whose feedback went to QSWSY; the
    # masters (which copy generalPractitioner) are not residents of their own accord.
    assert got == {
        "Patient": {"qs-1", "qs-2", "hosp-1"},
        "Observation": {"glu-qs-1", "glu2-qs-1", "glu-qs-2", "glu-hosp-1"},
        "Encounter": {"stay-hosp-1"},
    }
    url = kick(client, "/fhir/Group/residents-BSWSY/$export", _type="Condition,Patient")
    got = ids(download(client, finish(client, engine, url)))
    assert got == {"Patient": {"bs-1"}, "Condition": {"dx-bs-1"}}


def test_group_export_of_an_actual_group(
    client: TestClient, engine: sa.Engine, seeded: Any
) -> None:
    master = seeded["masters"]["qs-2"]
    put(client, {"resourceType": "Group", "id": "followup", "type": "person", "actual": True,
                 "member": [{"entity": {"reference": "Patient/bs-1"}},
                            {"entity": {"reference": "Patient/qs-1"}, "inactive": True},
                            {"entity": {"reference": master}},
                            {"entity": {"reference": "Patient/never-was"}}]})  # fmt: skip
    url = kick(client, "/fhir/Group/followup/$export")
    got = ids(download(client, finish(client, engine, url)))
    assert got == {
        "Patient": {"bs-1", master.split("/")[1]},  # a master counts when listed
        "Observation": {"glu-bs-1"},
        "Condition": {"dx-bs-1"},
    }


# --- bad requests ----------------------------------------------------------------------------


def _outcome(res: Any, status: int) -> dict[str, Any]:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith(FHIR)
    body: dict[str, Any] = res.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def test_bad_kick_offs_are_400_operation_outcomes(client: TestClient, seeded: Any) -> None:
    missing = _outcome(client.get("/fhir/$export"), 400)
    assert "respond-async" in missing["issue"][0]["diagnostics"]
    for params in (
        {"_outputFormat": "application/fhir+json"},
        {"_outputFormat": "text/csv"},
        {"_type": "Observation,Unicorn"},
        {"_since": "last tuesday"},
        {"_typeFilter": "Observation?code=2345-7"},
        {"_elements": "id"},
    ):
        _outcome(client.get("/fhir/$export", params=params, headers=ASYNC), 400)
    # Organization is served, but not in the Patient compartment.
    _outcome(client.get("/fhir/Patient/$export?_type=Organization", headers=ASYNC), 400)
    residents = "/fhir/Group/residents-QSWSY/$export"
    _outcome(client.get(f"{residents}?_type=NamingSystem", headers=ASYNC), 400)
    _outcome(client.get("/fhir/Group/nobody/$export", headers=ASYNC), 404)
    put(client, {"resourceType": "Group", "id": "vague", "type": "person", "actual": False})
    _outcome(client.get("/fhir/Group/vague/$export", headers=ASYNC), 400)
    bad_body = client.post("/fhir/$export", content=b'{"resourceType": "Patient"}',
                           headers={"Content-Type": FHIR, **ASYNC})  # fmt: skip
    _outcome(bad_body, 400)
    # An unencoded '+' arrives as a space and is still understood; lenient handling skips
    # what is not supported, with a warning.
    assert client.get("/fhir/$export?_outputFormat=application/fhir+ndjson",
                      headers=ASYNC).status_code == 202  # fmt: skip
    lenient = client.get("/fhir/$export?_typeFilter=x",
                         headers={"Prefer": "respond-async, handling=lenient"})  # fmt: skip
    assert lenient.status_code == 202
    assert any(i["severity"] == "warning" for i in lenient.json()["issue"])
    _outcome(client.get("/fhir/$export-status/no-such-job"), 404)
    _outcome(client.delete("/fhir/$export-status/no-such-job"), 404)
    _outcome(client.get("/fhir/$export-file/no-such-job/1"), 404)


# --- cancel, failure -------------------------------------------------------------------------


def _job_rows(engine: sa.Engine, job_id: str) -> tuple[Any, int]:
    with engine.connect() as conn:
        job = conn.execute(sa.select(export_jobs).where(export_jobs.c.id == job_id)).first()
        files = conn.execute(
            sa.select(sa.func.count()).select_from(export_files)
            .where(export_files.c.job_id == job_id)
        ).scalar_one()  # fmt: skip
    return job, int(files)


def test_cancel_before_during_and_after(
    client: TestClient, engine: sa.Engine, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before it runs.
    url = kick(client, "/fhir/$export", _type="Patient")
    assert _outcome(client.delete(url), 202)["issue"][0]["severity"] == "information"
    _outcome(client.get(url), 404)
    _outcome(client.delete(url), 404)
    assert run_pending(engine) == 0

    # After it completed: the files go too.
    url = kick(client, "/fhir/$export", _type="Patient")
    file_url = finish(client, engine, url)["output"][0]["url"]
    assert client.get(file_url).status_code == 200
    assert client.delete(url).status_code == 202
    _outcome(client.get(file_url), 404)
    assert _job_rows(engine, job_id_of(url)) == (None, 0)

    # While it runs: the runner sees it at the next chunk and writes nothing more.
    url = kick(client, "/fhir/$export", _type="Observation")
    written: list[int] = []
    real_add = jobs.add_file

    def add_then_cancel(*args: Any, **kwargs: Any) -> None:
        real_add(*args, **kwargs)
        written.append(1)

    original = JobWriter._flush

    def flush(self: JobWriter, sink: Any) -> None:
        original(self, sink)
        if len(written) == 1 and sink.seq == 1:
            assert client.delete(url).status_code == 202

    monkeypatch.setattr(jobs, "add_file", add_then_cancel)
    monkeypatch.setattr(JobWriter, "_flush", flush)
    assert run_pending(engine, limits=Limits(max_resources=1)) == 1
    assert len(written) == 1
    _outcome(client.get(url), 404)
    assert _job_rows(engine, job_id_of(url)) == (None, 0)


def test_a_failing_export_ends_failed_with_500(
    client: TestClient, engine: sa.Engine, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = kick(client, "/fhir/$export", _type="Patient,Observation")

    def explode(self: JobWriter, sink: Any, res_id: str, content: str | None) -> None:
        if sink.res_type == "Observation":
            raise RuntimeError("王秀英 blood sugar 9.9")

    monkeypatch.setattr(JobWriter, "_add", explode)
    started = time.monotonic()
    assert run_pending(engine, limits=Limits(max_resources=1)) == 1
    assert time.monotonic() - started < 30
    body = _outcome(client.get(url), 500)
    assert body["issue"][0]["code"] == "exception"
    assert "RuntimeError" in body["issue"][0]["diagnostics"]
    assert "王秀英" not in orjson.dumps(body).decode()  # nothing clinical leaks
    job, files = _job_rows(engine, job_id_of(url))
    assert (job.status, job.lease_owner, files) == ("failed", None, 0)
    assert run_pending(engine) == 0  # failed is final


def test_an_unreadable_resource_goes_to_the_error_file(
    client: TestClient, engine: sa.Engine, seeded: Any
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE resources SET content = '{\"resourceType\": \"Observ' "
            "WHERE res_type = 'Observation' AND res_id = 'glu-qs-2'"
        ))  # fmt: skip
    url = kick(client, "/fhir/$export", _type="Observation")
    manifest = finish(client, engine, url)
    got = ids(download(client, manifest))
    assert got["Observation"] == store_ids(engine)["Observation"] - {"glu-qs-2"}
    [error] = manifest["error"]
    assert error["type"] == "OperationOutcome"
    lines = client.get(error["url"]).content.decode().splitlines()
    assert len(lines) == 1
    outcome = orjson.loads(lines[0])
    get_fhir_model_class("OperationOutcome").model_validate(outcome)
    assert "Observation/glu-qs-2" in outcome["issue"][0]["diagnostics"]


# --- runners ---------------------------------------------------------------------------------


def _expire_lease(engine: sa.Engine, job_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(export_jobs).where(export_jobs.c.id == job_id)
            .values(lease_until=now_micros() - 1)
        )  # fmt: skip


def _wait_for(client: TestClient, url: str, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        res = client.get(url)
        if res.status_code != 202:
            return res
        time.sleep(0.05)
    raise AssertionError("the export did not finish")


def test_a_dead_runners_job_is_restarted_by_a_new_runner(
    client: TestClient, engine: sa.Engine, seeded: Any
) -> None:
    url = kick(client, "/fhir/$export", _type="Patient,Observation")
    dead = jobs.claim(engine, "host-a:1:dead", LEASE)
    assert dead is not None and dead.id == job_id_of(url)
    with engine.begin() as conn:  # it got as far as one file before the process died
        assert jobs.fence(conn, dead.id, "host-a:1:dead", LEASE, "Patient: 1 resources")
        jobs.add_file(conn, dead.id, "Patient", 1, 1, b'{"resourceType":"Patient","id":"half"}\n')
    polled = client.get(url)
    assert polled.status_code == 202 and polled.headers["X-Progress"].startswith("Patient")
    assert run_pending(engine) == 0  # its lease still runs: nobody else touches it

    _expire_lease(engine, dead.id)
    runner = ExportRunner(engine, poll_seconds=0.1)  # the next start of the hub
    runner.start()
    try:
        res = _wait_for(client, url)
    finally:
        runner.stop()
    assert res.status_code == 200
    got = ids(download(client, res.json()))
    expected = store_ids(engine)
    assert got == {"Patient": expected["Patient"], "Observation": expected["Observation"]}
    job, _ = _job_rows(engine, dead.id)
    assert job.attempts == 2


def test_a_job_whose_runner_keeps_dying_fails_cleanly(
    client: TestClient, engine: sa.Engine, seeded: Any
) -> None:
    url = kick(client, "/fhir/$export", _type="Patient")
    for attempt in range(MAX_ATTEMPTS):
        assert jobs.claim(engine, f"host:{attempt}:dies", LEASE) is not None
        _expire_lease(engine, job_id_of(url))
    assert run_pending(engine) == 0
    body = _outcome(client.get(url), 500)
    assert f"interrupted {MAX_ATTEMPTS} times" in body["issue"][0]["diagnostics"]


def test_an_orderly_stop_hands_the_job_back(
    client: TestClient, engine: sa.Engine, seeded: Any
) -> None:
    url = kick(client, "/fhir/Group/residents-QSWSY/$export")
    job = jobs.claim(engine, "host:2:stopping", LEASE)
    assert job is not None
    stop = threading.Event()
    stop.set()
    assert run_job(engine, job, "host:2:stopping", Limits(), stop) == "released"
    row, files = _job_rows(engine, job.id)
    assert (row.status, row.attempts, files) == ("in-progress", 0, 0)
    assert run_pending(engine) == 1
    assert ids(download(client, manifest_of(client, url)))["Patient"] == {"qs-1", "qs-2", "hosp-1"}


def test_a_runner_that_lost_its_lease_writes_nothing(
    client: TestClient, engine: sa.Engine, seeded: Any
) -> None:
    url = kick(client, "/fhir/$export", _type="Observation")
    slow = jobs.claim(engine, "host-a:1:slow", LEASE)
    assert slow is not None
    _expire_lease(engine, slow.id)
    quick = jobs.claim(engine, "host-b:1:quick", LEASE)
    assert quick is not None and quick.id == slow.id
    assert run_job(engine, slow, "host-a:1:slow", Limits(max_resources=1)) == "lost"
    assert _job_rows(engine, slow.id)[1] == 0
    assert run_job(engine, quick, "host-b:1:quick", Limits(max_resources=1)) == "completed"
    got = ids(download(client, manifest_of(client, url)))
    assert got["Observation"] == store_ids(engine)["Observation"]


def test_two_runners_never_run_one_job(
    client: TestClient, engine: sa.Engine, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Head to head on one job, several times: exactly one claim wins.
    for _ in range(5):
        kick(client, "/fhir/$export", _type="Organization")
        barrier = threading.Barrier(2)
        won: list[Any] = []

        def race(owner: str, barrier: threading.Barrier = barrier, won: list[Any] = won) -> None:
            barrier.wait()
            won.append(jobs.claim(engine, owner, LEASE))

        threads = [threading.Thread(target=race, args=(f"host-{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(j is not None for j in won) == 1
        winner = next(j for j in won if j is not None)
        assert run_job(engine, winner, winner.lease_owner, Limits()) == "completed"

    # Four runners over eight jobs: each job run once, each manifest right.
    urls = [kick(client, "/fhir/$export", _type="Organization,Patient") for _ in range(8)]
    claims: list[str] = []
    real_claim = jobs.claim

    def counting_claim(*args: Any, **kwargs: Any) -> Any:
        job = real_claim(*args, **kwargs)
        if job is not None:
            claims.append(job.id)
        return job

    monkeypatch.setattr(jobs, "claim", counting_claim)
    runners = [
        threading.Thread(target=run_pending, args=(engine,), kwargs={"owner": f"runner-{i}"})
        for i in range(4)
    ]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    assert sorted(claims) == sorted(job_id_of(u) for u in urls)
    expected = store_ids(engine)
    for url in urls:
        got = ids(download(client, manifest_of(client, url)))
        assert got == {"Organization": expected["Organization"], "Patient": expected["Patient"]}


def test_a_kick_off_wakes_the_runner_of_its_process(
    client: TestClient, engine: sa.Engine, seeded: Any
) -> None:
    runner = ExportRunner(engine, poll_seconds=600)  # would not poll again within the test
    runner.start()
    try:
        time.sleep(0.2)  # its first (empty) pass is over; it now waits to be woken
        url = kick(client, "/fhir/$export", _type="Condition")
        res = _wait_for(client, url, seconds=10)
    finally:
        runner.stop()
    assert res.status_code == 200
    assert ids(download(client, res.json())) == {"Condition": {"dx-bs-1"}}


def test_capability_statement_lists_the_export_operations(client: TestClient) -> None:
    rest = client.get("/fhir/metadata").json()["rest"][0]
    bulk = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
    system = {o["name"]: o["definition"] for o in rest["operation"]}
    assert system["export"] == f"{bulk}/export"
    by_type = {r["type"]: r for r in rest["resource"]}
    for res_type, definition in (("Patient", "patient-export"), ("Group", "group-export")):
        ops = {o["name"]: o["definition"] for o in by_type[res_type]["operation"]}
        assert ops["export"] == f"{bulk}/{definition}"
