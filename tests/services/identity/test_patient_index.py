"""The patient index through the FHIR API: linking on every write, PIX, $match, community-wide
search, merges and links with their undoing, $everything (real store, PostgreSQL or SQLite)."""

from __future__ import annotations

import random
from typing import Any

import orjson
from fastapi.testclient import TestClient

from adapters.feeds.resident_id import check_character
from hub.services.identity.model import PATIENT_INDEX

FHIR = {"Content-Type": "application/fhir+json"}
RID = "https://ygt.example.org/fhir/sid/resident-id"
MASTER_TAG = f"{PATIENT_INDEX}|master"


def mrn(member: str) -> str:
    return f"https://ygt.example.org/fhir/sid/{member}/mrn"


def rid(first17: str) -> str:
    return first17 + check_character(first17)


TWIN_A, TWIN_B = rid("33052119800315001"), rid("33052119800315003")
LI = rid("33052119751002002")


def patient(
    member: str,
    number: str,
    name: str,
    birth: str,
    gender: str,
    *,
    resident: str | None = None,
    phone: str | None = None,
    address: str | None = None,
    more: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    idents = [{"system": mrn(member), "value": number}]
    if resident:
        idents.append({"system": RID, "value": resident})
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": idents + (more or []),
        "name": [{"text": name, "family": name[0], "given": [name[1:]]}],
        "gender": gender,
        "birthDate": birth,
    }
    if phone:
        res["telecom"] = [{"system": "phone", "value": phone}]
    if address:
        res["address"] = [{"text": address}]
    return res


def post(client: TestClient, resource: dict[str, Any], **headers: str) -> dict[str, Any]:
    res = client.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=FHIR | headers
    )
    assert res.status_code == 201, res.text
    return res.json()  # type: ignore[no-any-return]


def read(client: TestClient, ref: str) -> dict[str, Any]:
    res = client.get(f"/fhir/{ref}")
    assert res.status_code == 200, res.text
    return res.json()  # type: ignore[no-any-return]


def master_of(client: TestClient, record_id: str) -> str:
    record = read(client, f"Patient/{record_id}")
    [refer] = [link for link in record.get("link", []) if link["type"] == "refer"]
    return str(refer["other"]["reference"]).split("/")[1]


def operation(client: TestClient, name: str, *params: dict[str, Any]) -> dict[str, Any]:
    body = {"resourceType": "Parameters", "parameter": list(params)}
    res = client.post(f"/fhir/Patient/{name}", content=orjson.dumps(body), headers=FHIR)
    assert res.status_code == 200, res.text
    return res.json()  # type: ignore[no-any-return]


def ref_param(name: str, res_id: str) -> dict[str, Any]:
    return {"name": name, "valueReference": {"reference": f"Patient/{res_id}"}}


def report(client: TestClient, record_id: str, code: str) -> str:
    return str(
        post(
            client,
            {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": f"Patient/{record_id}"},
            },
        )["id"]
    )


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def test_records_sharing_a_resident_id_are_one_person(client: TestClient) -> None:
    zy = post(client, patient("XRMYY", "ZY0099123", "李娜", "1975-10-02", "female", resident=LI))
    qs = post(client, patient("QSWSY", "QS-004512", "李娜", "1975-10-02", "female", resident=LI))
    master = master_of(client, zy["id"])
    assert master == master_of(client, qs["id"]) and master.startswith("mpi-")
    person = read(client, f"Patient/{master}")
    assert {"system": PATIENT_INDEX, "code": "master"}.items() <= person["meta"]["tag"][0].items()
    assert {(link["other"]["reference"], link["type"]) for link in person["link"]} == {
        (f"Patient/{zy['id']}", "seealso"),
        (f"Patient/{qs['id']}", "seealso"),
    }
    assert {"system": RID, "value": LI} in [
        {k: i[k] for k in ("system", "value")} for i in person["identifier"]
    ]
    # Searches and conditional writes see members' records; the master only when asked for.
    found = client.get("/fhir/Patient", params={"identifier": f"{RID}|{LI}"}).json()
    assert ids(found) == {zy["id"], qs["id"]}
    asked = client.get("/fhir/Patient", params={"identifier": f"{RID}|{LI}", "_tag": MASTER_TAG})
    assert ids(asked.json()) == {master}
    # A master is the index's to write, not a client's.
    res = client.put(f"/fhir/Patient/{master}", content=orjson.dumps(person), headers=FHIR)
    assert res.status_code == 422 and "master" in res.text


