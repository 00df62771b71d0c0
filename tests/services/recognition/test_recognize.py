"""$recognize at every boundary, through the FHIR API on the real store."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import orjson
from fastapi.testclient import TestClient

from hub.services.recognition.catalogue import load_catalogue
from tests.services.identity.test_patient_index import LI, mrn, patient, post

FHIR = {"Content-Type": "application/fhir+json"}
LOINC = "http://loinc.org"
CBC, LIPIDS = "58410-2", "57698-3"
CBC_DAYS = load_catalogue().item(CBC).validity_days  # type: ignore[union-attr]


def report(
    client: TestClient,
    subject: str,
    code: str,
    when: str,
    *,
    lab: str = "XJYZX",
    status: str = "final",
) -> str:
    body = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": when,
        "performer": [{"reference": f"Organization/{lab}"}],
    }
    return str(post(client, body)["id"])


def ask(client: TestClient, *codes: dict[str, Any], at: str, **who: Any) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [{"name": "code", "valueCoding": c} for c in codes]
    params.append({"name": "at", "valueDateTime": at})
    if "patient" in who:
        params.append({"name": "patient", "valueReference": {"reference": who["patient"]}})
    if "identifier" in who:
        params.append({"name": "patientIdentifier", "valueIdentifier": who["identifier"]})
    res = client.post(
        "/fhir/ServiceRequest/$recognize",
        content=orjson.dumps({"resourceType": "Parameters", "parameter": params}),
        headers=FHIR,
    )
    assert res.status_code == 200, res.text
    return [_parts(p) for p in res.json()["parameter"] if p["name"] == "item"]


def _parts(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"report": []}
    for part in item["part"]:
        value = next(v for k, v in part.items() if k.startswith("value"))
        if part["name"] == "report":
            out["report"].append(value["reference"].split("/")[1])
        elif part["name"] == "reason":
            out["reason"] = value["code"]
        else:
            out[part["name"]] = value
    return out


def loinc(code: str) -> dict[str, str]:
    return {"system": LOINC, "code": code}


def person(client: TestClient) -> tuple[str, str]:
    zy = post(client, patient("XRMYY", "ZY0099123", "李娜", "1975-10-02", "female", resident=LI))
    qs = post(client, patient("QSWSY", "QS-004512", "李娜", "1975-10-02", "female", resident=LI))
    return zy["id"], qs["id"]


def test_a_final_certified_result_is_recognised_across_the_persons_records(
    client: TestClient,
) -> None:
    zy, qs = person(client)
    older = report(client, zy, CBC, "2026-10-18T09:00:00+08:00")
    newer = report(client, zy, CBC, "2026-10-20T09:00:00+08:00", lab="XRMYY")
    # The township asks about its own record: the lead hospital's results count too.
    [item] = ask(client, loinc(CBC), at="2026-10-21T10:00:00+08:00", patient=f"Patient/{qs}")
    assert item["recognisable"] is True and item["reason"] == "recognised"
    assert item["report"] == [newer, older]  # newest first
    assert item["performer"]["reference"] == "Organization/XRMYY"
    expected = date(2026, 10, 20) + timedelta(days=CBC_DAYS)
    assert item["validUntil"] == f"{expected.isoformat()}T23:59:59.999+08:00"
    by_number = ask(
        client, loinc(CBC), at="2026-10-21T10:00:00+08:00",
        identifier={"system": mrn("QSWSY"), "value": "QS-004512"},
    )  # fmt: skip
    assert by_number[0]["report"] == [newer, older]


def test_validity_ends_with_the_last_day_in_the_community_time_zone(client: TestClient) -> None:
    zy, _ = person(client)
    report(client, zy, CBC, "2026-10-01T23:30:00+08:00")  # 15:30 UTC: still the 1st in +08:00
    last = date(2026, 10, 1) + timedelta(days=CBC_DAYS)
    [inside] = ask(client, loinc(CBC), at=f"{last}T23:59:59+08:00", patient=f"Patient/{zy}")
    assert inside["recognisable"] is True
    after = last + timedelta(days=1)
    [outside] = ask(client, loinc(CBC), at=f"{after}T00:00:00+08:00", patient=f"Patient/{zy}")
    assert outside["recognisable"] is False and outside["reason"] == "expired"


def test_certification_is_judged_on_the_results_day(client: TestClient) -> None:
    zy, _ = person(client)
    report(client, zy, CBC, "2025-12-31T09:00:00+08:00", lab="QSWSY")  # before certification
    [before] = ask(client, loinc(CBC), at="2026-01-02T09:00:00+08:00", patient=f"Patient/{zy}")
    assert before["reason"] == "not-certified"
    # Certified on the result's day, the certification ended before the order: still good.
    late = report(client, zy, CBC, "2027-12-31T09:00:00+08:00")
    [after] = ask(client, loinc(CBC), at="2028-01-02T09:00:00+08:00", patient=f"Patient/{zy}")
    assert after["recognisable"] is True and after["report"] == [late]
    # A township lab is certified for the blood count only.
    report(client, zy, LIPIDS, "2026-10-20T09:00:00+08:00", lab="QSWSY")
    [lipids] = ask(client, loinc(LIPIDS), at="2026-10-21T09:00:00+08:00", patient=f"Patient/{zy}")
    assert lipids["reason"] == "not-certified"


def test_corrected_preliminary_and_cancelled_reports_are_not_recognised(
    client: TestClient,
) -> None:
    at = "2026-10-21T09:00:00+08:00"
    for status, reason in (("corrected", "corrected"), ("preliminary", "not-final"),
                           ("cancelled", "cancelled")):  # fmt: skip
        record = post(client, patient("XRMYY", f"S-{status}", "钱多多", "1990-01-01", "male"))
        report(client, record["id"], CBC, "2026-10-20T09:00:00+08:00", status=status)
        [item] = ask(client, loinc(CBC), at=at, patient=f"Patient/{record['id']}")
        assert (item["recognisable"], item["reason"]) == (False, reason)


def test_local_codes_unknown_items_and_no_result(client: TestClient) -> None:
    zy, _ = person(client)
    cbc = report(client, zy, CBC, "2026-10-20T09:00:00+08:00")
    local = {"system": "https://ygt.example.org/fhir/CodeSystem/local/QSWSY", "code": "XCG"}
    unknown = {"system": "https://ygt.example.org/fhir/CodeSystem/local/QSWSY", "code": "NOPE"}
    mapped, missing, none = ask(
        client, local, unknown, loinc("4548-4"), at="2026-10-21T09:00:00+08:00",
        patient=f"Patient/{zy}",
    )  # fmt: skip
    assert mapped["recognisable"] is True and mapped["report"] == [cbc]
    assert missing["reason"] == "not-in-catalogue"
    assert none["reason"] == "no-result"


def test_a_result_under_a_probably_same_record_is_not_certain(client: TestClient) -> None:
    home = {"phone": "13600004444", "address": "浙江省湖州市德清县洛舍镇东衡村5号"}
    a = post(client, patient("XRMYY", "P1", "吴昊", "1970-07-07", "male", **home))
    b = post(client, patient("QSWSY", "P2", "吴昊", "1970-07-07", "male", **home))
    report(client, a["id"], CBC, "2026-10-20T09:00:00+08:00")
    [item] = ask(client, loinc(CBC), at="2026-10-21T09:00:00+08:00", patient=f"Patient/{b['id']}")
    assert item["recognisable"] is False and item["reason"] == "identity-uncertain"
    [own] = ask(client, loinc(CBC), at="2026-10-21T09:00:00+08:00", patient=f"Patient/{a['id']}")
    assert own["recognisable"] is True


def test_bad_requests_get_an_operation_outcome(client: TestClient) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "code", "valueCoding": loinc(CBC)}],
    }
    res = client.post("/fhir/ServiceRequest/$recognize", content=orjson.dumps(body), headers=FHIR)
    assert res.status_code == 400 and res.json()["resourceType"] == "OperationOutcome"
    res = client.post("/fhir/ServiceRequest/$recognize", content=b"{}", headers=FHIR)
    assert res.status_code == 400


def _marked(client: TestClient, report_id: str) -> bool:
    tags = client.get(f"/fhir/DiagnosticReport/{report_id}").json().get("meta", {}).get("tag", [])
    return any(t.get("code") == "HR" for t in tags)


def test_recognisable_reports_carry_the_hr_mark(client: TestClient, engine: Any) -> None:
    from hub.services.recognition.marking import remark

    zy, _ = person(client)
    good = report(client, zy, CBC, "2026-10-20T09:00:00+08:00")
    early = report(client, zy, CBC, "2026-10-20T09:00:00+08:00", status="preliminary")
    township = report(client, zy, LIPIDS, "2026-10-20T09:00:00+08:00", lab="QSWSY")
    assert _marked(client, good) and not _marked(client, early) and not _marked(client, township)
    found = client.get("/fhir/DiagnosticReport", params={"_tag": "HR"}).json()
    assert {e["resource"]["id"] for e in found["entry"]} == {good}
    # The preliminary report turns final: marked with the new version.
    final = client.get(f"/fhir/DiagnosticReport/{early}").json()
    final["status"] = "final"
    res = client.put(f"/fhir/DiagnosticReport/{early}", content=orjson.dumps(final), headers=FHIR)
    assert res.status_code == 200 and _marked(client, early)
    # A client cannot mark a report the rules do not: the hub judges, not the sender.
    forged = client.get(f"/fhir/DiagnosticReport/{township}").json()
    forged["meta"]["tag"] = [{"system": "https://ygt.example.org/fhir/CodeSystem/recognition-mark",
                              "code": "HR"}]  # fmt: skip
    client.put(f"/fhir/DiagnosticReport/{township}", content=orjson.dumps(forged), headers=FHIR)
    assert not _marked(client, township)
    assert remark(engine) == 0  # nothing stored disagrees with the rules
    from hub.services.recognition.marking import remark_if_changed

    assert remark_if_changed(engine) == 0  # first start: judged once, digest kept
    assert remark_if_changed(engine) is None  # unchanged certifications: not again


def test_the_operation_and_the_catalogue_are_published(client: TestClient, engine: Any) -> None:
    from adapters.feeds.config import demo_community
    from hub.feeds.bootstrap import load_community_resources

    load_community_resources(engine, demo_community())
    definition = client.get("/fhir/OperationDefinition/ServiceRequest-recognize").json()
    assert definition["code"] == "recognize" and definition["resource"] == ["ServiceRequest"]
    catalogue = client.get("/fhir/CodeSystem/recognition-catalogue").json()
    assert len(catalogue["concept"]) >= 40
    reasons = client.get("/fhir/CodeSystem/recognition-reason").json()
    assert "expired" in {c["code"] for c in reasons["concept"]}
    operations = client.get("/fhir/metadata").json()["rest"][0]["resource"]
    [request] = [r for r in operations if r["type"] == "ServiceRequest"]
    assert request["operation"][0]["definition"].endswith("ServiceRequest-recognize")


def _check(client: TestClient, subject: str, orderer: str, at: str) -> dict[str, Any]:
    params = [
        {"name": "patient", "valueReference": {"reference": f"Patient/{subject}"}},
        {"name": "code", "valueCoding": loinc(CBC)},
        {"name": "orderer", "valueReference": {"reference": f"Organization/{orderer}"}},
        {"name": "at", "valueDateTime": at},
    ]
    res = client.post(
        "/fhir/ServiceRequest/$recognize",
        content=orjson.dumps({"resourceType": "Parameters", "parameter": params}),
        headers=FHIR,
    )
    assert res.status_code == 200, res.text
    return _parts(next(p for p in res.json()["parameter"] if p["name"] == "item"))


def _decide(client: TestClient, issue_ref: str, decision: str, reason: str | None = None) -> None:
    issue = client.get(f"/fhir/{issue_ref}").json()
    assert issue["status"] == "preliminary" and issue["implicated"]
    codings = [{"system": "https://ygt.example.org/fhir/CodeSystem/recognition-decision",
                "code": decision}]  # fmt: skip
    if reason:
        codings.append({"system": "https://ygt.example.org/fhir/CodeSystem/repeat-reason",
                        "code": reason})  # fmt: skip
    issue["status"] = "final"
    issue["mitigation"] = [{"action": {"coding": codings}, "date": "2026-10-21T10:05:00+08:00"}]
    res = client.put(f"/fhir/{issue_ref}", content=orjson.dumps(issue), headers=FHIR)
    assert res.status_code == 200, res.text


def _order(client: TestClient, subject: str, orderer: str, when: str, **more: Any) -> None:
    post(client, {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"coding": [loinc(CBC)]}, "subject": {"reference": f"Patient/{subject}"},
        "requester": {"reference": f"Organization/{orderer}"}, "authoredOn": when, **more,
    })  # fmt: skip


def _report_for(client: TestClient, month: str, **params: str) -> dict[str, Any]:
    res = client.get("/fhir/$recognition-report", params={"month": month, **params})
    assert res.status_code == 200, res.text
    out: dict[str, Any] = {}
    for group in res.json()["parameter"][1:]:
        parts = {p["name"]: p for p in group["part"]}
        key = parts["member"]["valueString"]
        out[key] = {n: next(v for k, v in p.items() if k.startswith("value"))
                    for n, p in parts.items() if n not in ("member", "repeated")}  # fmt: skip
        out[key]["repeated"] = {
            r["part"][0]["valueCoding"]["code"]: r["part"][1]["valueInteger"]
            for r in group["part"] if r["name"] == "repeated"
        }  # fmt: skip
    return out


def test_decisions_and_orders_after_the_fact_make_the_monthly_figures(client: TestClient) -> None:
    zy, qs = person(client)
    report(client, zy, CBC, "2026-10-20T09:00:00+08:00")
    price = float(load_catalogue().item(CBC).price_yuan)  # type: ignore[union-attr]
    accepted = _check(client, qs, "QSWSY", "2026-10-21T10:00:00+08:00")
    _decide(client, accepted["issue"]["reference"], "accepted")
    repeated = _check(client, qs, "QSWSY", "2026-10-21T11:00:00+08:00")
    _decide(client, repeated["issue"]["reference"], "reordered", "condition-changed")
    # Asked, then ordered anyway through the FHIR API with a reason: the same check, decided.
    _check(client, zy, "XRMYY", "2026-10-22T09:00:00+08:00")
    _order(client, zy, "XRMYY", "2026-10-22T09:05:00+08:00",
           reasonCode=[{"coding": [{"system": "https://ygt.example.org/fhir/CodeSystem/repeat-reason",
                                    "code": "emergency"}]}])  # fmt: skip
    # Never asked: an order from a township HIS is checked after the fact.
    _order(client, qs, "HXWSY", "2026-10-23T08:00:00+08:00")
    other = post(client, patient("HXWSY", "H1", "冯宝", "1950-02-02", "male"))
    _order(client, other["id"], "HXWSY", "2026-10-23T08:10:00+08:00")  # nothing to recognise

    figures = _report_for(client, "2026-10")
    assert figures["QSWSY"]["checked"] == 2 and figures["QSWSY"]["accepted"] == 1
    assert figures["QSWSY"]["savedYuan"] == price
    assert figures["QSWSY"]["repeated"] == {"condition-changed": 1}
    assert figures["XRMYY"]["checked"] == 1 and figures["XRMYY"]["repeated"] == {"emergency": 1}
    assert figures["HXWSY"]["checked"] == 2 and figures["HXWSY"]["recognisable"] == 1
    assert figures["HXWSY"]["repeated"] == {"unspecified": 1}
    assert figures["*"]["checked"] == 5 and figures["*"]["accepted"] == 1
    assert figures["*"]["reordered"] == 3 and figures["*"]["recognitionRate"] == 0.25
    assert list(_report_for(client, "2026-10", member="QSWSY")) == ["QSWSY", "*"]
    assert _report_for(client, "2026-09") == {"*": {**figures["*"], **{
        "checked": 0, "recognisable": 0, "accepted": 0, "reordered": 0, "pending": 0,
        "recognitionRate": 0, "savedYuan": 0, "repeated": {}}}}  # fmt: skip
    assert client.get("/fhir/$recognition-report").status_code == 400


def test_cds_hooks_cards_suggest_dropping_a_repeat(client: TestClient) -> None:
    zy, qs = person(client)
    newest = report(client, zy, CBC, datetime_now_minus(days=1))
    services = client.get("/cds-services").json()["services"]
    assert {s["hook"] for s in services} == {"order-select", "order-sign"}
    drafts = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "ServiceRequest", "id": "draft-1", "status": "draft",
                      "intent": "order", "code": {"coding": [loinc(CBC)]}}},
        {"resource": {"resourceType": "ServiceRequest", "id": "draft-2", "status": "draft",
                      "intent": "order", "code": {"coding": [loinc(LIPIDS)]}}},
    ]}  # fmt: skip
    for service in ("recognition-order-select", "recognition-order-sign"):
        hook = "order-select" if service.endswith("select") else "order-sign"
        call = {"hook": hook, "hookInstance": "6f5c-1", "context": {
            "userId": "Practitioner/1", "patientId": qs, "draftOrders": drafts}}  # fmt: skip
        res = client.post(f"/cds-services/{service}", json=call)
        assert res.status_code == 200, res.text
        [card] = res.json()["cards"]  # lipids: nothing to recognise
        assert card["indicator"] == "warning" and "血常规" in card["summary"]
        [action] = card["suggestions"][0]["actions"]
        assert action == {"type": "delete", "description": "drop the order",
                          "resourceId": ["ServiceRequest/draft-1"]}  # fmt: skip
    # Each call is audited like a FHIR read: the cards tell of the patient's results.
    res = client.get("/fhir/AuditEvent", params={"patient": f"Patient/{qs}", "_count": "50"})
    events = [e["resource"] for e in res.json().get("entry", [])]
    hooks = [e for e in events if e["subtype"][-1]["code"].startswith("cds-hooks/")]
    assert sorted(e["subtype"][-1]["code"] for e in hooks) == [
        "cds-hooks/recognition-order-select", "cds-hooks/recognition-order-sign"]  # fmt: skip
    for event in hooks:
        named = {e["what"].get("reference") for e in event["entity"]}
        assert {f"Patient/{qs}", f"DiagnosticReport/{newest}"} <= named
        assert event["action"] == "E" and event["outcome"] == "0"
    bad = client.post("/cds-services/recognition-order-select", json={"context": {}})
    assert bad.status_code == 400
    assert client.post("/cds-services/nope", json={}).status_code == 404


def datetime_now_minus(days: int) -> str:
    from datetime import datetime, timezone

    moment = datetime.now(timezone(timedelta(hours=8))) - timedelta(days=days)
    return moment.isoformat(timespec="seconds")


def _remark_in_a_process(db_url: str) -> int | None:
    from hub.db import make_engine
    from hub.services.recognition.marking import remark_if_changed

    engine = make_engine(db_url, pool_size=1, max_overflow=1)
    try:
        return remark_if_changed(engine)
    finally:
        engine.dispose()


def test_processes_starting_together_remark_once(
    engine: Any, db_url: str, backend: str, clean_db: None
) -> None:
    """api, mllp and worker start at once: one re-judges, the others find the digest kept (they
    used to race on inserting it and the loser's start failed)."""
    import multiprocessing
    from concurrent.futures import ThreadPoolExecutor

    from hub.services.recognition.marking import remark_if_changed

    if backend == "postgresql":  # separate processes, as deployed
        with multiprocessing.get_context("spawn").Pool(3) as pool:
            results = pool.map(_remark_in_a_process, [db_url] * 3)
    else:  # the embedded hub is one process; its threads
        with ThreadPoolExecutor(3) as threads:
            results = list(threads.map(lambda _: remark_if_changed(engine), range(3)))
    assert sorted(results, key=lambda r: r is None) == [0, None, None]
