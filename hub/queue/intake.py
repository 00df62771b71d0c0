"""Feed intake: raw HL7 v2 bytes → durable inbox row → acknowledgement.

Parsing and mapping are pure and fast, so they run before the answer: a message that cannot be
read or mapped is answered AE/AR with an ERR segment at once, and kept (status ``rejected``)
for the office to fix and replay.  A message that maps is written to the inbox, with its
mapped Bundle, and committed before it is acknowledged AA (commit-ACK semantics); the worker
applies it later.  A resend (same sender, same MSH-10, same bytes) is acknowledged AA and not
stored again; the same control id with other content is refused with AE.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from adapters.feeds.config import Community
from adapters.hl7v2.ack import ErrorDetail, build_ack, minimal_ack_for
from adapters.hl7v2.errors import (
    APPLICATION_INTERNAL_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    HL7ParseError,
)
from adapters.hl7v2.parse import Message, parse, parse_header

if TYPE_CHECKING:
    from adapters.hl7v2.mapped import Mapped
from adapters.hl7v2.text import CHARSETS, msh_fields
from adapters.logsafe import describe
from hub.ops import metrics
from hub.ops.logs import bind, correlated, hl7_correlation_id, safe_id
from hub.queue.inbox_batch import batcher_for
from hub.queue.mapped_check import validated
from hub.queue.streams import announce_inbox
from hub.search.values import format_instant
from hub.store.repository import new_id, now_micros
from hub.store.schema import inbox

log = logging.getLogger("hub.intake")

# HL7 table 0155 (accept/application acknowledgment conditions): when a commit ACK is sent.
_ACCEPT_ACK_WHEN = {"AL": {"CA", "CE", "CR"}, "ER": {"CE", "CR"}, "SU": {"CA"}, "NE": set()}
_ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}


@dataclass
class Receipt:
    """What to answer the sender, and what became of the message."""

    ack: bytes | None  # None: the sender asked for no commit ACK (MSH-15 NE / ER / SU)
    code: str  # AA AE AR (CA CE CR in enhanced mode)
    inbox_id: int | None
    status: str  # pending, rejected, duplicate
    errors: list[ErrorDetail] = field(default_factory=list)


def _charset_for(community: Community, sender: str) -> str:
    """The feed's default character set (used when MSH-18 is empty), as a Python codec."""
    member = community.member(sender)
    name = member.charset if member else "UTF-8"
    return CHARSETS.get(name.upper(), name.lower())


