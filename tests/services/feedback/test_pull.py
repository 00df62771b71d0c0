"""Pulling the month's feedback over HTTP: search, $document, $inpatient-feedback, print, admin."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from fhirpy import SyncFHIRClient

from tests.services.feedback.conftest import MONTH

LOINC_DS = "http://loinc.org|18842-5"


def _run(client: TestClient, **body: Any) -> dict[str, Any]:
    res = client.post("/admin/feedback/runs", json={"month": MONTH, **body})
    assert res.status_code == 200, res.text
    return dict(res.json())


def test_admin_run_then_search_and_document(client: TestClient, month: Any) -> None:
    summary = _run(client)
    assert summary["new"] == 7
    found = client.get(
        f"/fhir/Composition?type={LOINC_DS}&date={MONTH}&_count=3&_total=accurate"
    ).json()
    assert found["total"] == 7 and len(found["entry"]) == 3
    assert any(link["relation"] == "next" for link in found["link"])
    # The month's boundary, searched the same way: 周午夜 (23:59:59) is in, 吴凌晨 is not.
    names = set()
    url = f"/fhir/Composition?type={LOINC_DS}&date={MONTH}&_count=3"
    while url:
        page = client.get(url.replace("http://testserver", "")).json()
        names |= {e["resource"]["subject"]["display"] for e in page.get("entry", [])}
        url = next((x["url"] for x in page["link"] if x["relation"] == "next"), "")
    assert "周午夜" in names and "吴凌晨" not in names
    mine = client.get(
        f"/fhir/Composition?type={LOINC_DS}&date={MONTH}&addressee=Organization/QSWSY&_total=accurate"
    ).json()
    assert mine["total"] == 2
    comp_id = mine["entry"][0]["resource"]["id"]
    doc = client.get(f"/fhir/Composition/{comp_id}/$document")
    assert doc.status_code == 200
    bundle = doc.json()
    assert bundle["type"] == "document" and bundle["entry"][0]["resource"]["id"] == comp_id
    assert bundle["entry"][0]["resource"]["meta"]["versionId"] == "1"
    assert client.get("/fhir/Composition/nope/$document").status_code == 404


def test_inpatient_feedback_pages_through_a_centres_month(client: TestClient, month: Any) -> None:
    _run(client)
    first = client.get(
        f"/fhir/Organization/BSWSY/$inpatient-feedback?month={MONTH}&_count=2"
    ).json()
    assert first["type"] == "searchset" and first["total"] == 3
    matches = [e for e in first["entry"] if e["search"]["mode"] == "match"]
    assert len(matches) == 2 and all(e["resource"]["type"] == "document" for e in matches)
    package = [e["resource"] for e in first["entry"] if e["search"]["mode"] == "include"]
    assert package[0]["resourceType"] == "List"
    nxt = next(x["url"] for x in first["link"] if x["relation"] == "next")
    second = client.get(nxt.replace("http://testserver", "")).json()
    ids = {e["resource"]["id"] for e in matches} | {
        e["resource"]["id"] for e in second["entry"] if e["search"]["mode"] == "match"
    }
    assert len(ids) == 3
    assert not any(x["relation"] == "next" for x in second["link"])
    bad = client.get("/fhir/Organization/BSWSY/$inpatient-feedback")
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    unknown = client.get(f"/fhir/Organization/NOPE/$inpatient-feedback?month={MONTH}")
    assert unknown.status_code == 404


def test_a_fhir_client_library_reads_the_documents(
    live_server: str, admin_headers: dict[str, str], month: Any
) -> None:
    import httpx

    assert (
        httpx.post(
            f"{live_server}/admin/feedback/runs", json={"month": MONTH}, headers=admin_headers
        ).status_code
        == 200
    )
    fhir = SyncFHIRClient(f"{live_server}/fhir", authorization=admin_headers["Authorization"])
    comps = (
        fhir.resources("Composition")
        .search(type=LOINC_DS, date=MONTH, addressee="Organization/HXWSY")
        .fetch_all()
    )
    assert len(comps) == 1 and comps[0]["status"] == "final"
    assert "王大爷" in comps[0]["subject"]["display"]


def test_printable_view(client: TestClient, month: Any) -> None:
    _run(client)
    comp = client.get(f"/fhir/Composition?type={LOINC_DS}&addressee=Organization/HXWSY").json()
    comp_id = comp["entry"][0]["resource"]["id"]
    page = client.get(f"/feedback/Composition/{comp_id}/print")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="zh-CN">' in html and "@page { size: A4" in html
    assert "王大爷" in html and "死亡" in html and "河西镇卫生院" in html
    assert "<script" not in html
    assert client.get("/feedback/Composition/nope/print").status_code == 404


def test_admin_refuses_bad_input_and_lists(client: TestClient, month: Any) -> None:
    for body in ({"month": "2026-13"}, {}, {"month": MONTH, "org": "NOPE"}):
        res = client.post("/admin/feedback/runs", json=body)
        assert res.status_code == 400 and res.json()["resourceType"] == "OperationOutcome"
    _run(client)
    runs = client.get("/admin/feedback/runs").json()
    assert runs[0]["status"] == "completed" and runs[0]["summary"]["new"] == 7
    open_stays = client.get(f"/admin/feedback/unaddressed?month={MONTH}").json()
    assert [s["name"] for s in open_stays] == ["赵流浪"]
