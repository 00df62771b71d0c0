"""Merges (ADT^A40, $merge, a PUT with ``replaced-by``) and their undoing; links and unlinks.

A merge retires the duplicate record in favour of the survivor: every resource that referred
to the duplicate is moved to the survivor (a new version each, the JSON paths remembered), the
duplicate stays, inactive, with ``replaced-by``; nothing is deleted.  An AuditEvent records it
and ``mpi_merges`` keeps what moved, so ``undo_merge`` can put each reference back.
"""

from __future__ import annotations

from typing import Any

import orjson
from jsonpointer import resolve_pointer
from sqlalchemy import Connection, insert, select, update

from hub.fhir.errors import NotFound, Unprocessable
from hub.services.audit import audit_event
from hub.services.identity import index_store as store
from hub.services.identity.linker import PatientIndex, new_master_id
from hub.services.identity.model import PATIENT_INDEX, patient_id, ref
from hub.store.repository import Writer, now_micros, read_current
from hub.store.schema import idx_reference, mpi_merges, resources

# Historical records keep naming the record they were about.
_KEEP = ("Patient", "Provenance", "AuditEvent")


def _subtype(code: str, display: str) -> dict[str, str]:
    return {"system": PATIENT_INDEX, "code": code, "display": display}


def referring(conn: Connection, patient: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        select(resources.c.res_type, resources.c.res_id)
        .join(idx_reference, idx_reference.c.rid == resources.c.rid)
        .where(
            idx_reference.c.target_type == "Patient",
            idx_reference.c.target_id == patient,
            resources.c.res_type.not_in(_KEEP),
            resources.c.deleted.is_(False),
        )
        .distinct()
    ).all()
    return sorted((r.res_type, r.res_id) for r in rows)


