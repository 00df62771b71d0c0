"""Structured logs: one JSON object per line, with the correlation id of the work in hand.

A correlation id names one HTTP request (the caller's ``X-Request-ID`` / ``X-Correlation-ID``,
else a fresh one) or one inbound HL7 message (``hl7:<sender>:<control id>``, plus its inbox id
once stored).  It lives in a contextvar, so everything logged while that work is handled, in
any module, carries it; threads that run the work for an event loop get it by
``contextvars.copy_context()``.

Nothing clinical is logged: messages are written by the hub's own code with codes and ids of
messages, never of patients, and exceptions are rendered as their type and place
(``adapters.logsafe.describe``) plus the stack's file:line frames, never their text, which may
quote a name, an identifier or a value.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
import sys
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from adapters.logsafe import describe

LogFormat = Literal["json", "text"]

_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hub_correlation_id", default=None
)
# Safe fields bound for the duration of a unit of work (sender, control_id, inbox_id, route).
_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "hub_log_fields", default=None
)

# What a caller's correlation id may look like: anything else is replaced, so a header cannot
# inject text (or clinical data) into the logs.
SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)

# uvicorn's ANSI-coloured copy of its message; our own key.
_NOT_FIELDS = frozenset({"color_message", "correlation_id"})


def correlation_id() -> str | None:
    return _correlation.get()


def log_fields() -> dict[str, Any]:
    return dict(_fields.get() or {})


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def safe_id(value: str | None, *, limit: int = 64) -> str:
    """A caller's or sender's id as it may appear in logs and labels: kept when it is plainly
    an id, otherwise replaced by a short hash (still stable, so lines can be matched up)."""
    if not value:
        return ""
    value = value.strip()
    if len(value) <= limit and SAFE_ID.match(value):
        return value
    return "h-" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:16]


@contextmanager
def correlated(cid: str | None = None, **fields: Any) -> Iterator[str]:
    """Bind a correlation id (a new one when None) and safe fields for the block."""
    cid = cid or new_correlation_id()
    token = _correlation.set(cid)
    ftoken = _fields.set({**(_fields.get() or {}), **fields})
    try:
        yield cid
    finally:
        _fields.reset(ftoken)
        _correlation.reset(token)


def bind(**fields: Any) -> None:
    """Add safe fields to the unit of work in hand (e.g. the inbox id once the row exists)."""
    _fields.set({**(_fields.get() or {}), **fields})


def hl7_correlation_id(sender: str, control_id: str) -> str:
    return f"hl7:{safe_id(sender) or '-'}:{safe_id(control_id) or '-'}"


def _frames(exc: BaseException) -> list[str]:
    return [
        f"{'/'.join(Path(f.filename).parts[-2:])}:{f.lineno} in {f.name}"
        for f in traceback.extract_tb(exc.__traceback__)
    ]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation_id, fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None) or _correlation.get(),
        }
        entry.update(_fields.get() or {})
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key not in _NOT_FIELDS:
                entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["error"] = describe(exc)
            entry["stack"] = _frames(exc)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """For a developer's terminal; exceptions still without their text."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(cid)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.cid = _correlation.get() or "-"
        return super().format(record)

    def formatException(self, ei: Any) -> str:
        exc = ei[1]
        if exc is None:
            return ""
        return "  " + describe(exc) + "\n" + "\n".join("    " + f for f in _frames(exc))


def configure_logging(fmt: LogFormat = "json", level: str = "info") -> None:
    """Route every logger (uvicorn's too) to stderr in one format; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("hub")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "hub"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_log = logging.getLogger(name)
        uvicorn_log.handlers.clear()
        uvicorn_log.propagate = True
    quiet_libraries()


def quiet_libraries() -> None:
    """Libraries' lines that would carry what the hub's own lines leave out."""
    # The access log prints request lines, whose query strings can carry identifiers; the
    # hub's own request log (hub.http) names the route template instead.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request's URL at INFO: a rest-hook's names the resource it delivers.
    for name in ("httpx", "httpcore", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Alembic announces each of its plugins at every start of every process.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