def test_pix_cross_references_every_member_number(client: TestClient) -> None:
    zy = post(client, patient("XRMYY", "ZY0099123", "李娜", "1975-10-02", "female", resident=LI))
    qs = post(client, patient("QSWSY", "QS-004512", "李娜", "1975-10-02", "female", resident=LI))
    res = client.get(
        "/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{mrn('QSWSY')}|QS-004512"}
    )
    assert res.status_code == 200, res.text
    params = res.json()["parameter"]
    targets = {
        (p["valueIdentifier"]["system"], p["valueIdentifier"]["value"])
        for p in params
        if p["name"] == "targetIdentifier"
    }
    assert (mrn("XRMYY"), "ZY0099123") in targets and (RID, LI) in targets
    assert (mrn("QSWSY"), "QS-004512") not in targets  # the source itself is not repeated
    refs = {p["valueReference"]["reference"] for p in params if p["name"] == "targetId"}
    assert {f"Patient/{zy['id']}", f"Patient/{qs['id']}"} <= refs
    only = client.get(
        "/fhir/Patient/$ihe-pix",
        params={"sourceIdentifier": f"{mrn('QSWSY')}|QS-004512", "targetSystem": mrn("XRMYY")},
    ).json()["parameter"]
    assert [p["valueIdentifier"]["value"] for p in only if p["name"] == "targetIdentifier"] == [
        "ZY0099123"
    ]
    unknown = client.get(
        "/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{mrn('QSWSY')}|nobody"}
    )
    assert unknown.status_code == 404 and "OperationOutcome" in unknown.text
    domain = client.get(
        "/fhir/Patient/$ihe-pix",
        params={"sourceIdentifier": f"{mrn('QSWSY')}|QS-004512", "targetSystem": "urn:x"},
    )
    assert domain.status_code == 403


def test_results_are_found_community_wide(client: TestClient) -> None:
    zy = post(client, patient("XRMYY", "ZY0099123", "李娜", "1975-10-02", "female", resident=LI))
    qs = post(client, patient("QSWSY", "QS-004512", "李娜", "1975-10-02", "female", resident=LI))
    lead, township = report(client, zy["id"], "58410-2"), report(client, qs["id"], "57698-3")
    master = master_of(client, zy["id"])

    def find(**params: str) -> set[str]:
        res = client.get("/fhir/DiagnosticReport", params=params)
        assert res.status_code == 200, res.text
        return ids(res.json())

    assert find(patient=f"Patient/{master}") == {lead, township}
    assert find(subject=master) == {lead, township}
    assert find(patient=f"Patient/{qs['id']}") == {township}  # a record alone: its own
    assert find(**{"patient:identifier": f"{mrn('QSWSY')}|QS-004512"}) == {lead, township}
    assert find(**{"patient:Patient.identifier": f"{mrn('XRMYY')}|ZY0099123"}) == {lead, township}
    assert find(**{"patient.identifier": f"{RID}|{LI}"}) == {lead, township}


