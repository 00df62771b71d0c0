"""The migrations build exactly the indexes hub/store/schema.py declares, on both backends."""

from __future__ import annotations

import sqlalchemy as sa

from hub.store.schema import metadata


def test_every_declared_index_exists_with_its_columns(engine: sa.Engine) -> None:
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        declared = {i.name: [c.name for c in i.columns] for i in table.indexes if i.columns}
        built = {
            i["name"]: list(i["column_names"])
            for i in inspector.get_indexes(table.name)
            if all(i["column_names"])  # expression indexes are left to their own tests
        }
        for name, columns in declared.items():
            assert built.get(name) == columns, (table.name, name, built.get(name), columns)


def test_no_reference_index_is_left_from_before_0016(engine: sa.Engine) -> None:
    names = {i["name"] for i in sa.inspect(engine).get_indexes("idx_reference")}
    assert names == {"ix_reference_by_target", "ix_reference_rid"}
