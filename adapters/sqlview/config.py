"""SQL middle-table feeds (中间表/视图), declared in profiles/community/sql-feeds.json.

A feed names the member, a database URL (any SQLAlchemy URL; ``${VAR}`` is read from the
environment so credentials stay out of profiles/), the table or view, its monotonic key column
(the high-water mark), the column that groups rows into one report, and which source column
holds each logical field.  Value maps translate the vendor's codes (性别 1/2, 审核状态).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.feeds.config import PROFILES

DEFAULT_SQL_FEEDS = PROFILES / "community" / "sql-feeds.json"
# The logical fields a lab-result row can carry; report_no, item_code and value are required.
FIELDS = (
    "mrn",
    "resident_id",
    "name",
    "sex",
    "birth_date",
    "report_no",
    "item_code",
    "item_name",
    "value",
    "unit",
    "range",
    "flag",
    "status",
    "observed_at",
    "reported_at",
)
REQUIRED = ("mrn", "report_no", "item_code", "value")


@dataclass(frozen=True)
class SqlFeed:
    id: str
    member: str
    url: str | None  # None: the URL's environment variable is not set (feed disabled)
    table: str
    key: str
    group: str
    columns: dict[str, str]
    batch: int = 500
    poll_seconds: float = 30.0
    kind: str = "lab-result"
    sex: dict[str, str] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)

    def column(self, name: str) -> str | None:
        return self.columns.get(name)


def _feed(raw: dict[str, Any]) -> SqlFeed:
    url = os.path.expandvars(raw["url"])
    missing = [f for f in REQUIRED if f not in raw["columns"]]
    if missing:
        raise ValueError(f"SQL feed {raw['id']}: columns {missing} are required")
    unknown = set(raw["columns"]) - set(FIELDS)
    if unknown:
        raise ValueError(f"SQL feed {raw['id']}: unknown fields {sorted(unknown)}")
    return SqlFeed(
        id=raw["id"],
        member=raw["member"],
        url=None if "${" in url or not url else url,
        table=raw["table"],
        key=raw["key"],
        group=raw.get("group", raw["columns"]["report_no"]),
        columns=dict(raw["columns"]),
        batch=int(raw.get("batch", 500)),
        poll_seconds=float(raw.get("pollSeconds", 30)),
        kind=raw.get("kind", "lab-result"),
        sex=dict(raw.get("sex", {})),
        status=dict(raw.get("status", {})),
    )


def load_sql_feeds(path: Path | str = DEFAULT_SQL_FEEDS) -> list[SqlFeed]:
    path = Path(path)
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [_feed(raw) for raw in data.get("feeds", [])]