def test_an_invalid_resident_id_is_flagged_and_never_links(client: TestClient) -> None:
    typo = LI[:5] + str((int(LI[5]) + 1) % 10) + LI[6:]  # one digit off: the check fails
    first = post(client, patient("XRMYY", "ZY1", "王强", "1960-01-01", "male", resident=typo))
    res = client.post(
        "/fhir/Patient",
        content=orjson.dumps(
            patient("QSWSY", "QS1", "赵敏", "1990-05-05", "female", resident=typo)
        ),
        headers=FHIR | {"Prefer": "return=OperationOutcome"},
    )
    assert res.status_code == 201
    outcome = res.json()
    assert any(i["severity"] == "warning" and typo in i["diagnostics"] for i in outcome["issue"])
    second = res.headers["Location"].split("/")[-3]
    assert master_of(client, first["id"]) != master_of(client, second)
    [ident] = [i for i in read(client, f"Patient/{second}")["identifier"] if i["system"] == RID]
    assert ident["extension"][0]["url"].endswith("identifier-invalid")


def test_identical_twins_with_their_own_ids_stay_apart(client: TestClient) -> None:
    same = {"phone": "13800001111", "address": "浙江省湖州市德清县武康街道英溪村12号"}
    a = post(client, patient("XRMYY", "T1", "陈晨", "1980-03-15", "male", resident=TWIN_A, **same))
    b = post(client, patient("XRMYY", "T2", "陈晨", "1980-03-15", "male", resident=TWIN_B, **same))
    assert master_of(client, a["id"]) != master_of(client, b["id"])


def test_a_typo_in_one_id_digit_still_links_on_everything_else(client: TestClient) -> None:
    same = {"phone": "13900002222", "address": "浙江省湖州市德清县新市镇南昌街8号"}
    good = post(client, patient("XRMYY", "G1", "周杰", "1975-10-02", "female", resident=LI, **same))
    typo = LI[:10] + str((int(LI[10]) + 3) % 10) + LI[11:]
    bad = post(
        client, patient("QSWSY", "G2", "周杰", "1975-10-02", "female", resident=typo, **same)
    )
    assert master_of(client, good["id"]) == master_of(client, bad["id"])


def test_a_foreigner_known_by_passport_only(client: TestClient) -> None:
    passport = "https://ygt.example.org/fhir/sid/passport/USA"

    def visitor(member: str, number: str, name: str, value: str) -> dict[str, Any]:
        res = patient(member, number, name, "1985-07-04", "male",
                      more=[{"system": passport, "value": value}])  # fmt: skip
        res["name"] = [{"family": name.split()[0], "given": name.split()[1:]}]
        return res

    a = post(client, visitor("XRMYY", "F1", "SMITH John", "E12345678"))
    b = post(client, visitor("XYXZX", "F2", "John Smith", "E12345678"))
    c = post(client, visitor("QSWSY", "F3", "SMITH John", "E99999999"))
    assert master_of(client, a["id"]) == master_of(client, b["id"]) != master_of(client, c["id"])


def test_a_newborn_without_an_id_is_reviewed_then_linked_by_the_office(
    client: TestClient,
) -> None:
    def baby(member: str, number: str) -> dict[str, Any]:
        return patient(member, number, "张三之子", "2026-11-20", "male", phone="13700003333",
                       address="浙江省湖州市德清县乾元镇城北村3号")  # fmt: skip

    first = post(client, baby("XRMYY", "NB1"))
    second = post(client, baby("XFYBJY", "NB2"))
    assert master_of(client, first["id"]) != master_of(client, second["id"])  # never automatic
    tasks = client.get("/fhir/Task", params={"focus": f"Patient/{second['id']}"}).json()
    [task] = [e["resource"] for e in tasks["entry"]]
    assert task["status"] == "requested" and task["code"]["coding"][0]["code"] == "review-link"
    assert task["input"][0]["valueReference"]["reference"] == f"Patient/{first['id']}"
    task["status"] = "completed"
    task["businessStatus"] = {"coding": [{"system": PATIENT_INDEX, "code": "same-person"}]}
    res = client.put(f"/fhir/Task/{task['id']}", content=orjson.dumps(task), headers=FHIR)
    assert res.status_code == 200, res.text
    assert master_of(client, first["id"]) == master_of(client, second["id"])
    audits = client.get("/fhir/AuditEvent", params={"entity": f"Patient/{second['id']}"}).json()
    assert audits.get("entry"), "the link left an AuditEvent"


