"""HL7 v2 messages of a month in the lead hospital and the lab centre, for the feedback tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

_SEQ = count(1)


@dataclass
class Person:
    mrn: str
    name: str
    birth: str  # YYYYMMDD
    sex: str
    resident_id: str
    gp: str | None = None  # PD1-3 member code
    division: str = ""  # PID-11 XAD.9 (行政区划代码)
    died: str | None = None  # PID-29


@dataclass
class Stay:
    visit: str
    admitted: str  # YYYYMMDDHHMMSS (+08:00 by the MSH)
    discharged: str | None = None
    ward: str = "心内科^301^12"
    disposition: str = "1"
    admission_dx: list[tuple[str, str]] = field(
        default_factory=lambda: [("I20.0", "不稳定型心绞痛")]
    )
    discharge_dx: list[tuple[str, str]] = field(
        default_factory=lambda: [("I20.0", "不稳定型心绞痛")]
    )
    procedures: list[tuple[str, str, str]] = field(default_factory=list)


def _msh(sender: str, app: str, kind: str, at: str) -> str:
    control = f"{sender}-{next(_SEQ):06d}"
    head = f"MSH|^~\\&|{app}|{sender}|YGT_HUB|YGT|{at}+0800||{kind}|{control}|P|2.5.1"
    return head + "||||||UNICODE UTF-8"


def _pid(p: Person, sender: str = "XRMYY") -> str:
    fields = ["PID", "1", "", f"{p.mrn}^^^{sender}^MR~{p.resident_id}^^^^NNCHN", "", p.name, ""]
    fields += [p.birth, p.sex, "", ""]
    fields.append(f"幸福路1号^^县城^浙江省^^CHN^H^^{p.division}" if p.division else "")
    if p.died:
        fields += [""] * (29 - len(fields)) + [p.died, "Y"]
    return "|".join(fields)


def _pv1(s: Stay, *, end: bool) -> str:
    fields = ["PV1", "1", "I", f"{s.ward}^XRMYY", "", "", "", "D1001^王^建国"]
    fields += [""] * (19 - len(fields)) + [f"{s.visit}^^^XRMYY"]
    fields += [""] * (36 - len(fields)) + [s.disposition if end else ""]
    fields += [""] * (44 - len(fields)) + [s.admitted, (s.discharged or "") if end else ""]
    return "|".join(fields)


def adt(event: str, p: Person, s: Stay, at: str) -> bytes:
    end = event == "A03" or (event == "A08" and s.discharged is not None)
    segs = [_msh("XRMYY", "HIS", f"ADT^{event}^ADT_{event}", at), f"EVN|{event}|{at}", _pid(p)]
    if p.gp:
        segs.append(f"PD1|||{p.gp}^^{p.gp}")
    segs.append(_pv1(s, end=end))
    dx = s.discharge_dx if end else s.admission_dx
    kind = "F" if end else "A"
    for i, (code, text) in enumerate(dx, 1):
        segs.append(f"DG1|{i}||{code}^{text}^I10||{at}|{kind}|||||||||{i}")
    if end:
        for i, (code, text, when) in enumerate(s.procedures, 1):
            segs.append(f"PR1|{i}||{code}^{text}^ICD9CM||{when}")
    return "\r".join(segs).encode() + b"\r"


def transfer(p: Person, s: Stay, at: str, to_ward: str) -> bytes:
    before = s.ward
    s.ward = to_ward
    pv1 = _pv1(s, end=False).split("|")
    pv1[6] = f"{before}^XRMYY"
    segs = [_msh("XRMYY", "HIS", "ADT^A02^ADT_A02", at), f"EVN|A02|{at}", _pid(p), "|".join(pv1)]
    return "\r".join(segs).encode() + b"\r"


def oru(
    p: Person,
    visit: str | None,
    order: str,
    at: str,
    results: list[tuple[str, str, str, str, str, str]],
    *,
    status: str = "F",
    lab_mrn: str | None = None,
) -> bytes:
    """A lab centre result; ``results``: (code, name, value, unit, range, flag)."""
    pid = (
        _pid(Person(lab_mrn, p.name, p.birth, p.sex, p.resident_id), "XJYZX")
        if lab_mrn
        else _pid(p)
    )
    segs = [_msh("XJYZX", "LIS", "ORU^R01^ORU_R01", at), pid]
    if visit:
        segs.append(f"PV1|1|I|||||||||||||||||{visit}^^^XRMYY")
    segs.append(f"ORC|RE|{order}^XRMYY|JY-{order}^XJYZX||CM")
    segs.append(
        f"OBR|1|{order}^XRMYY|JY-{order}^XJYZX|CBC^血常规^L|||{at}|||||||||||||||{at}||LAB|{status}"
    )
    for i, (code, name, value, unit, rng, flag) in enumerate(results, 1):
        segs.append(
            f"OBX|{i}|NM|{code}^{name}^L||{value}|{unit}^{unit}^UCUM|{rng}|{flag}|||{status}|||{at}"
        )
    return "\r".join(segs).encode() + b"\r"
