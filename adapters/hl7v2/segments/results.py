"""OBR → DiagnosticReport and OBX (+ NTE) → Observation, per the guide's OBR[DiagnosticReport],
OBX[Observation] and NTE[Observation] maps."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.errors import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING
from adapters.hl7v2.mapped import Context
from adapters.hl7v2.parse import Segment
from adapters.hl7v2.segments.encounter import EncounterRef
from adapters.hl7v2.segments.groups import OrderGroup, Result
from adapters.hl7v2.segments.orders import OrderIds, notes
from adapters.hl7v2.segments.patient import PatientRef
from adapters.hl7v2.segments.people import practitioner
from adapters.hl7v2.segments.values import (
    TEXT_TYPES,
    attachment,
    observation_value,
    reference_range,
    unit,
)

_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
# Table 0078 codes that v3-ObservationInterpretation has with the same meaning.
_V3_FLAGS = frozenset(
    "L H LL HH N A AA < > U D B W S R I NEG POS IND DET ND E EX HX LX NR RR MS VS HU LU".split()
)
# ObservationResultStatusCodesInterpretation (OBX-11); the guide leaves I, R, S, V, U, B, N
# and O blank: pending ones are registered, unverified/partial ones preliminary, verified or
# changed-to-final ones final, an appended report amended, "not asked" cancelled.
_OBS_STATUS = {
    "A": "amended", "B": "amended", "C": "corrected", "D": "entered-in-error", "F": "final",
    "I": "registered", "N": "cancelled", "O": "registered", "P": "preliminary",
    "R": "preliminary", "S": "preliminary", "U": "final", "V": "final", "W": "entered-in-error",
    "X": "cancelled",
}  # fmt: skip
# ResultStatus[Non-Queries] (OBR-25); A "some results" → partial, M "corrected, not final"
# → corrected, N "procedure done, results pending" → registered (blank in the guide).
_REPORT_STATUS = {
    "O": "registered", "I": "registered", "S": "registered", "A": "partial",
    "P": "preliminary", "C": "corrected", "R": "partial", "F": "final", "X": "cancelled",
    "M": "corrected", "N": "registered",
}  # fmt: skip
_IMAGING_SECTIONS = frozenset("RAD CT CUS MR NMR NMS OUS RUS VUS XRC RX US IMG".split())


def report_category(ctx: Context, group: OrderGroup) -> str:
    section = group.obr.value(24).strip().upper() if group.obr else ""
    if section:
        return "RAD" if section in _IMAGING_SECTIONS else section
    return "RAD" if ctx.sender.kind == "imaging-centre" else "LAB"


def _performer(ctx: Context, obx: Segment | None) -> dict[str, str]:
    """OBX-23 performing organisation when it names a member, else the sender."""
    if obx is not None:
        for candidate in (obx.value(23, 10), obx.value(23, 3), obx.value(23, 1)):
            member = ctx.community.member(candidate.strip())
            if member is not None:
                return {"reference": member.reference, "display": member.name}
    return {"reference": ctx.sender.reference, "display": ctx.sender.name}


def _interpretation(obx: Segment) -> list[dict[str, Any]]:
    out = []
    for rep in range(len(obx.repetitions(8))):
        code = obx.value(8, rep=rep).strip()
        if not code:
            continue
        system = _INTERPRETATION if code.upper() in _V3_FLAGS else f"{dt.V2}0078"
        out.append(dt.coded(system, code.upper() if system == _INTERPRETATION else code))
    return out


def _observation(
    ctx: Context,
    result: Result,
    group: OrderGroup,
    order_number: str,
    subject: dict[str, str],
    category: str | None,
) -> tuple[dict[str, Any], str]:
    """One OBX → Observation; ``category`` None for an answer given at order entry."""
    obx = result.obx
    code = ctx.test_code(obx, 3)
    if code is None and group.obr is not None and category is not None:
        # Report text lines (TX/FT, ED) without OBX-3 are the report of the order itself.
        code = ctx.cwe(group.obr, 4)
    if code is None:
        raise ctx.error(obx, 3, "observation identifier is empty", REQUIRED_FIELD_MISSING)
    result_status = obx.value(11).strip().upper()
    if category is None and result_status in ("", "O"):
        # An order-entry answer is sent as O ("order detail only, no result") or blank, yet it
        # is what the patient said when the order was placed: final, not registered.
        status = "final"
    else:
        status = _OBS_STATUS.get(result_status, "unknown")
    value = f"{order_number}|{obx.value(3).strip()}|{obx.value(4).strip()}"
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": ctx.sender.system("obx"), "value": value}],
        "status": status,
    }
    if category is not None:
        obs["category"] = [
            dt.coded(
                "http://terminology.hl7.org/CodeSystem/observation-category",
                "imaging" if category == "RAD" else "laboratory",
            )
        ]
    obs["code"] = code
    obs.update(subject)
    if category is not None:
        effective = ctx.ts(obx, 14) or (ctx.ts(group.obr, 7) if group.obr else None)
    else:  # asked when the order was placed (ORC-9), not when the specimen was taken (OBR-7)
        effective = ctx.ts(obx, 14) or (ctx.ts(group.orc, 9) if group.orc else None)
    if effective:
        obs["effectiveDateTime"] = effective
    performers = [_performer(ctx, obx)]
    if who := practitioner(ctx, obx, 16):
        performers.insert(0, who)
    obs["performer"] = performers
    try:
        found = observation_value(ctx, obx)
    except ValueError as exc:
        raise ctx.error(obx, 5, str(exc)) from exc
    if found:
        obs[found[0]] = found[1]
    if flags := _interpretation(obx):
        obs["interpretation"] = flags
    if annotations := notes(ctx, result.notes):
        obs["note"] = annotations
    try:
        ranges = reference_range(obx, unit(obx))
    except ValueError:
        ranges = {"text": obx.value(7).strip()}
    if ranges:
        obs["referenceRange"] = [ranges]
    return obs, value


def _write_observations(
    ctx: Context,
    results: list[Result],
    group: OrderGroup,
    order_number: str,
    subject: dict[str, Any],
    category: str | None,
    specimen_urls: list[str],
) -> list[str]:
    """PUT each OBX's Observation by "<order number>|<OBX-3>|<OBX-4>"; their fullUrls."""
    urls = []
    by_value: dict[str, dict[str, Any]] = {}
    for result in results:
        obs, value = _observation(ctx, result, group, order_number, subject, category)
        if specimen_urls:
            obs["specimen"] = {"reference": specimen_urls[0]}
        earlier = by_value.get(value)
        if earlier is not None and result.obx.value(2).strip().upper() in TEXT_TYPES:
            # A report split over several OBX lines with one code and no sub-id: one text.
            text = obs.get("valueString")
            if text:
                joined = (earlier.get("valueString", "") + "\n" + text).strip()
                earlier["valueString"] = joined
            continue
        if earlier is not None:
            # Same code and sub-id twice: the set id tells them apart (deterministically).
            value = f"{value}#{result.obx.value(1).strip()}"
            obs["identifier"][0]["value"] = value
        by_value[value] = obs
        urls.append(ctx.put(obs, ctx.sender.system("obx"), value))
    return urls


