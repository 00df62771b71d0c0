"""Transaction-scoped locks that make conditional writes race-free.

Twenty clients posting the same conditional create at once must produce one resource.  On
PostgreSQL each conditional write first takes an advisory lock on a key derived from what makes
it unique (type + search criteria, or type + id); the lock is released at commit, after which the
next waiter's search (a new READ COMMITTED snapshot) sees the committed row.  On SQLite every
write transaction already holds the database's write lock from its first statement
(``BEGIN IMMEDIATE``, see hub.db), so nothing more is needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Connection, TextClause, text


@lru_cache(maxsize=65_536)
def criteria_key(res_type: str, query: str) -> str:
    """A canonical key for conditional criteria: parameter order and encoding don't matter."""
    if "=" in query and "&" not in query and "%" not in query and "+" not in query:
        # One parameter, nothing encoded (a feed's identifier criteria, three times a
        # message each): parse_qsl would give back the same text.
        return res_type + "?" + query
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return res_type + "?" + "&".join(f"{k}={v}" for k, v in pairs)


def lock_number(key: str) -> int:
    """The advisory lock a key names (PostgreSQL's lock space is 64-bit numbers)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_keys(conn: Connection, keys: Iterable[str], shared: Iterable[str] = ()) -> None:
    """Take transaction-scoped locks on all keys, in a fixed order so waiters never deadlock.
    ``shared``: keys taken in shared mode (a key in both is taken exclusively)."""
    taking = lock_statement(conn, keys, shared)
    if taking is not None:
        conn.execute(*taking)


def lock_statement(
    conn: Connection, keys: Iterable[str], shared: Iterable[str] = ()
) -> tuple[TextClause, dict] | None:
    """The statement and parameters that take these locks (``lock_keys`` runs it; a caller
    may run it in a pipeline before the statement that needs them, see
    hub.store.bulk.run_pipelined); None when there is nothing to lock or the database is not
    PostgreSQL."""
    if conn.dialect.name != "postgresql":
        return None
    exclusive = {lock_number(k) for k in keys}
    sharing = {lock_number(k) for k in shared} - exclusive
    # The numbers go as one JSON text: psycopg adapts an array element by element in Python,
    # and a feed worker's group takes a few hundred locks.
    if sharing:
        numbers = sorted(exclusive | sharing)
        pairs = [{"k": n, "s": n in sharing} for n in numbers]
        return _LOCK_MIXED, {"keys": orjson.dumps(pairs).decode()}
    numbers = sorted(exclusive)
    if len(numbers) == 1:
        return _LOCK_ONE, {"k": numbers[0]}
    # One round trip for all keys; the inner ORDER BY fixes the order they are taken in.
    return (_LOCK_MANY, {"keys": orjson.dumps(numbers).decode()}) if numbers else None


_LOCK_ONE = text("SELECT pg_advisory_xact_lock(:k)")
_LOCK_MANY = text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT CAST(value AS bigint) AS k "
    "FROM json_array_elements_text(CAST(:keys AS json)) ORDER BY k) AS ordered"
)
# Shared and exclusive keys in one order: a shared holder waits for an exclusive one and the
# reverse, so mixing modes keeps the order's guarantee.
_LOCK_MIXED = text(
    "SELECT CASE WHEN s THEN pg_advisory_xact_lock_shared(k) ELSE pg_advisory_xact_lock(k) END "
    "FROM (SELECT k, s FROM json_to_recordset(CAST(:keys AS json)) AS u(k bigint, s boolean) "
    "ORDER BY k) AS ordered"
)
