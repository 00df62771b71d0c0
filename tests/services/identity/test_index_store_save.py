"""A record new to the index is saved with its keys in one statement on PostgreSQL; both
stores keep the same rows and refuse a second record under the same id the same way."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hub.services.identity import index_store
from hub.services.identity.features import features
from hub.services.identity.rules import load_rules
from tests.services.identity.test_patient_index import patient, rid

RESIDENT = rid("33052119700101007")


def _save(conn: sa.Connection, patient_id: str) -> None:
    feats = features(
        patient("XRMYY", "ZY0200001", "郑伟", "1970-01-01", "male", resident=RESIDENT),
        load_rules(),
    )
    feats_json = index_store.features_json(feats)
    index_store.save(
        conn,
        patient_id,
        master_id="mpi-test-0001",
        method="self",
        score=None,
        active=True,
        replaced_by=None,
        feats=feats,
        feats_json=feats_json,
        digest_value=index_store.digest(feats_json, []),
        existed=False,
        old_keys=None,
        new_keys=feats.keys,
    )


def test_a_new_record_is_saved_with_its_keys(engine: sa.Engine, clean_db: None) -> None:
    with engine.begin() as conn:
        _save(conn, "rec-1")
    with engine.connect() as conn:
        row = index_store.load(conn, "rec-1")
        assert row is not None and row.master_id == "mpi-test-0001" and row.active
        assert row.features.name_key and row.features.birth_date == "1970-01-01"
        found = index_store.by_keys(conn, row.features.keys, exclude="nobody")
        assert [r.patient_id for r in found] == ["rec-1"]
        keys = conn.execute(
            sa.text("SELECT kind, value FROM mpi_keys WHERE patient_id = 'rec-1'")
        ).all()
        assert {(k, v) for k, v in keys} == set(row.features.keys.items())


def test_the_same_id_twice_is_refused_as_sqlalchemy_says(engine: sa.Engine, clean_db: None) -> None:
    with engine.begin() as conn:
        _save(conn, "rec-2")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _save(conn, "rec-2")
