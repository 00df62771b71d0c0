"""HL7 v2 messages as the members' systems write them (pure: values in, bytes out).

Each member's system has its habits (``WIRES``): the lead hospital's HIS speaks v2.4 in GB 18030
and says so in MSH-18, 县中医院's older HIS speaks v2.3.1 in GB 18030 without saying so (the
hub reads its default from community.json), the lab and imaging centres speak v2.5.1 in UTF-8,
and so on.  Record numbers carry their member as CX-4 and the resident ID rides as a second
identifier with CX-5 ``NNCHN``, as county HIS send them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hub.demo.clinical import Analyte, Exam, Panel, Ward
from hub.demo.population import COUNTY, PROVINCE, Resident, record_view


@dataclass(frozen=True)
class Wire:
    """How one member's system writes HL7 v2."""

    application: str  # MSH-3
    version: str  # MSH-12
    charset: str | None  # MSH-18 as written; None: not said (the member's default applies)
    codec: str  # how the bytes are really encoded


WIRES = {
    "XRMYY": Wire("HIS", "2.4", "GB 18030-2000", "gb18030"),
    "XZYY": Wire("HIS", "2.3.1", None, "gb18030"),
    "XJYZX": Wire("LIS", "2.5.1", "UNICODE UTF-8", "utf-8"),
    "XYXZX": Wire("RIS", "2.5.1", "UNICODE UTF-8", "utf-8"),
    "QSWSY": Wire("HIS", "2.5.1", "UNICODE UTF-8", "utf-8"),
    "BSWSY": Wire("HIS", "2.3.1", "GB18030", "gb18030"),
    "CDSQ": Wire("HIS", "2.5", "UNICODE UTF-8", "utf-8"),
    "CXSQ": Wire("HIS", "2.5", "UNICODE UTF-8", "utf-8"),
}
TOWNSHIP_WIRE = Wire("HIS", "2.4", "GB18030", "gb18030")


def wire(member: str) -> Wire:
    return WIRES.get(member, TOWNSHIP_WIRE)


def ts(moment: datetime) -> str:
    """An HL7 TS in the community's zone (the MSH says +0800)."""
    return moment.strftime("%Y%m%d%H%M%S")


def encode(member: str, segments: list[str], *, codec: str | None = None) -> bytes:
    return ("\r".join(segments) + "\r").encode(codec or wire(member).codec)


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from its non-empty fields by number (``{3: "ZY1^^^XRMYY^MR"}``)."""
    out = [name] + [""] * max(fields)
    for n, value in fields.items():
        out[n] = value
    return "|".join(out)


def msh(member: str, at: datetime, kind: str, control: str, *, receiving: str = "YGT") -> str:
    """MSH from ``member``'s system; ``receiving`` is MSH-6 (the hub, or the centre that is to
    perform an order, as some HIS write it)."""
    w = wire(member)
    app = {"YGT": "YGT_HUB", "XYXZX": "RIS"}.get(receiving, "LIS")
    fields = {1: "^~\\&", 2: w.application, 3: member, 4: app, 5: receiving}
    fields.update({6: f"{ts(at)}+0800", 8: kind, 9: control, 10: "P", 11: w.version})
    if w.charset:
        fields[17] = w.charset
    return seg("MSH", fields)  # MSH-n is field n - 1 here: MSH-1 is the separator itself


def pid(
    r: Resident,
    member: str,
    *,
    id_type: str = "MR",
    details: bool = True,
    died: datetime | None = None,
) -> str:
    """PID as ``member``'s system has the resident (its number, its mistakes)."""
    view = record_view(r, member)
    ids = f"{r.mrn(member)}^^^{member}^{id_type}"
    if view.resident_id:
        ids += f"~{view.resident_id}^^^^NNCHN"
    if r.ehealth_card and details and member == r.centre:
        ids += f"~{r.ehealth_card}^^^^HC"
    fields = {1: "1", 3: ids, 5: view.name, 7: view.born.strftime("%Y%m%d")}
    fields[8] = "M" if r.sex == "male" else "F"
    if details:
        fields[11] = f"{r.street}^^{COUNTY}^{PROVINCE}^313200^CHN^H^^{r.division}"
        fields[13] = f"^PRN^CP^^^^{view.phone}"
    if died is not None:
        fields.update({29: ts(died), 30: "Y"})
    return seg("PID", fields)


def pd1(r: Resident, centre_name: str) -> str | None:
    """PD1-3: the family doctor's institution, when they signed a contract."""
    return f"PD1|||{centre_name}^^{r.centre}" if r.contracted else None


@dataclass(frozen=True)
class Place:
    ward: Ward
    room: int
    bed: int

    def pl(self, hospital: str) -> str:
        return f"{self.ward.name}^{self.room}^{self.bed}^{hospital}"


@dataclass(frozen=True)
class Stay:
    """One inpatient stay, as the hospital's HIS tells it."""

    hospital: str
    visit: str
    place: Place
    doctor: tuple[str, str, str]
    admitted: datetime
    admission_dx: tuple[tuple[str, str], ...]
    discharge_dx: tuple[tuple[str, str], ...]
    procedures: tuple[tuple[str, str, datetime], ...]
    disposition: str
    emergency: bool
    discharged: datetime | None = None
    moved_to: Place | None = None  # after a ward transfer (A02)


