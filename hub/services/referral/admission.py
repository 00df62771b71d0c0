"""The admission and discharge of a referred patient, as the receiving member's ADT tells it.

An Encounter at the receiving member (its ``serviceProvider``), in one of the admission
statuses of the rules (A01/A04 in-progress, A05 planned), for any record of the referred
person (the patient index), is linked to that person's newest open referral to the member:
``Encounter.basedOn`` names the ServiceRequest (R4 Encounter.basedOn, Reference
(ServiceRequest)), and the Task moves on as the rules say (accepted → in-progress).  A
discharge (A03, finished) of a linked Encounter moves it again (up-referrals: → completed).

Every ADT replaces the whole Encounter, so an Encounter already linked gets its ``basedOn``
back on each write.  Matching waits for ``before_flush``, when every Patient of the unit has
been indexed, so the order of entries in a transaction does not matter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.services import context
from hub.services.identity import lookup
from hub.services.referral import records, workflow
from hub.services.referral.model import moment, ref_id, with_based_on
from hub.services.referral.records import Referral
from hub.services.referral.workflow import Move
from hub.store.repository import Writer

if TYPE_CHECKING:
    from hub.services.referral.observer import ReferralWorkflow

ADMISSION_OUTPUT = {"text": "入院 admission at the receiving member"}


def on_encounter(flow: ReferralWorkflow, encounter: dict[str, Any], res_id: str) -> dict:
    """Keep an existing link; queue admissions and discharges for the flush."""
    linked = records.by_encounter(flow.conn, res_id)
    if linked is not None:
        encounter = with_based_on(encounter, linked.request_id)
    status = encounter.get("status")
    rules = flow.rules
    if status in rules.admission.encounter_statuses or (
        linked is not None and status in rules.discharge.encounter_statuses
    ):
        flow.encounters.append((res_id, encounter, linked))
    return encounter


def _same_person(flow: ReferralWorkflow, patient_id: str) -> set[str]:
    """Every record id of the person ``patient_id`` belongs to (the master's too)."""
    person = lookup.person_of(flow.conn, patient_id)
    if person is None:
        return {patient_id}
    return {patient_id, person, *lookup.records_of_person(flow.conn, person)}


def _link(
    flow: ReferralWorkflow, writer: Writer, encounter_id: str, encounter: dict[str, Any]
) -> Referral | None:
    member = ref_id(encounter.get("serviceProvider"), "Organization")
    patient = ref_id(encounter.get("subject"), "Patient")
    if member is None or patient is None:
        return None
    # Most admissions are of nobody referred: ask the small table first, the index after.
    waiting = records.open_to(flow.conn, member, flow.rules.admission.link_while)
    if not waiting:
        return None
    person = _same_person(flow, patient)
    starts = moment((encounter.get("period") or {}).get("start"), context.community().tz)
    lead = int(flow.rules.admission.lead_hours * workflow.HOUR_US)
    referral = next(
        (
            r
            for r in waiting
            if r.patient_id in person and (starts is None or starts >= r.requested_at - lead)
        ),
        None,
    )
    if referral is None:
        return None
    if not records.link_encounter(flow.conn, referral.request_id, encounter_id):
        return None
    writer.rewrite(with_based_on(encounter, referral.request_id), encounter_id)
    return referral


def settle(
    flow: ReferralWorkflow,
    writer: Writer,
    encounter_id: str,
    encounter: dict[str, Any],
    linked: Referral | None,
) -> None:
    """Link a new admission to its referral and move the referral's Task as the rules say;
    ``linked``: the referral the Encounter was linked to when written."""
    rules = flow.rules
    status = encounter.get("status")
    output = None
    if linked is None:
        linked = _link(flow, writer, encounter_id, encounter)
        if linked is None:
            return
        output = {
            "type": ADMISSION_OUTPUT,
            "valueReference": {"reference": f"Encounter/{encounter_id}"},
        }
    period = encounter.get("period") or {}
    if status in rules.admission.encounter_statuses:
        move, when = rules.admission, period.get("start")
    elif status in rules.discharge.encounter_statuses:
        move, when = rules.discharge, period.get("end")
    else:
        return
    target = workflow.event_move(move, linked.status, linked.direction)
    if target is None and output is None:
        return
    # Not in a state the event moves (say, not yet accepted): linked, and the Task shows the
    # admission in its output, but its state is left to the people.
    at = moment(when, context.community().tz)
    flow.moves.append(Move(linked.task_id, target or linked.status, at, output))
