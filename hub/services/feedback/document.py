"""One inpatient stay → its discharge summary document (pure: records in, FHIR JSON out).

The document is a Bundle of type ``document`` whose first entry is a Composition (LOINC
18842-5) with six sections, each with its entries and a Chinese narrative; every resource the
Composition references is in the Bundle, so the document stands alone in the archive.  The
Composition's ``date`` is the discharge: a month's documents are found with ``date=2026-10``
whatever day the run made or amended them (when, is in meta.lastUpdated and Bundle.timestamp).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timezone
from html import escape
from typing import Any

import orjson

from hub.search.values import from_micros
from hub.services.feedback.addressee import Addressee
from hub.services.feedback.model import (
    ADDRESSEE_EXT,
    BUNDLE_SYSTEM,
    DISCHARGE_SUMMARY,
    DOCUMENT_SYSTEM,
    SECTIONS,
    composition_id,
)
from hub.services.feedback.stays import StayRecords
from hub.services.recognition.marking import HR

XHTML = "http://www.w3.org/1999/xhtml"
_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
_EMPTY = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
# Observation interpretation codes that mean "not normal" (v3 ObservationInterpretation).
_ABNORMAL = frozenset({"A", "AA", "H", "HH", "HU", "L", "LL", "LU", "<", ">", "POS", "R", "W"})
# 离院方式 (WS 445 / 住院病案首页), as HIS send them in PV1-36.
DISPOSITION_TEXT = {
    "1": "医嘱离院", "2": "医嘱转院", "3": "医嘱转社区卫生服务机构/乡镇卫生院",
    "4": "非医嘱离院", "5": "死亡", "9": "其他",
}  # fmt: skip
_DIED = "5"


@dataclass(frozen=True)
class Document:
    composition: dict[str, Any]
    bundle: dict[str, Any]
    digest: str  # of the clinical content only: equal digests, nothing to reissue


def _div(*parts: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="{XHTML}">{"".join(parts)}</div>'}


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _concept_text(concept: dict[str, Any] | None) -> str:
    if not concept:
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or ():
        if coding.get("display") or coding.get("code"):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _local_time(text: str | None, tz: timezone) -> str:
    """'2026-10-02 10:30' in the community's zone, or the text as given if it is a date."""
    if not text:
        return ""
    if len(text) <= 10:
        return text
    from hub.search.values import date_range

    return from_micros(date_range(text, tz)[0]).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def patient_name(patient: dict[str, Any] | None) -> str:
    for name in (patient or {}).get("name") or ():
        if name.get("text"):
            return str(name["text"])
        joined = (name.get("family") or "") + "".join(name.get("given") or ())
        if joined:
            return joined
    return "（姓名不详）"


