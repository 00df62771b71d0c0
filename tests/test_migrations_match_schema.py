"""The migrations build exactly the indexes hub/store/schema.py declares, on both backends."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from hub.store.schema import idx_token, metadata


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


def test_0017_drops_union_rows_and_its_downgrade_writes_them_back(tmp_path: Path) -> None:
    from hub.store.migrate import downgrade, upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0016")
    engine = sa.create_engine(url)

    def token(param: str, code: str) -> dict[str, object]:
        return {"rid": 1, "res_type": "Observation", "param": param, "system": "L", "code": code}

    with engine.begin() as conn:
        conn.execute(
            idx_token.insert(),
            [
                token("code", "85354-9"),
                token("component-code", "8480-6"),
                token("combo-code", "85354-9"),
                token("combo-code", "8480-6"),
            ],
        )

    def combo_codes() -> list[str]:
        with engine.connect() as conn:
            return sorted(
                conn.execute(
                    sa.select(idx_token.c.code).where(idx_token.c.param == "combo-code")
                ).scalars()
            )

    upgrade(url)
    assert combo_codes() == []
    downgrade(url, "0016")
    assert combo_codes() == ["8480-6", "85354-9"]
    engine.dispose()
