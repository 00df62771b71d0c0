"""Two-way referral (双向转诊) inside the unit of work, whichever way the writes arrive.

- A referral ServiceRequest (category SNOMED CT 3457005) written ``active`` for the first
  time opens a referral: its direction is checked (or inferred from the members' kinds), the
  patient's recent results and, going down, the discharge document are added to its
  supportingInfo, and a Task (intent order, focus the request, owner the receiving member,
  due by the rules) is created in ``requested``.
- Each later version of that Task must make a transition the rules allow, else 422; each
  step is recorded with its time, and the ServiceRequest follows (revoked, completed).
  Revoking the ServiceRequest cancels the Task.
- Encounters are watched for the admission and discharge of a referred patient
  (hub.services.referral.admission).

Writes of its own (the Task, the request's status, moves caused by an admission) are made in
``before_flush`` through the same writer, so they pass the same checks and the Subscription
matcher, which comes after this service, announces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from hub.fhir.errors import Unprocessable
from hub.services import context
from hub.services.referral import admission, records, supporting, workflow
from hub.services.referral.model import (
    build_task,
    instant,
    is_referral,
    moment,
    ref_id,
    stated_direction,
    with_direction,
)
from hub.services.referral.records import Referral
from hub.services.referral.rules import ReferralRules, load_rules
from hub.services.referral.workflow import Move
from hub.store.repository import Writer, new_id, read_current


@dataclass
class ReferralWorkflow:
    conn: Connection
    types: frozenset[str] = frozenset({"ServiceRequest", "Task", "Encounter"})
    warnings: list[str] = field(default_factory=list)
    new_tasks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    request_status: list[tuple[str, str]] = field(default_factory=list)  # (request id, status)
    encounters: list[tuple[str, dict[str, Any], Referral | None]] = field(default_factory=list)
    _rules: ReferralRules | None = None

    @property
    def rules(self) -> ReferralRules:
        # Read on first use: most units of work never touch a referral.
        if self._rules is None:
            self._rules = load_rules()
        return self._rules

    def before_write(self, writer: Writer, resource: dict[str, Any], res_id: str) -> dict:
        res_type = resource["resourceType"]
        if res_type == "ServiceRequest":
            return self._request(writer, resource, res_id)
        if res_type == "Task":
            return self._task(writer, resource, res_id)
        return admission.on_encounter(self, resource, res_id)

    def after_delete(self, writer: Writer, res_type: str, res_id: str) -> None:
        # A deleted referral request is withdrawn like a revoked one, so no admission is
        # linked to it later; its recorded steps stay for the figures.
        if res_type == "ServiceRequest":
            held = records.by_request(self.conn, res_id)
            if held is not None and held.status not in self.rules.terminal:
                self._cancel(held, res_id, "deleted")

    def before_flush(self, writer: Writer) -> None:
        # Each write below may queue more (a Task step → the request's status): run dry.
        while self.new_tasks or self.encounters or self.moves or self.request_status:
            new_tasks, self.new_tasks = self.new_tasks, []
            for task_id, task in new_tasks:
                writer.create(task, task_id)
            encounters, self.encounters = self.encounters, []
            for encounter_id, encounter, linked in encounters:
                admission.settle(self, writer, encounter_id, encounter, linked)
            moves, self.moves = self.moves, []
            for move in moves:
                self._apply_move(writer, move)
            statuses, self.request_status = self.request_status, []
            for request_id, status in statuses:
                self._set_request_status(writer, request_id, status)

    # -- the ServiceRequest --

    def _request(self, writer: Writer, request: dict[str, Any], res_id: str) -> dict:
        rules = self.rules
        if not is_referral(request, rules):
            return request
        held = records.by_request(self.conn, res_id)
        if held is None:
            # A draft is not sent yet; the referral opens when it turns active.
            return (
                self._open(writer, request, res_id)
                if request.get("status") == "active"
                else request
            )
        status = request.get("status")
        if status in rules.cancel_on_request and held.status not in rules.terminal:
            self._cancel(held, res_id, str(status))
        return request

    def _cancel(self, held: Referral, request_id: str, why: str) -> None:
        """The request was withdrawn: cancel its Task, if the rules allow it from here."""
        rules = self.rules
        try:
            workflow.check_transition(rules, held.status, {"status": rules.cancel_to}, held.task_id)
        except Unprocessable as exc:
            raise Unprocessable(
                f"ServiceRequest/{request_id} cannot be {why}: {exc}",
                code="business-rule",
                expression=["ServiceRequest.status"],
            ) from exc
        self.moves.append(Move(held.task_id, rules.cancel_to))

    def _organization(self, reference: Any, where: str) -> str:
        """The member organisation a requester/performer reference stands for."""
        org = ref_id(reference, "Organization")
        if org is None and (role := ref_id(reference, "PractitionerRole")) is not None:
            stored = read_current(self.conn, "PractitionerRole", role)
            content = orjson.loads(stored.content) if stored and stored.content else {}
            org = ref_id(content.get("organization"), "Organization")
        members = {m.org_id: m for m in context.community().members.values()}
        if org is None or org not in members:
            raise Unprocessable(
                f"{where} must be a member of the community (Organization/<member>, or a "
                "PractitionerRole of one)",
                code="required",
                expression=[where],
            )
        return org

    def _open(self, writer: Writer, request: dict[str, Any], res_id: str) -> dict:
        rules, community = self.rules, context.community()
        patient = ref_id(request.get("subject"), "Patient")
        if patient is None:
            raise Unprocessable(
                "a referral's subject must be a Patient",
                code="required",
                expression=["ServiceRequest.subject"],
            )
        requester = self._organization(request.get("requester"), "ServiceRequest.requester")
        performers = request.get("performer") or []
        if len(performers) != 1:
            raise Unprocessable(
                "a referral names exactly one receiving organisation in performer",
                code="required",
                expression=["ServiceRequest.performer"],
            )
        performer = self._organization(performers[0], "ServiceRequest.performer[0]")
        kinds = {m.org_id: m.kind for m in community.members.values()}
        direction = workflow.direction_of(
            rules, stated_direction(request, rules), kinds[requester], kinds[performer]
        )
        priority = workflow.priority_of(rules, request)
        now = writer.last_updated
        requested_at = workflow.event_time(moment(request.get("authoredOn"), community.tz), 0, now)
        due = workflow.due_at(rules, requested_at, direction, priority)
        request = with_direction(request, rules, direction)
        found = supporting.recent_results(self.conn, rules, patient, requested_at, community)
        if direction in rules.discharge_document:
            document = supporting.discharge_document(
                self.conn, rules, request, patient, requester, community
            )
            if document is None:
                self.warnings.append(
                    f"no finished stay of the patient at {requester} was found; the "
                    "down-referral carries no discharge document"
                )
            else:
                found.insert(0, document)
        request = supporting.with_supporting(request, found)
        task_id = new_id()
        referral = Referral(
            request_id=res_id,
            task_id=task_id,
            direction=direction,
            requester=requester,
            performer=performer,
            patient_id=patient,
            priority=priority,
            green=rules.is_green(direction, priority),
            status=rules.initial,
            requested_at=requested_at,
            due_at=due,
            updated_at=requested_at,
        )
        records.open_referral(self.conn, referral, now)
        names = {m.org_id: m.name for m in community.members.values()}
        self.new_tasks.append(
            (
                task_id,
                build_task(
                    rules,
                    request_id=res_id,
                    subject=request["subject"],
                    requester=requester,
                    performer=performer,
                    direction=direction,
                    priority=priority,
                    requested_at=requested_at,
                    due_at=due,
                    tz=community.tz,
                    names=names,
                ),
            )
        )
        return request

    def _set_request_status(self, writer: Writer, request_id: str, status: str) -> None:
        if writer.written("ServiceRequest", request_id):
            return  # the sender wrote it in this unit (it revoked the request itself)
        stored = read_current(self.conn, "ServiceRequest", request_id)
        if stored is None or stored.content is None:
            return
        request = orjson.loads(stored.content)
        if request.get("status") == status:
            return
        request.pop("meta", None)
        writer.update({**request, "status": status}, request_id)

    # -- the Task --

    def _task(self, writer: Writer, task: dict[str, Any], res_id: str) -> dict:
        held = records.by_task(self.conn, res_id)
        if held is None:
            return task
        if ref_id(task.get("focus"), "ServiceRequest") != held.request_id:
            raise Unprocessable(
                f"Task/{res_id} carries the referral ServiceRequest/{held.request_id}; its "
                "focus cannot change",
                code="business-rule",
                expression=["Task.focus"],
            )
        rules = self.rules
        step = workflow.check_transition(rules, held.status, task, res_id)
        if step is None:
            return task
        tz = context.community().tz
        now = writer.last_updated
        at = workflow.event_time(moment(task.get("lastModified"), tz), held.updated_at, now)
        records.record_step(self.conn, held.request_id, step.target, at, now)
        task = {**task, "lastModified": instant(at, tz)}
        task = self._execution_period(task, step.target, at, tz)
        if (status := rules.request_status.get(step.target)) is not None:
            self.request_status.append((held.request_id, status))
        return task

    def _execution_period(self, task: dict[str, Any], state: str, at: int, tz: Any) -> dict:
        # Task.executionPeriod: from the start of the work (in-progress) to its end.
        period = dict(task.get("executionPeriod") or {})
        if state == "in-progress":
            period.setdefault("start", instant(at, tz))
        elif state in self.rules.terminal and "start" in period:
            period.setdefault("end", instant(at, tz))
        else:
            return task
        return {**task, "executionPeriod": period}

    def _apply_move(self, writer: Writer, move: Move) -> None:
        if writer.written("Task", move.task_id):
            return  # the Task was written in this unit already; the sender's version stands
        stored = read_current(self.conn, "Task", move.task_id)
        if stored is None or stored.content is None:
            return
        task = orjson.loads(stored.content)
        task.pop("meta", None)
        if task.get("status") != move.to:
            task["status"] = move.to
            if move.at is not None:
                task["lastModified"] = instant(move.at, context.community().tz)
        if move.output is not None and move.output not in (task.get("output") or []):
            task["output"] = [*(task.get("output") or []), move.output]
        writer.update(task, move.task_id)