def _text(value: str) -> str:
    """Text columns as PostgreSQL takes them: a NUL byte in MSH-10 (or in a patient's record
    number) made the insert fail, and the sender was told to resend for ever (found by
    fuzzing).  The raw bytes are kept as they came."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _patient_key(key: str | None) -> str | None:
    """The key that keeps one patient's messages in order, as the column takes it: a record
    number of 300 characters overflowed it on PostgreSQL (found by fuzzing); a digest keeps
    such a key as distinct as it was."""
    if not key:
        return None
    key = _text(key)
    return key if len(key) <= 300 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def inbox_row(
    raw: bytes,
    *,
    transport: str,
    peer: str | None,
    sender: str,
    application: str,
    control_id: str,
    message_type: str,
    error: str | None = None,
    mapped: Mapped | None = None,
) -> dict[str, Any]:
    """An inbox row: accepted and pending with its mapped Bundle, or rejected with its error."""
    return {
        "transport": transport,
        "peer": _text(peer or "")[:128],
        "sender": _text(sender)[:64],
        "application": _text(application)[:64],
        "control_id": _text(control_id)[:64],
        "message_type": _text(message_type)[:32],
        "content_hash": hashlib.sha256(raw).hexdigest(),
        "raw": raw,
        "received_at": now_micros(),
        "accepted": mapped is not None,
        "status": "pending" if mapped is not None else "rejected",
        "error": _text(error) if error is not None else None,
        "patient_key": _patient_key(mapped.patient_key) if mapped is not None else None,
        "bundle": orjson.dumps(mapped.bundle).decode() if mapped is not None else None,
        "attempts": 0,
    }


def _row(
    raw: bytes,
    header: list[str],
    *,
    transport: str,
    peer: str | None,
    error: str | None = None,
    mapped: Mapped | None = None,
) -> dict[str, Any]:
    """``inbox_row`` with sender, application, control id and type read from MSH."""

    def msh(n: int) -> str:
        return header[n - 1] if len(header) >= n else ""

    return inbox_row(
        raw,
        transport=transport,
        peer=peer,
        sender=msh(4).split("^")[0].strip(),
        application=msh(3).split("^")[0].strip(),
        control_id=msh(10).strip(),
        message_type=msh(9),
        error=error,
        mapped=mapped,
    )


_INSERT = insert(inbox).returning(inbox.c.id)


def _store(engine: Engine, row: dict[str, Any]) -> int:
    """Insert the row, committed (durably) when this returns; IntegrityError when its sender
    and control id were accepted already."""
    if engine.dialect.name == "postgresql":
        # Rows of messages arriving together share one commit (hub.queue.inbox_batch).
        return batcher_for(engine).store(row)
    with engine.begin() as conn:
        return int(conn.execute(_INSERT, row).scalar_one())


def _ack(
    message: Message | None,
    code: str,
    errors: list[ErrorDetail],
    community: Community,
    raw: bytes,
) -> tuple[bytes | None, str]:
    """The ACK bytes (in the message's own character set) and the code actually sent."""
    if message is None:
        return minimal_ack_for(raw, code, errors[0].text if errors else "message rejected"), code
    accept_type = message.msh.value(15).upper()
    if accept_type:  # enhanced mode: a commit ACK (CA/CE/CR), sent only when asked for
        code = _ENHANCED[code]
        if code not in _ACCEPT_ACK_WHEN.get(accept_type, {"CA", "CE", "CR"}):
            return None, code
    text = build_ack(
        message,
        code,
        errors=errors,
        control_id=new_id()[:20],
        sending_app=community.hub_application,
        sending_facility=community.hub_facility,
    )
    return text.encode(message.charset, errors="replace"), code


def map_parsed(message: Message, community: Community, sender: str) -> Mapped:
    """Map a parsed message and validate what it maps to; raises MappingError (an
    HL7ParseError) when it cannot be mapped or a resource is not valid FHIR."""
    from adapters.hl7v2.messages import map_message

    mapped = map_message(
        message,
        community,
        source_ref=f"{sender}|{message.control_id}",
        received_at=format_instant(now_micros()),
    )
    return validated(mapped)


def read_and_map(raw: bytes, community: Community, sender: str) -> tuple[Message, Mapped]:
    """Parse with the feed's default character set, then map (HL7ParseError when either fails)."""
    message = parse(raw, _charset_for(community, sender))
    return message, map_parsed(message, community, sender)


def receive(
    engine: Engine,
    raw: bytes,
    community: Community,
    *,
    transport: str,
    peer: str | None = None,
    bound_sender: str | None = None,
) -> Receipt:
    """Read, map, store and acknowledge one message.  Never raises for bad input.

    ``bound_sender``: the member the connection is authenticated as (HTTP intake); a message
    naming another sender in MSH-4 is refused AR and recorded, as is one from an address the
    member's ``sources`` do not allow.

    Everything logged meanwhile carries the message's correlation id (sender and control id,
    then its inbox id); the received/failed counters are bumped here, whatever the transport.
    """
    header = msh_fields(raw)

    def msh(n: int) -> str:
        return header[n - 1].split("^")[0].strip() if len(header) >= n else ""

    sender, control_id = msh(4), msh(10)
    message_type = header[8] if len(header) >= 9 else ""
    with correlated(
        hl7_correlation_id(sender, control_id),
        sender=safe_id(sender),
        control_id=safe_id(control_id),
        transport=transport,
    ):
        receipt = _receive(
            engine,
            raw,
            header,
            community,
            transport=transport,
            peer=peer,
            bound_sender=bound_sender,
        )
        metrics.count_received(sender, message_type, receipt.code)
        bind(inbox_id=receipt.inbox_id)
        log.info(
            "received",
            extra={
                "message_type": metrics.message_type_label(message_type),
                "ack": receipt.code,
                "status": receipt.status,
            },
        )
        return receipt


def _receive(
    engine: Engine,
    raw: bytes,
    header: list[str],
    community: Community,
    *,
    transport: str,
    peer: str | None = None,
    bound_sender: str | None = None,
) -> Receipt:
    """``receive`` without its logging; ``header``: MSH's fields (``msh_fields``), which
    ``receive`` has read already."""
    from adapters.hl7v2.mapped import MappingError
    from adapters.hl7v2.messages import check_binding

    sender = header[3].split("^")[0].strip() if len(header) >= 4 else ""  # MSH-4
    message: Message | None = None
    try:
        message = parse(raw, _charset_for(community, sender))
        member = community.member(message.msh.value(4).strip())
        if member is not None:
            check_binding(message, member, peer=peer, bound_sender=bound_sender)
        elif bound_sender is not None:
            check_binding(message, community.members[bound_sender], peer=None,
                          bound_sender=bound_sender)  # fmt: skip
        mapped = map_parsed(message, community, sender)
    except HL7ParseError as exc:
        reject = isinstance(exc, MappingError) and exc.reject
        if message is None:  # the body is broken, but the header may still be answerable
            message = parse_header(raw, _charset_for(community, sender))
        # An unreadable header cannot be answered in kind: reject it outright.
        code = "AR" if reject or message is None else "AE"
        detail = ErrorDetail(
            str(exc), exc.code, exc.segment, exc.sequence, exc.field_no, severity="E"
        )
        error = f"{exc.code} {exc.segment}-{exc.field_no or ''}: {exc}"
        row = _row(raw, header, transport=transport, peer=peer, error=error)
        inbox_id = _store(engine, row)
        ack, sent = _ack(message, code, [detail], community, raw)
        return Receipt(ack, sent, inbox_id, "rejected", [detail])
    except Exception as exc:  # a mapper bug must not take the listener down
        log.error("mapping failed unexpectedly: %s", describe(exc))
        detail = ErrorDetail(
            "internal error while mapping; the message is kept for replay",
            APPLICATION_INTERNAL_ERROR,
        )
        error = f"internal: {type(exc).__name__}"
        row = _row(raw, header, transport=transport, peer=peer, error=error)
        inbox_id = _store(engine, row)
        ack, sent = _ack(message, "AE", [detail], community, raw)
        return Receipt(ack, sent, inbox_id, "rejected", [detail])

    row = _row(raw, header, transport=transport, peer=peer, mapped=mapped)
    row.update(_application_ack_request(message, community, sender))
    try:
        inbox_id = _store(engine, row)
    except IntegrityError:
        return _resend(engine, raw, row, message, community)
    announce_inbox(inbox_id, row["patient_key"])  # committed: with Redis, tell a worker
    ack, sent = _ack(message, "AA", list(mapped.warnings), community, raw)
    return Receipt(ack, sent, inbox_id, "pending", list(mapped.warnings))


def _application_ack_request(message: Message, community: Community, sender: str) -> dict[str, Any]:
    """Enhanced mode (MSH-15 set) with MSH-16 AL/ER/SU: where the application ACK goes."""
    wanted = message.msh.value(16).strip().upper()
    member = community.member(sender)
    if not message.msh.value(15).strip() or wanted not in ("AL", "ER", "SU"):
        return {}
    if member is None or not member.application_acks:
        log.info("%s asks for application ACKs but has no applicationAcks address", sender)
        return {}
    return {"app_ack": wanted, "reply_to": member.application_acks}


def _resend(
    engine: Engine,
    raw: bytes,
    row: dict[str, Any],
    message: Message,
    community: Community,
) -> Receipt:
    """The sender's control id is already in the inbox: a resend, or a reused control id."""
    with engine.connect() as conn:
        earlier = conn.execute(
            select(inbox.c.id, inbox.c.content_hash, inbox.c.status, inbox.c.patient_key).where(
                inbox.c.sender == row["sender"],
                inbox.c.control_id == row["control_id"],
                inbox.c.accepted.is_(True),
            )
        ).first()
    if earlier is not None and earlier.content_hash == row["content_hash"]:
        if earlier.status == "pending":
            # Its first announcement may have died with a killed intake process.
            announce_inbox(int(earlier.id), earlier.patient_key)
        ack, sent = _ack(message, "AA", [], community, raw)
        return Receipt(ack, sent, int(earlier.id), "duplicate")
    detail = ErrorDetail(
        f"control id {row['control_id']!r} was already used by another message from "
        f"{row['sender']}",
        DUPLICATE_KEY_IDENTIFIER,
        "MSH",
        1,
        10,
    )
    kept = {**row, "accepted": False, "status": "rejected", "error": detail.text}
    inbox_id = _store(engine, kept)
    ack, sent = _ack(message, "AE", [detail], community, raw)
    return Receipt(ack, sent, inbox_id, "rejected", [detail])