def test_match_scores_persons(client: TestClient) -> None:
    home = {"phone": "13512345678", "address": "浙江省湖州市德清县武康街道永安街1号"}
    zy = post(
        client, patient("XRMYY", "ZY0099123", "李娜", "1975-10-02", "female", resident=LI, **home)
    )
    master = master_of(client, zy["id"])
    probe = patient("QSWSY", "x", "李娜", "1975-10-02", "female", **home)
    del probe["identifier"]
    answer = operation(client, "$match", {"name": "resource", "resource": probe})
    assert answer["type"] == "searchset"
    [hit] = answer["entry"]
    assert hit["resource"]["id"] == master and 0.9 <= hit["search"]["score"] <= 1
    assert hit["search"]["extension"][0]["valueCode"] == "probable"
    keyed = patient("QSWSY", "x", "李娜", "1975-10-02", "female", resident=LI)
    certain = operation(client, "$match", {"name": "resource", "resource": keyed},
                        {"name": "onlyCertainMatches", "valueBoolean": True})  # fmt: skip
    assert [e["search"]["extension"][0]["valueCode"] for e in certain["entry"]] == ["certain"]
    stranger = patient("QSWSY", "x", "欧阳修", "1907-01-01", "male")
    assert not operation(client, "$match", {"name": "resource", "resource": stranger}).get("entry")


def test_merge_moves_references_and_can_be_undone(client: TestClient) -> None:
    keep = post(client, patient("XRMYY", "M1", "刘芳", "1980-01-01", "female"))
    dup = post(client, patient("XRMYY", "M2", "刘芳", "1980-01-01", "female"))
    moved = report(client, dup["id"], "58410-2")
    answer = operation(
        client,
        "$merge",
        ref_param("source-patient", dup["id"]),
        ref_param("target-patient", keep["id"]),
    )
    audit = next(p for p in answer["parameter"] if p["name"] == "audit-event")
    assert (
        read(client, f"DiagnosticReport/{moved}")["subject"]["reference"] == f"Patient/{keep['id']}"
    )
    retired = read(client, f"Patient/{dup['id']}")  # kept, not deleted
    assert retired["active"] is False
    assert {"other": {"reference": f"Patient/{keep['id']}"}, "type": "replaced-by"} in retired[
        "link"
    ]
    assert master_of(client, dup["id"]) == master_of(client, keep["id"])
    event = read(client, audit["valueReference"]["reference"])
    assert event["subtype"][0]["code"] == "merge"

    undone = operation(
        client, "$unmerge", {"name": "audit-event", **{"valueReference": audit["valueReference"]}}
    )
    assert any(p["name"] == "audit-event" for p in undone["parameter"])
    assert (
        read(client, f"DiagnosticReport/{moved}")["subject"]["reference"] == f"Patient/{dup['id']}"
    )
    back = read(client, f"Patient/{dup['id']}")
    assert back["active"] is True
    assert not [link for link in back.get("link", []) if link["type"] == "replaced-by"]
    repeat = {"resourceType": "Parameters", "parameter": [audit]}
    again = client.post("/fhir/Patient/$unmerge", headers=FHIR, content=orjson.dumps(repeat))
    assert again.status_code == 422


def test_unlink_keeps_records_apart_until_linked_again(client: TestClient) -> None:
    zy = post(client, patient("XRMYY", "ZY0099123", "李娜", "1975-10-02", "female", resident=LI))
    qs = post(client, patient("QSWSY", "QS-004512", "李娜", "1975-10-02", "female", resident=LI))
    operation(client, "$unlink", ref_param("patient", qs["id"]), ref_param("other", zy["id"]))
    assert master_of(client, zy["id"]) != master_of(client, qs["id"])
    # The township writes its record again: the office's decision stands.
    again = read(client, f"Patient/{qs['id']}")
    res = client.put(f"/fhir/Patient/{qs['id']}", content=orjson.dumps(again), headers=FHIR)
    assert res.status_code == 200
    assert master_of(client, zy["id"]) != master_of(client, qs["id"])
    answer = operation(
        client, "$link", ref_param("patient", qs["id"]), ref_param("other", zy["id"])
    )
    assert master_of(client, zy["id"]) == master_of(client, qs["id"])
    assert any(p["name"] == "audit-event" for p in answer["parameter"])


