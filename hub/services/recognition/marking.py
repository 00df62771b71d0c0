"""The HR mark (互认标识): a meta tag on every DiagnosticReport that other members must recognise.

A report carries it when it is final, is of a catalogue item, and its performer was certified
for that item on the result's day (validity is a question of when it is used, so it is not
part of the mark).  Set as the report is written, whichever way it arrives; ``remark`` re-judges
stored reports after the certifications change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, text

from hub.services.recognition.catalogue import Catalogue, load_catalogue
from hub.services.recognition.recognize import effective_day, standard_codes
from hub.store.repository import Writer
from hub.store.schema import of_type, resources

MARK_SYSTEM = "https://ygt.example.org/fhir/CodeSystem/recognition-mark"
HR = {"system": MARK_SYSTEM, "code": "HR", "display": "互认 recognised result"}
TZ = timezone(timedelta(hours=8))  # the community's time zone (profiles: +08:00)


def deserves_mark(report: dict[str, Any], catalogue: Catalogue, tz: timezone = TZ) -> bool:
    if report.get("status") not in ("final", "appended"):
        return False
    day = effective_day(report, tz)
    if day is None:
        return False
    codes = standard_codes(report)
    labs = {
        ref.split("/", 1)[1]
        for p in report.get("performer") or []
        if (ref := p.get("reference") or "").startswith("Organization/")
    }
    return any(
        catalogue.item(code) is not None and catalogue.certified(lab, code, day)
        for code in codes
        for lab in labs
    )


def with_mark(report: dict[str, Any], marked: bool) -> dict[str, Any]:
    meta = dict(report.get("meta") or {})
    tags = [t for t in meta.get("tag") or [] if t.get("system") != MARK_SYSTEM]
    if marked:
        tags.append(HR)
    if tags:
        meta["tag"] = tags
    else:
        meta.pop("tag", None)
    out = {**report}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


@dataclass
class RecognitionMark:
    conn: Connection
    catalogue: Catalogue = field(default_factory=load_catalogue)
    types: frozenset[str] = frozenset({"DiagnosticReport"})

    def before_write(self, writer: Writer, resource: dict[str, Any], res_id: str) -> dict[str, Any]:
        return with_mark(resource, deserves_mark(resource, self.catalogue))

    def after_delete(self, writer: Writer, res_type: str, res_id: str) -> None:
        return None

    def before_flush(self, writer: Writer) -> None:
        return None


def remark(engine: Engine, progress: Callable[[int], None] | None = None) -> int:
    """Re-judge every stored report (after certifications changed); returns how many changed."""
    from hub.fhir.interactions import Unit

    catalogue = load_catalogue()
    changed = 0
    after = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                select(resources.c.rid, resources.c.res_id, resources.c.content)
                .where(
                    of_type("DiagnosticReport"),
                    resources.c.deleted.is_(False),
                    resources.c.rid > after,
                )
                .order_by(resources.c.rid)
                .limit(500)
            ).all()
            if not rows:
                return changed
            unit = Unit.on(conn)
            for row in rows:
                report = orjson.loads(row.content)
                has = any(
                    t.get("system") == MARK_SYSTEM for t in report.get("meta", {}).get("tag", [])
                )
                if has != deserves_mark(report, catalogue):
                    unit.writer.update(report, row.res_id)  # the hook sets the mark
                    changed += 1
            unit.writer.flush()
            after = rows[-1].rid
        if progress:
            progress(len(rows))


_STATE_KEY = "recognition:certifications"


def certifications_digest(catalogue: Catalogue) -> str:
    import hashlib

    text = repr(
        sorted(
            (c.member, sorted(c.codes), c.start.isoformat(), c.end.isoformat())
            for c in catalogue.certifications
        )
    ) + repr(sorted(i.code for i in catalogue.items))
    return hashlib.sha256(text.encode()).hexdigest()


def remark_if_changed(engine: Engine) -> int | None:
    """Re-judge stored reports when the certifications changed since the last start (their
    digest is kept beside the feeds' high-water marks); None when nothing changed.

    The api, mllp and worker processes start together and each calls this: on PostgreSQL a
    session advisory lock lets one re-judge while the others wait, then find the digest kept."""
    from hub.store.marks import read_mark, write_mark

    digest = certifications_digest(load_catalogue())
    # SQLite's hub is one process: a thread lock serialises it; PostgreSQL's span processes.
    with _REMARKING, engine.connect() as guard:
        postgres = guard.dialect.name == "postgresql"
        if postgres:
            guard.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _REMARK_LOCK})
            guard.commit()
        try:
            stored = read_mark(guard, _STATE_KEY)
            guard.rollback()
            if stored == digest:
                return None
            changed = remark(engine)
            with engine.begin() as conn:
                write_mark(conn, _STATE_KEY, digest)
            return changed
        finally:
            if postgres:
                guard.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _REMARK_LOCK})
                guard.commit()


_REMARKING = threading.Lock()
# Any fixed bigint distinct from the conditional-write keys (those are blake2b digests).
_REMARK_LOCK = 0x4852_5245_4D41_524B  # "HRREMARK"