def _xcn(doctor: tuple[str, str, str]) -> str:
    return "^".join(doctor)


def _pv1(stay: Stay, *, place: Place, prior: Place | None = None, end: bool = False) -> str:
    fields = {1: "1", 2: "I", 3: place.pl(stay.hospital), 4: "E" if stay.emergency else "R"}
    fields.update({7: _xcn(stay.doctor), 10: place.ward.service, 17: _xcn(stay.doctor)})
    fields.update({14: "7" if stay.emergency else "1", 19: f"{stay.visit}^^^{stay.hospital}"})
    fields[44] = ts(stay.admitted)
    if prior is not None:
        fields[6] = prior.pl(stay.hospital)
    if end and stay.discharged is not None:
        fields.update({36: stay.disposition, 45: ts(stay.discharged)})
    return seg("PV1", fields)


def adt(
    event: str,
    r: Resident,
    stay: Stay,
    at: datetime,
    control: str,
    *,
    centre_name: str,
) -> bytes:
    """ADT^A01 (admit, admission diagnoses), A02 (ward transfer), A03 (discharge: discharge
    diagnoses, procedures, 离院方式) or A08 (update) for an inpatient stay."""
    hospital = stay.hospital
    structure = {"A08": "ADT_A01", "A01": "ADT_A01", "A02": "ADT_A02", "A03": "ADT_A03"}[event]
    segs = [msh(hospital, at, f"ADT^{event}^{structure}", control), f"EVN|{event}|{ts(at)}"]
    died = stay.discharged if event == "A03" and stay.disposition == "5" else None
    segs.append(pid(r, hospital, died=died))
    if event in ("A01", "A03", "A08") and (doctor := pd1(r, centre_name)):
        segs.append(doctor)
    current = stay.moved_to if stay.moved_to and event != "A01" else stay.place
    prior = stay.place if event == "A02" else None
    segs.append(_pv1(stay, place=current, prior=prior, end=event == "A03"))
    if event == "A01":
        code, text = stay.admission_dx[0]
        segs.append(f"PV2|||{code}^{text}^I10")
    if event in ("A01", "A03"):
        kind, dx = ("F", stay.discharge_dx) if event == "A03" else ("A", stay.admission_dx)
        for i, (code, text) in enumerate(dx, 1):
            segs.append(f"DG1|{i}||{code}^{text}^I10||{ts(at)}|{kind}|||||||||{i}")
    if event == "A03":
        for i, (code, text, when) in enumerate(stay.procedures, 1):
            segs.append(f"PR1|{i}||{code}^{text}^ICD9CM||{ts(when)}|||||||{_xcn(stay.doctor)}")
    return encode(hospital, segs)


def registration(
    r: Resident, hospital: str, clinic: str, visit: str, at: datetime, control: str
) -> bytes:
    """ADT^A04: an outpatient registration (门诊挂号)."""
    where = {3: f"{clinic}门诊^^^{hospital}", 19: f"{visit}^^^{hospital}", 44: ts(at)}
    segs = [
        msh(hospital, at, "ADT^A04^ADT_A01", control),
        f"EVN|A04|{ts(at)}",
        pid(r, hospital),
        seg("PV1", {1: "1", 2: "O", **where}),
    ]
    return encode(hospital, segs)


@dataclass(frozen=True)
class Order:
    """A township centre's order for the lab or imaging centre."""

    centre: str
    placer: str
    code: tuple[str, str, str]  # (code, text, coding system as CWE-3: L or LN)
    destination: str  # XJYZX | XYXZX
    ordered: datetime
    doctor: tuple[str, str, str]
    visit: str
    note: str = ""


def order(r: Resident, o: Order, control: str, *, cancel: bool = False) -> bytes:
    """ORM^O01 (or OML^O21 where the HIS speaks v2.5.1), control NW or CA."""
    w = wire(o.centre)
    oml = w.version.startswith("2.5.1") and o.destination == "XJYZX"
    kind = "OML^O21^OML_O21" if oml else "ORM^O01^ORM_O01" if w.version >= "2.4" else "ORM^O01"
    # BSWSY's HIS names the performing centre in OBR-20 (community.json orderDestination);
    # the others in MSH-6, or not at all and the routing rules decide.
    receiving = o.destination if o.centre in ("QSWSY", "HXWSY") else "YGT"
    obr20 = o.destination if o.centre == "BSWSY" else ""
    control_code = "CA" if cancel else "NW"
    code = "^".join(o.code)
    doctor = _xcn(o.doctor)
    segs = [
        msh(o.centre, o.ordered, kind, control, receiving=receiving),
        pid(r, o.centre, id_type="PI"),
        f"PV1|1|O|全科门诊^^^{o.centre}||||{doctor}||||||||||||{o.visit}",
        f"ORC|{control_code}|{o.placer}^{o.centre}|||||^^^^^R||{ts(o.ordered)}|||{doctor}",
        f"OBR|1|{o.placer}^{o.centre}||{code}|||{ts(o.ordered)}|||||||||{doctor}||||{obr20}",
    ]
    if o.note:
        segs.append(f"NTE|1||{o.note}")
    return encode(o.centre, segs)