def _table(head: Iterable[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _diagnoses(records: StayRecords) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(admission, discharge) Conditions, by Encounter.diagnosis use and rank.

    DG1 type A is the admission diagnosis, F the final (discharge) one; a listed diagnosis
    with no use given counts as a discharge diagnosis, since it is what the stay ended with."""
    by_id = {c["id"]: c for c in records.conditions}
    admission: list[tuple[int, dict[str, Any]]] = []
    discharge: list[tuple[int, dict[str, Any]]] = []
    listed = set()
    for d in records.encounter.get("diagnosis") or ():
        cid = (d.get("condition") or {}).get("reference", "").split("/")[-1]
        if cid not in by_id:
            continue
        listed.add(cid)
        uses = {c.get("code") for c in (d.get("use") or {}).get("coding") or ()}
        rank = int(d.get("rank") or 99)
        (admission if "AD" in uses else discharge).append((rank, by_id[cid]))
    # An ADT replaces the Encounter, so the admission's DG1 (type A) is no longer listed once
    # the discharge arrives; its Condition still names the stay, provisional as A/W made it.
    for cid, c in by_id.items():
        if cid not in listed:
            codes = {x.get("code") for x in (c.get("verificationStatus") or {}).get("coding") or ()}
            (admission if "provisional" in codes else discharge).append((99, c))
    return [c for _, c in sorted(admission, key=lambda x: (x[0], x[1]["id"]))], [
        c for _, c in sorted(discharge, key=lambda x: (x[0], x[1]["id"]))
    ]


def _abnormal(obs: dict[str, Any]) -> bool:
    return any(
        c.get("code") in _ABNORMAL
        for i in obs.get("interpretation") or ()
        for c in i.get("coding") or ()
    )


def _value_text(obs: dict[str, Any]) -> str:
    if "valueQuantity" in obs:
        q = obs["valueQuantity"]
        return f"{q.get('comparator', '')}{q.get('value', '')} {q.get('unit', '')}".strip()
    for key in ("valueString", "valueDateTime", "valueBoolean", "valueInteger"):
        if key in obs:
            return str(obs[key])
    if "valueCodeableConcept" in obs:
        return _concept_text(obs["valueCodeableConcept"])
    if "valueAttachment" in obs:
        return "（附件）"
    return ""


def _range_text(obs: dict[str, Any]) -> str:
    for r in obs.get("referenceRange") or ():
        if r.get("text"):
            return str(r["text"])
        low, high = (r.get("low") or {}).get("value"), (r.get("high") or {}).get("value")
        if low is not None or high is not None:
            return f"{'' if low is None else low}-{'' if high is None else high}"
    return ""


def ordered_results(records: StayRecords) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Reports with their Observations: abnormal first, then recognised (HR), then by date."""

    def observations(report: dict[str, Any]) -> list[dict[str, Any]]:
        ids = [(r.get("reference") or "").split("/")[-1] for r in report.get("result") or ()]
        return [records.observations[i] for i in ids if i in records.observations]

    def key(item: tuple[dict[str, Any], list[dict[str, Any]]]) -> tuple[bool, bool, str, str]:
        report, obs = item
        recognised = any(
            t.get("code") == HR["code"] and t.get("system") == HR["system"]
            for t in (report.get("meta") or {}).get("tag") or ()
        )
        when = report.get("effectiveDateTime") or report.get("issued") or ""
        return (not any(map(_abnormal, obs)), not recognised, when, report["id"])

    return sorted(((r, observations(r)) for r in records.reports), key=key)


def _section(
    key: str, entries: list[dict[str, Any]], narrative: str, empty: str | None = None
) -> dict[str, Any]:
    _, code, title = next(s for s in SECTIONS if s[0] == key)
    section: dict[str, Any] = {
        "title": title,
        "code": {"coding": [code], "text": title},
        "text": _div(narrative),
    }
    if entries:
        section["entry"] = [{"reference": _ref(e)} for e in entries]
    else:
        section["emptyReason"] = {"coding": [{"system": _EMPTY, "code": empty or "nilknown"}]}
    return section


def _diagnosis_section(key: str, conditions: list[dict[str, Any]], tz: timezone) -> dict[str, Any]:
    rows = [
        [
            str(i),
            _concept_text(c.get("code")),
            next((x.get("code", "") for x in (c.get("code") or {}).get("coding") or ()), ""),
        ]
        for i, c in enumerate(conditions, 1)
    ]
    narrative = _table(["序号", "诊断", "编码"], rows) if rows else "<p>无记录</p>"
    return _section(key, conditions, narrative)


def _procedure_section(procedures: list[dict[str, Any]], tz: timezone) -> dict[str, Any]:
    rows = [
        [
            _concept_text(p.get("code")),
            _local_time(
                p.get("performedDateTime") or (p.get("performedPeriod") or {}).get("start"), tz
            ),
        ]
        for p in procedures
    ]
    narrative = _table(["手术及操作", "日期"], rows) if rows else "<p>住院期间无手术及操作</p>"
    return _section("procedures", procedures, narrative)


def _results_section(records: StayRecords, tz: timezone) -> tuple[dict[str, Any], list[Any]]:
    results = ordered_results(records)
    rows: list[list[str]] = []
    for report, observations in results:
        name = _concept_text(report.get("code"))
        if report.get("status") in ("corrected", "amended"):
            name += "（已更正）"  # the centre may have filed the earlier value
        when = _local_time(report.get("effectiveDateTime") or report.get("issued"), tz)
        abnormal = [o for o in observations if _abnormal(o)]
        for o in abnormal:
            flag = ",".join(
                c.get("code", "")
                for i in o.get("interpretation") or ()
                for c in i.get("coding") or ()
            )
            rows.append(
                [when, name, _concept_text(o.get("code")), _value_text(o), flag, _range_text(o)]
            )
        if not abnormal:
            conclusion = report.get("conclusion") or "未见异常"
            rows.append([when, name, "", str(conclusion), "", ""])
    narrative = (
        _table(["日期", "项目", "指标", "结果", "异常", "参考范围"], rows)
        if rows
        else "<p>住院期间无检查检验结果</p>"
    )
    entries = [r for r, _ in results]
    observations = [o for _, obs in results for o in obs]
    return _section("results", entries, narrative), [*entries, *observations]


def _disposition(encounter: dict[str, Any]) -> tuple[str | None, str]:
    concept = (encounter.get("hospitalization") or {}).get("dischargeDisposition")
    code = next((c.get("code") for c in (concept or {}).get("coding") or ()), None)
    return code, DISPOSITION_TEXT.get(code or "", _concept_text(concept) or "未记录")


def died(records: StayRecords) -> bool:
    code, _ = _disposition(records.encounter)
    return (
        code == _DIED
        or bool((records.patient or {}).get("deceasedDateTime"))
        or bool((records.patient or {}).get("deceasedBoolean"))
    )


def build(
    records: StayRecords,
    addressee: Addressee,
    *,
    tz: timezone,
    base: str,
    custodian: str,
    organizations: dict[str, dict[str, Any]],
    version: int,
    timestamp: str,
) -> Document:
    """The stay's document at ``version`` (1: final; later: amended)."""
    stay, enc, patient = records.stay, records.encounter, records.patient or {}
    care_plans = records.care_plans
    hospital = (enc.get("serviceProvider") or {}).get("reference", "")
    hospital_name = (organizations.get(hospital.split("/")[-1]) or {}).get("name", hospital)
    period = enc.get("period") or {}
    admission, discharge = _diagnoses(records)
    results, result_entries = _results_section(records, tz)
    code, disposition_text = _disposition(enc)
    dead = died(records)
    sections = [
        _diagnosis_section("admission", admission, tz),
        _diagnosis_section("discharge", discharge, tz),
        _procedure_section(records.procedures, tz),
        results,
        _section(
            "disposition",
            [enc],
            f"<p>离院方式：{escape(disposition_text)}；"
            f"出院时间：{_local_time(period.get('end'), tz)}</p>",
        ),
    ]
    if dead:
        advice = _section("advice", [], "<p>患者住院期间死亡，无出院医嘱及随访。</p>", "notasked")
    elif care_plans:
        items = "".join(
            f"<li>{escape(p.get('description') or _concept_text((p.get('category') or [{}])[0]))}"
            "</li>"
            for p in care_plans
        )
        advice = _section("advice", care_plans, f"<ul>{items}</ul>")
    else:
        advice = _section(
            "advice", [], "<p>医院未提供出院医嘱，请家庭医生按常规随访。</p>", "unavailable"
        )
    sections.append(advice)
    name = patient_name(patient)
    comp: dict[str, Any] = {
        "resourceType": "Composition",
        "id": composition_id(stay.encounter_id),
        "identifier": {"system": DOCUMENT_SYSTEM, "value": stay.encounter_id},
        "status": "final" if version == 1 else "amended",
        "type": {"coding": [DISCHARGE_SUMMARY], "text": "出院小结"},
        "subject": {"reference": f"Patient/{stay.patient_id}", "display": name},
        "encounter": {"reference": f"Encounter/{stay.encounter_id}"},
        "date": period["end"],
        "author": [{"reference": hospital, "display": hospital_name}],
        "title": f"出院小结（住院信息反馈）：{name}，{hospital_name}",
        "confidentiality": "N",
        "attester": [{"mode": "official", "time": period["end"], "party": {"reference": hospital}}],
        "custodian": {"reference": custodian},
        "event": [
            {
                "code": [{"text": "住院"}],
                "period": {k: period[k] for k in ("start", "end") if k in period},
                "detail": [{"reference": f"Encounter/{stay.encounter_id}"}],
            }
        ],
        "section": sections,
        "text": _div(
            f"<p>{escape(name)}，{escape(hospital_name)}住院，"
            f"{_local_time(period.get('start'), tz) or '入院时间不详'} 入院，"
            f"{_local_time(period.get('end'), tz)} 出院（{escape(disposition_text)}）。</p>"
        ),
    }
    if addressee.org_id:
        comp["extension"] = [
            {
                "url": ADDRESSEE_EXT,
                "valueReference": {"reference": f"Organization/{addressee.org_id}"},
            }
        ]
    if version > 1:
        comp["relatesTo"] = [
            {
                "code": "replaces",
                "targetReference": {
                    "reference": f"Composition/{comp['id']}/_history/{version - 1}"
                },
            }
        ]
    wanted_orgs = [hospital, custodian] + (
        [f"Organization/{addressee.org_id}"] if addressee.org_id else []
    )
    orgs = []
    for ref in dict.fromkeys(wanted_orgs):
        if (org := organizations.get(ref.split("/")[-1])) is not None:
            orgs.append(org)
    resources = [
        patient or None,
        enc,
        *orgs,
        *admission,
        *discharge,
        *records.procedures,
        *result_entries,
        *care_plans,
    ]
    seen: set[str] = set()
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base}/Composition/{comp['id']}", "resource": comp}
    ]
    for resource in resources:
        if resource is None or _ref(resource) in seen:
            continue
        seen.add(_ref(resource))
        entries.append({"fullUrl": f"{base}/{_ref(resource)}", "resource": resource})
    digest = _digest(comp, entries[1:], code)
    bundle = {
        "resourceType": "Bundle",
        "id": comp["id"],
        "identifier": {"system": BUNDLE_SYSTEM, "value": f"{stay.encounter_id}-v{version}"},
        "type": "document",
        "timestamp": timestamp,
        "entry": entries,
    }
    return Document(comp, bundle, digest)


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without what changes when nothing clinical did: its version stamps, and a
    Patient's links (the patient index moves them as records are matched)."""
    out = {k: v for k, v in resource.items() if k not in ("meta", "link")}
    tags = (resource.get("meta") or {}).get("tag")
    if tags:
        out["tags"] = tags  # the HR mark orders the results
    return out


def _digest(comp: dict[str, Any], entries: list[dict[str, Any]], disposition: str | None) -> str:
    """What the document says, without what a reissue itself changes (status, version link):
    a rerun on unchanged data gives the same digest."""
    body = {k: v for k, v in comp.items() if k not in ("status", "relatesTo", "meta")}
    stripped = [_content(e["resource"]) for e in entries]
    raw = orjson.dumps([body, stripped, disposition], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()
