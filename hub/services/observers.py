"""The services that watch a unit of work's writes, behind the Writer's one observer slot."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Connection

from hub.store.locks import lock_keys
from hub.store.repository import WriteObserver, Writer

T = TypeVar("T")


class Observers:
    """Dispatches each write to the services that watch its resource type."""

    def __init__(self, services: list[WriteObserver]) -> None:
        self.services = services
        self.types = frozenset(t for s in services for t in s.types)

    def get(self, kind: type[T]) -> T:
        for service in self.services:
            if isinstance(service, kind):
                return service
        raise LookupError(kind.__name__)

    def take_warnings(self) -> list[str]:
        """What the services warned about since last asked (an invalid resident ID)."""
        out: list[str] = []
        for service in self.services:
            found = getattr(service, "warnings", None)
            if found:
                out.extend(found)
                found.clear()
        return out

    def lock_ahead(self, conn: Connection, writes: list[tuple[dict[str, Any], str, bool]]) -> None:
        """Take the locks the services will want while these (resource, id, whether it is
        being created) are written, all in one sorted statement (hub.store.locks), then let
        the services read what they will need under them."""
        exclusive: list[str] = []
        shared: list[str] = []
        for service in self.services:
            ahead = getattr(service, "lock_ahead", None)
            if ahead is not None:
                more, more_shared = ahead(
                    [w for w in writes if w[0]["resourceType"] in service.types]
                )
                exclusive.extend(more)
                shared.extend(more_shared)
        lock_keys(conn, exclusive, shared)
        for service in self.services:
            if (after := getattr(service, "locked_ahead", None)) is not None:
                after()

    def before_write(self, writer: Writer, resource: dict[str, Any], res_id: str) -> dict[str, Any]:
        for service in self.services:
            if resource["resourceType"] in service.types:
                resource = service.before_write(writer, resource, res_id)
        return resource

    def after_delete(self, writer: Writer, res_type: str, res_id: str) -> None:
        for service in self.services:
            if res_type in service.types:
                service.after_delete(writer, res_type, res_id)

    def before_flush(self, writer: Writer) -> None:
        for service in self.services:
            service.before_flush(writer)


def observers(conn: Connection) -> Observers:
    from hub.services.audit_trail import AuditTrail
    from hub.services.identity.linker import PatientIndex
    from hub.services.recognition.decisions import RecognitionDecisions
    from hub.services.recognition.marking import RecognitionMark
    from hub.services.referral.observer import ReferralWorkflow
    from hub.services.routing.router import OrderRouter
    from hub.services.subscriptions.observer import SubscriptionMatcher

    # The matcher comes last: it sees each resource as the others left it (the HR tag set),
    # and its before_flush runs after theirs, which may write resources of their own.
    return Observers(
        [
            PatientIndex(conn),
            RecognitionMark(conn),
            RecognitionDecisions(conn),
            # After the index (an admission is matched to a referral through it), before
            # the matcher (which announces the Tasks it writes).
            ReferralWorkflow(conn),
            # Before the matcher too: it announces the routing Tasks the router writes.
            OrderRouter(conn),
            SubscriptionMatcher(conn),
            # Last: its event, written as the unit flushes, names what every service before
            # it wrote for the caller too (it writes nothing the others watch).
            AuditTrail(conn),
        ]
    )