@dataclass(frozen=True)
class Measured:
    analyte: Analyte
    value: str
    flag: str  # N | H | L


@dataclass(frozen=True)
class LabResult:
    """The lab centre's report of one panel (ORU^R01)."""

    panel: Panel
    patient_member: str  # whose record the PID names (the orderer's, or the lab's own)
    placer: str
    placer_org: str
    filler: str
    collected: datetime
    reported: datetime
    values: tuple[Measured, ...]
    status: str = "F"  # F final | C corrected
    visit: str | None = None  # an inpatient's visit number at the hospital
    note: str = ""


def lab_result(r: Resident, res: LabResult, control: str) -> bytes:
    centre, at = "XJYZX", res.reported
    segs = [msh(centre, at, "ORU^R01^ORU_R01", control), pid(r, res.patient_member)]
    if res.visit:
        segs.append(f"PV1|1|I|||||||||||||||||{res.visit}^^^{res.patient_member}")
    placer, filler = f"{res.placer}^{res.placer_org}", f"{res.filler}^XJYZX"
    panel = f"{res.panel.code}^{res.panel.name}^L"
    segs.append(f"ORC|RE|{placer}|{filler}||CM")
    times = {7: ts(res.collected), 22: ts(at), 24: "LAB", 25: res.status}
    segs.append(seg("OBR", {1: "1", 2: placer, 3: filler, 4: panel, **times}))
    if res.note:
        segs.append(f"NTE|1||{res.note}")
    for i, m in enumerate(res.values, 1):
        a = m.analyte
        if not a.unit:  # a text result (尿常规)
            segs.append(f"OBX|{i}|ST|{a.code}^{a.name}^L||{m.value}||||||{res.status}")
            continue
        status = res.status if res.status == "F" or m.flag != "N" else "F"
        segs.append(
            f"OBX|{i}|NM|{a.code}^{a.name}^L||{m.value}|{a.unit}^{a.unit}^UCUM|"
            f"{a.low:g}-{a.high:g}|{m.flag}|||{status}|||{ts(res.collected)}"
        )
    return encode(centre, segs)


@dataclass(frozen=True)
class ExamResult:
    """The imaging centre's report (ORU^R01, findings and impression as FT)."""

    exam: Exam
    patient_member: str
    placer: str
    placer_org: str
    filler: str
    done: datetime
    reported: datetime
    abnormal: bool
    visit: str | None = None


def exam_result(r: Resident, res: ExamResult, control: str) -> bytes:
    centre = "XYXZX"
    findings, impression = res.exam.abnormal if res.abnormal else res.exam.normal
    code = f"{res.exam.code}^{res.exam.name}^L"
    placer, filler = f"{res.placer}^{res.placer_org}", f"{res.filler}^XYXZX"
    segs = [msh(centre, res.reported, "ORU^R01^ORU_R01", control), pid(r, res.patient_member)]
    if res.visit:
        segs.append(f"PV1|1|I|||||||||||||||||{res.visit}^^^{res.patient_member}")
    times = {7: ts(res.done), 22: ts(res.reported), 24: "RAD", 25: "F"}
    segs += [
        f"ORC|RE|{placer}|{filler}||CM",
        seg("OBR", {1: "1", 2: placer, 3: filler, 4: code, **times}),
        f"OBX|1|FT|{code}|1|检查所见：{findings}||||||F|||{ts(res.done)}",
        f"OBX|2|FT|{code}|2|诊断意见：{impression}|||{'A' if res.abnormal else 'N'}|||F|||"
        f"{ts(res.done)}",
    ]
    return encode(centre, segs)


# -- what goes wrong on the wire --------------------------------------------------------


def wrong_charset(r: Resident, o: Order, control: str) -> bytes:
    """A township order that says UTF-8 in MSH-18 but is GB 18030 bytes (a HIS upgraded
    halfway): the hub must refuse it rather than store garbled names."""
    text = order(r, o, control).decode(wire(o.centre).codec)
    head, _, rest = text.partition("\r")
    fields = head.split("|")
    fields += [""] * (18 - len(fields))
    fields[17] = "UNICODE UTF-8"
    return ("|".join(fields) + "\r" + rest).encode("gb18030")


def without_pid(r: Resident, res: LabResult, control: str) -> bytes:
    """A lab result whose PID segment the LIS interface forgot."""
    segments = lab_result(r, res, control).decode("utf-8").split("\r")
    return "\r".join(s for s in segments if not s.startswith("PID|")).encode("utf-8")


def unknown_sender(r: Resident, res: LabResult, control: str, facility: str) -> bytes:
    """A lab result whose MSH-4 names no member (a vendor's test configuration left behind)."""
    text = lab_result(r, res, control).decode("utf-8")
    return text.replace("|LIS|XJYZX|", f"|LIS|{facility}|", 1).encode("utf-8")
