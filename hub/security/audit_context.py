"""Which FHIR interaction a request is, and the request being audited (a context variable).

The HTTP layer (``hub.auth.audit``) starts a ``RequestAudit`` for every ``/fhir`` request; the
write observer (``hub.services.audit_trail``) reads it from inside the unit of work, where it
marks the request audited, and the bundle processor says whether ``POST /fhir`` was a
transaction or a batch.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, replace

_ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
}
_WRITES = frozenset({"create", "update", "patch", "delete"})
_NOT_AUDITED_OPERATIONS = frozenset({"$export-status"})  # job state only, no patient data


@dataclass(frozen=True)
class Interaction:
    """A FHIR REST interaction (restful-interaction code) and what it names."""

    code: str
    res_type: str | None = None
    res_id: str | None = None
    version: str | None = None
    operation: str | None = None  # "$everything"

    @property
    def action(self) -> str:
        return _ACTIONS.get(self.code, "E")

    @property
    def writes(self) -> bool:
        return self.code in _WRITES

    @property
    def target(self) -> str | None:
        if self.res_type and self.res_id:
            tail = f"/_history/{self.version}" if self.version else ""
            return f"{self.res_type}/{self.res_id}{tail}"
        return None


def classify(method: str, path: str) -> Interaction | None:
    """The interaction of a request to the FHIR API (``/fhir/...``), or None when it reads
    no patient data by its nature (metadata, discovery, an export's status)."""
    parts = [p for p in path.removeprefix("/fhir").split("/") if p]
    method = "GET" if method == "HEAD" else method
    if parts and parts[0] in ("metadata", ".well-known"):
        return None
    op = next((p for p in parts if p.startswith("$")), None)
    if op is not None:
        if op in _NOT_AUDITED_OPERATIONS:
            return None
        before = parts[: parts.index(op)]
        res_type = before[0] if before else None
        res_id = before[1] if len(before) > 1 else None
        if op == "$export-file":  # /$export-file/{job}/{file}
            return Interaction("operation", None, None, None, op)
        return Interaction("operation", res_type, res_id, None, op)
    if not parts:
        return Interaction("transaction" if method == "POST" else "search-system")
    if parts[0] == "_history":
        return Interaction("history-system")
    res_type = parts[0]
    if len(parts) == 1:
        code = {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"}
        return Interaction(code.get(method, "search-type"), res_type)
    if parts[1] == "_search":
        return Interaction("search-type", res_type)
    if parts[1] == "_history":
        return Interaction("history-type", res_type)
    res_id = parts[1]
    if len(parts) >= 4 and parts[2] == "_history":
        return Interaction("vread", res_type, res_id, parts[3])
    if len(parts) == 3 and parts[2] == "_history":
        return Interaction("history-instance", res_type, res_id)
    code = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return Interaction(code.get(method, "read"), res_type, res_id)


def outcome_of(status: int) -> str:
    """BALP outcome: 0 success, 4 minor failure (the client's), 8 serious failure (ours)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


# --- the request being audited ------------------------------------------------------------


@dataclass
class RequestAudit:
    """What the HTTP layer knows of the request in hand, for whoever writes its event."""

    interaction: Interaction
    path: str = ""
    address: str | None = None  # the caller's network address
    query: str = ""  # the query string (and a POST _search's form)
    request_id: str | None = None  # X-Request-ID: the same id as the request's log lines
    audited: bool = False  # an event for this request is written (or in its unit of work)


_request: ContextVar[RequestAudit | None] = ContextVar("hub_request_audit", default=None)


def current_request() -> RequestAudit | None:
    return _request.get()


def begin_request(record: RequestAudit | None) -> Token[RequestAudit | None]:
    return _request.set(record)


def end_request(token: Token[RequestAudit | None]) -> None:
    _request.reset(token)


def note_bundle_kind(kind: str) -> None:
    """The bundle processor says whether ``POST /fhir`` is a transaction or a batch."""
    record = _request.get()
    if record is not None and record.interaction.code in ("transaction", "batch"):
        record.interaction = replace(record.interaction, code=kind)
