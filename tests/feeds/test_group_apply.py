"""Group commit: merged only when messages touch different resources; failures isolated."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from hub.queue.group_apply import mergeable_runs
from hub.queue.worker import apply_messages
from hub.store.schema import inbox
from tests.feeds.helpers import inbox_rows


def put(url: str, resource: dict[str, Any], full_url: str) -> dict[str, Any]:
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "PUT", "url": url}}


def post_if_none(res_type: str, query: str, full_url: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": {"resourceType": res_type},
        "request": {"method": "POST", "url": res_type, "ifNoneExist": query},
    }


def bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_runs_split_where_messages_meet() -> None:
    patient = post_if_none("Patient", "identifier=s|1", "urn:uuid:a1")
    report = put("DiagnosticReport?identifier=f|R1", {}, "urn:uuid:a2")
    same_patient = post_if_none("Patient", "identifier=s|1", "urn:uuid:b1")
    other_report = put("DiagnosticReport?identifier=f|R2", {}, "urn:uuid:b2")
    correction = put("DiagnosticReport?identifier=f|R1", {}, "urn:uuid:c1")
    admit = put("Patient?identifier=s|1", {}, "urn:uuid:d1")
    bundles = [
        bundle(patient, report),  # 0
        bundle(same_patient, other_report),  # 1: shares only a conditional create: merged
        bundle(correction),  # 2: updates R1 again: a new run
        bundle(admit),  # 3: touches nothing run 2 writes: merged with it
        {},  # 4: a merge (no Bundle): alone
        bundle(put("Patient?identifier=s|1", {}, "urn:uuid:e1")),  # 5: after the merge
    ]
    assert mergeable_runs(bundles, 25) == [[0, 1], [2, 3], [4], [5]]
    assert mergeable_runs([bundle(patient), bundle(admit)], 25) == [[0], [1]]
    assert (
        len(
            mergeable_runs([bundle(put(f"X?identifier=s|{i}", {}, f"u{i}")) for i in range(60)], 25)
        )
        == 3
    )


def _pending(engine: sa.Engine, control_id: str, content: dict[str, Any]) -> int:
    row = {
        "transport": "test", "peer": "", "sender": "XRMYY", "application": "HIS",
        "control_id": control_id, "message_type": "ADT^A28", "content_hash": control_id,
        "raw": b"", "received_at": 0, "accepted": True, "status": "pending", "error": None,
        "patient_key": None, "bundle": orjson.dumps(content).decode(), "attempts": 0,
    }  # fmt: skip
    with engine.begin() as conn:
        return int(conn.execute(sa.insert(inbox).returning(inbox.c.id), row).scalar_one())


def test_one_bad_message_does_not_take_its_group_down(engine: sa.Engine, clean_db: None) -> None:
    def patient(n: int, gender: str) -> dict[str, Any]:
        resource = {"resourceType": "Patient", "gender": gender,
                    "identifier": [{"system": "s", "value": str(n)}]}  # fmt: skip
        return bundle(put(f"Patient?identifier=s|{n}", resource, f"urn:uuid:p{n}"))

    ids = [
        _pending(engine, "G1", patient(1, "female")),
        _pending(engine, "G2", patient(2, "not-a-gender")),
        _pending(engine, "G3", patient(3, "male")),
    ]
    assert apply_messages(engine, ids) == {"applied": 2, "failed": 1}
    statuses = {r.control_id: r.status for r in inbox_rows(engine)}
    assert statuses == {"G1": "applied", "G2": "failed", "G3": "applied"}
    with engine.connect() as conn:
        count = conn.execute(
            sa.text(
                "SELECT count(*) FROM resources WHERE res_type = 'Patient'"
                " AND res_id NOT LIKE 'mpi-%'"
            )
        ).scalar_one()
    assert count == 2


def test_after_a_failed_group_each_message_is_applied_from_its_stored_bundle(
    engine: sa.Engine, clean_db: None
) -> None:
    """The group's attempt rewrote its placeholders in place before it failed; the one-by-one
    attempts must start from the stored Bundles, or the Observations would point at the
    rolled-back attempt's Patient ids."""

    def result(n: int, status: str) -> dict[str, Any]:
        person = {"resourceType": "Patient", "identifier": [{"system": "s", "value": str(n)}]}
        observation = {
            "resourceType": "Observation",
            "status": status,
            "code": {"text": "Hb"},
            "subject": {"reference": f"urn:uuid:p{n}"},
        }
        return bundle(
            put(f"Patient?identifier=s|{n}", person, f"urn:uuid:p{n}"),
            put(f"Observation?identifier=o|{n}", observation, f"urn:uuid:o{n}"),
        )

    ids = [
        _pending(engine, "R1", result(1, "final")),
        _pending(engine, "R2", result(2, "not-a-status")),
        _pending(engine, "R3", result(3, "final")),
    ]
    assert apply_messages(engine, ids) == {"applied": 2, "failed": 1}
    with engine.connect() as conn:
        stored = {
            row.res_id: orjson.loads(row.content)
            for row in conn.execute(
                sa.text(
                    "SELECT res_id, content FROM resources WHERE res_type = 'Patient'"
                    " AND res_id NOT LIKE 'mpi-%'"
                )
            )
        }
        subjects = [
            orjson.loads(content)["subject"]["reference"]
            for content in conn.execute(
                sa.text("SELECT content FROM resources WHERE res_type = 'Observation'")
            ).scalars()
        ]
    assert len(stored) == 2 and len(subjects) == 2
    assert {s.removeprefix("Patient/") for s in subjects} == set(stored)