def _repoint(node: Any, source: str, target: str, path: str, found: list[str]) -> Any:
    """A copy of ``node`` with references to Patient/source turned to Patient/target."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and patient_id(node) == source:
                out[key] = (
                    value[: len(value) - len(source)] + target
                    if value.endswith(source)
                    else f"Patient/{target}"
                )
                found.append(path)
            else:
                out[key] = _repoint(value, source, target, f"{path}/{key}", found)
        return out
    if isinstance(node, list):
        return [_repoint(v, source, target, f"{path}/{i}", found) for i, v in enumerate(node)]
    return node


def write_resource(writer: Writer, resource: dict[str, Any], res_id: str, observe: bool) -> None:
    if writer.written(resource["resourceType"], res_id):
        writer.rewrite(resource, res_id)
    else:
        writer.update(resource, res_id, observe=observe)


def _move(
    writer: Writer, items: list[tuple[str, str]], source: str, target: str
) -> list[list[Any]]:
    moved: list[list[Any]] = []
    for res_type, res_id in items:
        current = read_current(writer.conn, res_type, res_id)
        if current is None or current.content is None or writer.written(res_type, res_id):
            continue
        paths: list[str] = []
        updated = _repoint(orjson.loads(current.content), source, target, "", paths)
        if paths:
            writer.update(updated, res_id, observe=False)
            moved.append([res_type, res_id, paths])
    return moved


def apply_merge(index: PatientIndex, writer: Writer, source: str, target: str) -> None:
    """Move what referred to ``source`` onto ``target``; record and audit the merge."""
    moved = _move(writer, referring(writer.conn, source), source, target)
    _mark_replaces(index, writer, target, source, add=True)
    event = audit_event(
        subtype=_subtype("merge", "合并患者记录 merge"),
        action="U",
        entities=[(f"Patient/{source}", "1"), (f"Patient/{target}", "1")],
        description=f"Patient/{source} merged into Patient/{target}; {len(moved)} resources moved",
    )
    stored = writer.create(event, observe=False)
    writer.conn.execute(
        insert(mpi_merges).values(
            source_id=source,
            target_id=target,
            moved=orjson.dumps(moved).decode(),
            audit_event=stored.res_id,
            created_at=now_micros(),
        )
    )


def _mark_replaces(
    index: PatientIndex, writer: Writer, target: str, source: str, add: bool
) -> None:
    resource = index.contents([target]).get(target)
    if resource is None:
        return
    links = [
        link
        for link in resource.get("link") or []
        if not (link.get("type") == "replaces" and patient_id(link.get("other")) == source)
    ]
    if add:
        links.insert(0, {"other": ref(source), "type": "replaces"})
    if links == resource.get("link"):
        return
    updated = {**resource, "link": links}
    index.written[target] = updated
    write_resource(writer, updated, target, observe=False)


def merge(index: PatientIndex, writer: Writer, source: str, target: str) -> None:
    """$merge: retire ``source`` in favour of ``target`` (both member records)."""
    if source == target:
        raise Unprocessable("a record cannot be merged into itself", code="invalid")
    resource = index.contents([source]).get(source)
    if resource is None:
        raise NotFound(f"Patient/{source} is not known")
    if index.contents([target]).get(target) is None:
        raise NotFound(f"Patient/{target} is not known")
    links = [link for link in resource.get("link") or [] if link.get("type") != "replaced-by"]
    links.insert(0, {"other": ref(target), "type": "replaced-by"})
    write_resource(writer, {**resource, "active": False, "link": links}, source, observe=True)


def undo_merge(index: PatientIndex, writer: Writer, audit_id: str) -> dict[str, Any]:
    conn = writer.conn
    row = conn.execute(select(mpi_merges).where(mpi_merges.c.audit_event == audit_id)).first()
    if row is None:
        raise NotFound(f"AuditEvent/{audit_id} records no merge")
    if row.undone_at is not None:
        raise Unprocessable(f"the merge AuditEvent/{audit_id} was undone already", code="conflict")
    source, target = row.source_id, row.target_id
    back = 0
    for res_type, res_id, paths in orjson.loads(row.moved):
        current = read_current(conn, res_type, res_id)
        if current is None or current.content is None:
            continue
        content = orjson.loads(current.content)
        changed = False
        for path in paths:
            node = resolve_pointer(content, path, None)
            if isinstance(node, dict) and patient_id(node) == target:
                node["reference"] = f"Patient/{source}"
                changed = True
        if changed:
            write_resource(writer, content, res_id, observe=False)
            back += 1
    store.set_master(conn, source, new_master_id(), "self", replaced_by=None, active=True)
    resource = index.contents([source]).get(source) or {}
    links = [link for link in resource.get("link") or [] if link.get("type") != "replaced-by"]
    write_resource(writer, {**resource, "active": True, "link": links}, source, observe=True)
    _mark_replaces(index, writer, target, source, add=False)
    index.dirty.add(store.load(conn, target).master_id)  # type: ignore[union-attr]
    conn.execute(update(mpi_merges).where(mpi_merges.c.id == row.id).values(undone_at=now_micros()))
    event = audit_event(
        subtype=_subtype("unmerge", "撤销合并 undo merge"),
        action="U",
        entities=[
            (f"Patient/{source}", "1"),
            (f"Patient/{target}", "1"),
            (f"AuditEvent/{audit_id}", "4"),
        ],
        description=f"merge of Patient/{source} into Patient/{target} undone; {back} moved back",
    )
    stored = writer.create(event, observe=False)
    return {"audit": stored.res_id, "source": source, "target": target, "moved_back": back}


def last_merge(conn: Connection, source: str) -> tuple[str, int]:
    """The AuditEvent id of the latest merge of ``source`` and how many resources it moved."""
    row = conn.execute(
        select(mpi_merges.c.audit_event, mpi_merges.c.moved)
        .where(mpi_merges.c.source_id == source)
        .order_by(mpi_merges.c.id.desc())
    ).first()
    if row is None:
        raise NotFound(f"Patient/{source} has not been merged")
    return row.audit_event, len(orjson.loads(row.moved))


def unlink(index: PatientIndex, writer: Writer, record: str, other: str | None) -> dict[str, Any]:
    """ADT^A37 / $unlink: ``record`` is not the same person as ``other`` (or as anyone it is
    linked to now).  It moves to a person of its own and is never linked to them again
    automatically."""
    conn = writer.conn
    row = index.ensure_indexed(record)
    mates = [
        r.patient_id for r in store.records_of(conn, [row.master_id]) if r.patient_id != record
    ]
    apart = [other] if other else mates
    if other is not None:
        index.ensure_indexed(other)
    store.add_distinct(conn, [(record, o) for o in apart], "unlink")
    if mates and (other is None or other in mates):
        new = new_master_id()
        store.set_master(conn, record, new, "self")
        index.dirty.update({row.master_id, new})
        index.relinked.add(record)
    event = audit_event(
        subtype=_subtype("unlink", "解除关联 unlink"),
        action="U",
        entities=[(f"Patient/{record}", "1"), *((f"Patient/{o}", "1") for o in apart)],
        description=f"Patient/{record} unlinked from {len(apart)} record(s)",
    )
    return {"audit": writer.create(event, observe=False).res_id}


def link(index: PatientIndex, writer: Writer, record: str, other: str) -> dict[str, Any]:
    """$link (and undoing an unlink): ``record`` is the same person as ``other``."""
    conn = writer.conn
    if record == other:
        raise Unprocessable("a record is always linked to itself", code="invalid")
    row = index.ensure_indexed(record)
    target = index.ensure_indexed(other)
    store.remove_distinct(conn, [(record, other)])
    if row.master_id != target.master_id:
        store.set_master(conn, record, target.master_id, "manual")
        index.dirty.update({row.master_id, target.master_id})
        index.relinked.add(record)
    else:
        store.set_master(conn, record, target.master_id, "manual")
    event = audit_event(
        subtype=_subtype("link", "关联患者记录 link"),
        action="U",
        entities=[(f"Patient/{record}", "1"), (f"Patient/{other}", "1")],
        description=f"Patient/{record} linked to Patient/{other} (the same person)",
    )
    return {"audit": writer.create(event, observe=False).res_id, "master": target.master_id}