def test_everything_covers_every_linked_record_page_by_page(client: TestClient) -> None:
    zy = post(client, patient("XRMYY", "ZY0099123", "李娜", "1975-10-02", "female", resident=LI))
    qs = post(client, patient("QSWSY", "QS-004512", "李娜", "1975-10-02", "female", resident=LI))
    reports = {report(client, zy["id"], "58410-2"), report(client, qs["id"], "57698-3"),
               report(client, qs["id"], "4548-4")}  # fmt: skip
    other = post(client, patient("XRMYY", "ZY2", "孙悟空", "1960-01-01", "male"))
    report(client, other["id"], "58410-2")
    master = master_of(client, zy["id"])
    seen: list[str] = []
    url: str | None = f"/fhir/Patient/{qs['id']}/$everything?_count=2"
    while url:
        page = client.get(url).json()
        assert page["total"] == 6  # three records (two members' and the master) and 3 reports
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = "/fhir" + nxt[0].split("/fhir", 1)[1] if nxt else None
    assert sorted(seen) == sorted([zy["id"], qs["id"], master, *reports])
    only = client.get(f"/fhir/Patient/{master}/$everything", params={"_type": "DiagnosticReport"})
    assert ids(only.json()) == reports
    later = client.get(f"/fhir/Patient/{master}/$everything", params={"_since": "2999-01-01"})
    assert later.json()["total"] == 0
    assert client.get("/fhir/Patient/nobody/$everything").status_code == 404


def test_reindex_links_records_from_before_the_index(client: TestClient, engine: Any) -> None:
    import sqlalchemy as sa

    from hub.services.identity.reindex import reindex, unindexed

    zy = post(client, patient("XRMYY", "ZY0099123", "李娜", "1975-10-02", "female", resident=LI))
    qs = post(client, patient("QSWSY", "QS-004512", "李娜", "1975-10-02", "female", resident=LI))
    with engine.begin() as conn:  # as a store upgraded from before the index would be
        conn.execute(sa.text("DELETE FROM mpi_records"))
        conn.execute(sa.text("DELETE FROM mpi_keys"))
    assert sorted(unindexed(engine)) == sorted([zy["id"], qs["id"]])
    assert reindex(engine) == 2 and not unindexed(engine)
    assert master_of(client, zy["id"]) == master_of(client, qs["id"])


def test_a_common_name_does_not_crowd_out_the_person_asked_for(
    client: TestClient, engine: Any
) -> None:
    """210 other 王伟 born other years filled the name block's cap of 200 before the one born
    in 1975; the name block is now narrowed by the birth year."""
    from hub.services.identity.features import features
    from hub.services.identity.index_store import blocking_candidates
    from hub.services.identity.rules import load_rules

    rng = random.Random(7)
    entries = []
    for n in range(210):
        year = rng.choice([y for y in range(1940, 1990) if y != 1975])
        born = f"{year}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        other = patient("XZYY", f"W{n}", "王伟", born, "male")
        entries.append({"resource": other, "request": {"method": "POST", "url": "Patient"}})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    res = client.post("/fhir", content=orjson.dumps(bundle), headers=FHIR)
    assert res.status_code == 200, res.text
    wanted = post(client, patient("XRMYY", "ZY7", "王伟", "1975-06-12", "male"))
    # Asked with the day mistyped and no phone: only the name block can find the record.
    probe = patient("QSWSY", "x", "王伟", "1975-06-21", "male")
    rules = load_rules()
    with engine.connect() as conn:
        found = blocking_candidates(conn, features(probe, rules), "", rules.max_candidates)
    assert wanted["id"] in [r.patient_id for r in found]
    assert len(found) < 10  # the other 王伟 were born in other years