def map_order_answers(
    ctx: Context,
    group: OrderGroup,
    order_number: str,
    patient: PatientRef,
    encounter: EncounterRef | None,
) -> list[str]:
    """ORM/OML OBX (ask-at-order-entry answers: 空腹, 末次月经 ...) → Observations that the
    ServiceRequest lists as supportingInfo, per the guide's ORM_O01 and OML_O21 maps.

    OBX after an SPM describe the specimen: the guide maps them to nothing, and neither does
    this.  ED values have no place on an R4 Observation or ServiceRequest: skipped, with a
    warning, the message itself staying in the inbox.
    """
    subject: dict[str, Any] = {"subject": {"reference": patient.full_url}}
    if encounter:
        subject["encounter"] = {"reference": encounter.full_url}
    answers = []
    for result in group.results:
        if result.specimen is not None:
            continue
        if result.obx.value(2).strip().upper() == "ED":
            ctx.warn(result.obx, 5, "an ED value in an order is not mapped", DATA_TYPE_ERROR)
        else:
            answers.append(result)
    return _write_observations(ctx, answers, group, order_number, subject, None, [])


def map_report(
    ctx: Context,
    group: OrderGroup,
    ids: OrderIds,
    patient: PatientRef,
    encounter: EncounterRef | None,
    request_url: str | None,
    specimen_urls: list[str],
) -> None:
    """One DiagnosticReport per OBR, PUT by the filler number; its OBX as Observations."""
    obr = group.obr
    if obr is None:
        return
    key = ids.filler or ids.placer
    if key is None:
        raise ctx.error(obr, 3, "filler and placer order numbers are empty", REQUIRED_FIELD_MISSING)
    subject: dict[str, Any] = {"subject": {"reference": patient.full_url}}
    if encounter:
        subject["encounter"] = {"reference": encounter.full_url}
    category = report_category(ctx, group)
    forms: list[dict[str, Any]] = []
    observed = []
    for result in group.results:
        if result.obx.value(2).strip().upper() == "ED":
            # Encapsulated documents (PDF reports ...) → presentedForm: R4 Observation has no
            # valueAttachment, so ED does not become an Observation here.
            try:
                forms.append(attachment(result.obx))
            except ValueError as exc:
                raise ctx.error(result.obx, 5, str(exc)) from exc
        else:
            observed.append(result)
    results = _write_observations(ctx, observed, group, key[1], subject, category, specimen_urls)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": key[0], "value": key[1]}],
        "status": _REPORT_STATUS.get(obr.value(25).strip().upper(), "unknown"),
        "category": [dt.coded(f"{dt.V2}0074", category)],
        "code": ctx.test_code(obr, 4) or {"text": "unknown"},
        **subject,
    }
    if request_url:
        report["basedOn"] = [{"reference": request_url}]
    if effective := ctx.ts(obr, 7):
        report["effectiveDateTime"] = effective
    if issued := ctx.ts(obr, 22, instant=True):
        report["issued"] = issued
    first_obx = group.results[0].obx if group.results else None
    report["performer"] = [_performer(ctx, first_obx)]
    if specimen_urls:
        report["specimen"] = [{"reference": u} for u in specimen_urls]
    if forms:
        report["presentedForm"] = forms
    if results:
        report["result"] = [{"reference": u} for u in results]
    # NTE after OBR → conclusion: the guide puts it in a note, but R4 DiagnosticReport has no
    # note element; the conclusion is where readers look for the report's free text.
    if texts := [n["text"] for n in notes(ctx, group.notes)]:
        report["conclusion"] = "\n".join(texts)
    ctx.put(report, *key)
