"""Put Patients the index has not seen into it (a store from before the index existed)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from sqlalchemy import Engine, select

from hub.fhir.interactions import Unit
from hub.services.identity.model import MASTER_PREFIX
from hub.store.schema import mpi_records, resources


def unindexed(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(resources.c.res_id)
                .where(
                    resources.c.res_type == "Patient",
                    resources.c.deleted.is_(False),
                    resources.c.res_id.not_like(MASTER_PREFIX + "%"),
                    resources.c.res_id.not_in(select(mpi_records.c.patient_id)),
                )
                .order_by(resources.c.rid)
            ).scalars()
        )


def reindex(engine: Engine, batch: int = 200, progress: Callable[[int], None] | None = None) -> int:
    """Link every unindexed record (a new version each, carrying its refer link)."""
    ids = unindexed(engine)
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        with engine.begin() as conn:
            unit = Unit.on(conn)
            rows = conn.execute(
                select(resources.c.res_id, resources.c.content).where(
                    resources.c.res_type == "Patient", resources.c.res_id.in_(chunk)
                )
            ).all()
            for res_id, content in rows:
                unit.writer.update(orjson.loads(content), res_id)
            unit.writer.flush()
        if progress:
            progress(len(chunk))
    return len(ids)
