"""Reading the patient index: $match candidates, PIX cross-references, a person's records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from hub.search.engine import find_matches
from hub.services.identity import index_store as store
from hub.services.identity.features import features
from hub.services.identity.model import is_master_id
from hub.services.identity.rules import MatchRules
from hub.services.identity.scoring import Match, score
from hub.store.repository import read_many
from hub.store.schema import mpi_records


@dataclass(frozen=True)
class Candidate:
    master_id: str
    match: Match
    record_id: str  # the member record that matched best


def match(
    conn: Connection, patient: dict[str, Any], rules: MatchRules, limit: int
) -> list[Candidate]:
    """Persons that may be ``patient``, best first, one entry per person."""
    feats = features(patient, rules)
    rows = {r.patient_id: r for r in store.by_keys(conn, feats.keys, exclude="")}
    for r in store.blocking_candidates(conn, feats, "", rules.max_candidates):
        rows.setdefault(r.patient_id, r)
    best: dict[str, Candidate] = {}
    for row in rows.values():
        m = score(feats, row.features, rules)
        held = best.get(row.master_id)
        if held is None or m.score > held.match.score:
            best[row.master_id] = Candidate(row.master_id, m, row.patient_id)
    ranked = sorted(best.values(), key=lambda c: (-c.match.score, c.master_id))
    return [c for c in ranked if c.match.grade != "certainly-not"][:limit]


def person_of(conn: Connection, patient_id: str) -> str | None:
    """The master id of a record (or the id itself, for a master)."""
    if is_master_id(patient_id):
        return patient_id
    return conn.execute(
        select(mpi_records.c.master_id).where(mpi_records.c.patient_id == patient_id)
    ).scalar()


def records_of_person(conn: Connection, master_id: str) -> list[str]:
    return list(
        conn.execute(
            select(mpi_records.c.patient_id)
            .where(mpi_records.c.master_id == master_id)
            .order_by(mpi_records.c.patient_id)
        ).scalars()
    )


def patients_with_identifier(conn: Connection, system: str, value: str) -> list[str]:
    token = f"{system}|{value}" if system else value
    return [row[1] for row in find_matches(conn, "Patient", [("identifier", token)], limit=50)]


def contents(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    return read_many(conn, "Patient", ids)
