"""What an export covers: the types of each kind, the patients of a Group, the rows of a type.

- **system**: every type the hub serves (or ``_type``).
- **patient**: every Patient and the resources in the Patient compartment, taken here as the
  types with a ``patient`` or ``subject`` reference parameter whose index row points at a live
  Patient.
- **group**: the same for the Group's patients only.  An actual Group lists them in
  ``member.entity``; the community's definitional Group of a centre's residents (``actual``
  false, characteristic ``primary-care-organisation`` = ``Organization/{id}``) means the
  Patients whose ``generalPractitioner`` is that centre, plus the patients whose monthly
  feedback documents were addressed to it.  Master records (``mpi-…``) count only when listed.

The patients of a Group are written to ``export_members`` when the job starts, so a type's
rows are one keyset-paged query joining that table, however many patients there are.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, insert, select, text

from hub.fhir.errors import BadRequest, NotFound
from hub.fhir.validation import SUPPORTED, SUPPORTED_TYPES
from hub.search.definitions import type_params
from hub.search.sql import Sql
from hub.services.identity.model import MASTER_PREFIX, patient_id
from hub.store import repository as repo
from hub.store.schema import export_members

GROUP_CHARACTERISTIC = "https://ygt.example.org/fhir/CodeSystem/group-characteristic"
PRIMARY_CARE = "primary-care-organisation"
KINDS = ("system", "patient", "group")
_COMPARTMENT_PARAMS = ("patient", "subject")
# The audit trail names patients but is not their record (as in $everything): who read a
# patient's data is the office's to see, not a health-archive system's to export.
_LEFT_OUT = frozenset({"AuditEvent"})
_INSERT_BATCH = 1000


@cache
def compartment_params() -> dict[str, tuple[str, ...]]:
    """Type → its reference parameters that can point at the patient (from the registry)."""
    out: dict[str, tuple[str, ...]] = {}
    for res_type in SUPPORTED_TYPES:
        if res_type in _LEFT_OUT:
            continue
        params = type_params(res_type)
        found = tuple(
            code
            for code in _COMPARTMENT_PARAMS
            if code in params and params[code].type == "reference"
        )
        if found:
            out[res_type] = found
    return out


def allowed_types(kind: str) -> tuple[str, ...]:
    if kind == "system":
        return SUPPORTED_TYPES
    return ("Patient", *compartment_params())


def check_types(kind: str, requested: list[str]) -> list[str]:
    """``_type`` checked against what the kind can export (400 otherwise), duplicates dropped."""
    allowed = allowed_types(kind)
    out: list[str] = []
    for res_type in requested:
        if res_type not in SUPPORTED:
            raise BadRequest(f"_type {res_type!r} is not a type this hub serves", code="value")
        if res_type not in allowed:
            raise BadRequest(
                f"_type {res_type!r} is not in the Patient compartment, so a {kind} export "
                "cannot include it",
                code="value",
            )
        if res_type not in out:
            out.append(res_type)
    return out


# --- Groups -----------------------------------------------------------------------------------


def _residents_of(group: dict[str, Any]) -> str | None:
    """The Organization id of a centre's residents Group, or None for another Group."""
    for item in group.get("characteristic") or ():
        if not isinstance(item, dict) or item.get("exclude"):
            continue
        codings = (item.get("code") or {}).get("coding") or ()
        if not any(
            isinstance(c, dict) and c.get("system") == GROUP_CHARACTERISTIC
            and c.get("code") == PRIMARY_CARE
            for c in codings
        ):  # fmt: skip
            continue
        ref = (item.get("valueReference") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Organization/"):
            return ref.split("/", 1)[1]
    return None


def read_group(conn: Connection, group_id: str) -> dict[str, Any]:
    """The Group as JSON; 404 when unknown or deleted, 400 when its members cannot be known."""
    current = repo.read_current(conn, "Group", group_id)
    if current is None or current.deleted or not current.content:
        raise NotFound(f"Group/{group_id} is not known")
    group: dict[str, Any] = orjson.loads(current.content)
    if not group.get("actual", False) and _residents_of(group) is None:
        raise BadRequest(
            f"Group/{group_id} is definitional and its characteristics are not ones this hub "
            f"can resolve (it understands {GROUP_CHARACTERISTIC}|{PRIMARY_CARE})",
            code="not-supported",
        )
    return group


def fill_members(conn: Connection, job_id: str, group: dict[str, Any]) -> int:
    """Write the Group's patients for ``job_id`` (replacing any earlier list); returns how many."""
    conn.execute(delete(export_members).where(export_members.c.job_id == job_id))
    if group.get("actual", False):
        ids: set[str] = set()
        for member in group.get("member") or ():
            if isinstance(member, dict) and not member.get("inactive"):
                pid = patient_id(member.get("entity"))
                if pid:
                    ids.add(pid)
        rows = [{"job_id": job_id, "patient_id": p} for p in sorted(ids)]
        for start in range(0, len(rows), _INSERT_BATCH):
            conn.execute(insert(export_members), rows[start : start + _INSERT_BATCH])
    else:
        org = _residents_of(group)
        conn.execute(
            text(
                "INSERT INTO export_members (job_id, patient_id) SELECT :job, u.pid FROM ("
                "SELECT r.res_id AS pid FROM resources r JOIN idx_reference x ON x.rid = r.rid "
                "WHERE r.res_type = 'Patient' AND NOT r.deleted AND x.res_type = 'Patient' "
                "AND x.param = 'general-practitioner' AND x.target_type = 'Organization' "
                "AND x.target_id = :org "
                "UNION SELECT f.patient_id FROM feedback_documents f WHERE f.addressee = :org"
                ") u WHERE u.pid NOT LIKE :masters"
            ),
            {"job": job_id, "org": org, "masters": MASTER_PREFIX + "%"},
        )
    # Only live Patients: a listed or addressed record that was deleted brings nothing along.
    conn.execute(
        text(
            "DELETE FROM export_members WHERE job_id = :job AND NOT EXISTS ("
            "SELECT 1 FROM resources p WHERE p.res_type = 'Patient' "
            "AND p.res_id = export_members.patient_id AND NOT p.deleted)"
        ),
        {"job": job_id},
    )
    count = conn.execute(
        select(func.count()).select_from(export_members).where(export_members.c.job_id == job_id)
    ).scalar_one()
    return int(count)


# --- rows -------------------------------------------------------------------------------------


def batch_query(
    *,
    kind: str,
    job_id: str,
    res_type: str,
    after: str,
    since: int | None,
    until: int,
    limit: int,
) -> Sql:
    """The next ``limit`` (res_id, content) rows of ``res_type`` after ``after``, in id order.

    Paged on (res_type, res_id), the unique index, so each batch is one index range whatever
    the table's size; the compartment test is an EXISTS probe per row on the index rows.
    Rows changed after ``until`` (the transaction time) are left for the next ``_since`` export.
    """
    text = (
        "SELECT r.res_id, r.content FROM resources r WHERE r.res_type = ? AND r.res_id > ? "
        "AND NOT r.deleted AND r.last_updated <= ?"
    )
    params: list[Any] = [res_type, after, until]
    if since is not None:
        text += " AND r.last_updated > ?"
        params.append(since)
    if kind != "system":
        if res_type == "Patient":
            if kind == "group":
                text += (
                    " AND EXISTS (SELECT 1 FROM export_members m WHERE m.job_id = ? "
                    "AND m.patient_id = r.res_id)"
                )
                params.append(job_id)
        else:
            codes = compartment_params()[res_type]
            marks = ",".join("?" for _ in codes)
            if kind == "group":
                text += (
                    " AND EXISTS (SELECT 1 FROM idx_reference x JOIN export_members m "
                    "ON m.patient_id = x.target_id WHERE x.rid = r.rid "
                    f"AND x.param IN ({marks}) AND x.target_type = 'Patient' AND m.job_id = ?)"
                )
                params += [*codes, job_id]
            else:
                text += (
                    " AND EXISTS (SELECT 1 FROM idx_reference x JOIN resources p "
                    "ON p.res_type = 'Patient' AND p.res_id = x.target_id WHERE x.rid = r.rid "
                    f"AND x.param IN ({marks}) AND x.target_type = 'Patient' AND NOT p.deleted)"
                )
                params += list(codes)
    text += " ORDER BY r.res_id LIMIT ?"
    params.append(limit)
    return Sql(text, tuple(params))
