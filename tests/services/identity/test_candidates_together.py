"""A transaction's new patients have their candidates looked up together, in one round trip,
when none could be a candidate of another; otherwise one at a time, each seeing the others
(PostgreSQL and SQLite)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from hub.services.identity import index_store
from tests.services.identity.test_patient_index import FHIR, master_of, patient, post, rid

ZHOU = rid("33052119620708003")
WU = rid("33052119880214004")
SUN = rid("33052119930530005")


def _transaction(client: TestClient, *patients: dict[str, Any]) -> list[str]:
    entries = [{"resource": p, "request": {"method": "POST", "url": "Patient"}} for p in patients]
    res = client.post(
        "/fhir",
        content=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        headers=FHIR,
    )
    assert res.status_code == 200, res.text
    return [e["response"]["location"].split("/")[1] for e in res.json()["entry"]]


def test_new_patients_apart_are_looked_up_together(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = post(
        client, patient("XRMYY", "ZY0100001", "周建华", "1962-07-08", "male", resident=ZHOU)
    )

    def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("looked up on its own")

    monkeypatch.setattr(index_store, "keyed_and_blocked", one_at_a_time)
    zhou, wu, sun = _transaction(
        client,
        patient("QSWSY", "QS-100001", "周建华", "1962-07-08", "male", resident=ZHOU),
        patient("QSWSY", "QS-100002", "吴丽", "1988-02-14", "female", resident=WU),
        patient("QSWSY", "QS-100003", "孙浩", "1993-05-30", "male", resident=SUN),
    )
    # The look-up made together still found the record stored before.
    assert master_of(client, zhou) == master_of(client, stored["id"])
    assert len({master_of(client, zhou), master_of(client, wu), master_of(client, sun)}) == 3


def test_new_patients_that_could_find_each_other_are_looked_up_one_at_a_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    real = index_store.keyed_and_blocked

    def counted(conn: Any, feats: Any, exclude: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(exclude)
        return real(conn, feats, exclude, *args, **kwargs)

    monkeypatch.setattr(index_store, "keyed_and_blocked", counted)
    first, second, other, zhou = _transaction(
        client,
        patient("XRMYY", "ZY0100002", "吴丽", "1988-02-14", "female", resident=WU),
        patient("QSWSY", "QS-100004", "吴丽", "1988-02-14", "female", resident=WU),
        patient("QSWSY", "QS-100005", "孙浩", "1993-05-30", "male", resident=SUN),
        patient("QSWSY", "QS-100006", "周建华", "1962-07-08", "male", resident=ZHOU),
    )
    # Sharing a resident ID (and name, birth date): the second saw the first, one person.
    assert master_of(client, first) == master_of(client, second)
    assert master_of(client, other) != master_of(client, first)
    assert master_of(client, zhou) not in (master_of(client, first), master_of(client, other))
    assert set(asked) == {first, second}  # the other two together
