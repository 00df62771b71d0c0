"""The township and community centres' part of the month: orders to the lab and imaging
centres (asking ``$recognize`` first now and then) and their results coming back; the lab
centre's health-check clinic; and the messages that arrive broken."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import partial

from hub.demo import clinical, messages, requests
from hub.demo.events import Check, Decide, Transaction
from hub.demo.messages import LabResult, Order
from hub.demo.month import Month
from hub.demo.population import Resident

LOINC = "http://loinc.org"
FHIR_CENTRES = frozenset({"LTWSY"})  # whose HIS speaks FHIR (community.json: hl7-fhir-rest)


def check(m: Month, r: Resident, orderer: str, at: datetime, loinc: tuple[str, str],
          accept: float) -> tuple[str, str]:  # fmt: skip
    """``$recognize`` by ``orderer`` just before ``at``; the clinician takes a recognisable
    result with probability ``accept``, else orders anyway and says why.  (key, decision)."""
    key = f"check-{orderer}-{m.next('check')}"
    decision = "accept" if m.rng.random() < accept else "reorder"
    identifier = (m.community.members[orderer].system("mrn"), r.mrn(orderer))
    code = {"system": LOINC, "code": loinc[0], "display": loinc[1]}
    m.post(Check(at - timedelta(minutes=3), r.key, orderer, key, identifier, (code,), decision))
    m.count("check", at)
    if decision == "reorder":
        reason = m.choose(clinical.REPEAT_REASONS)
        m.post(Decide(at + timedelta(minutes=2), r.key, orderer, key, reason))
    return key, decision


def township_order(
    m: Month,
    r: Resident,
    centre: str,
    at: datetime,
    panel_code: str,
    *,
    check_first: bool = False,
    accept: float = 0.6,
) -> None:
    """A centre's lab order (routed by the hub to the lab centre) and its result."""
    rng, panel = m.rng, clinical.PANELS[panel_code]
    number = f"{centre[:2]}-ORD-{m.next(f'order-{centre}'):06d}"
    key = check(m, r, centre, at, (panel.loinc, panel.name), accept)[0] if check_first else None
    m.count("township-order", at)
    if centre in FHIR_CENTRES:
        code = (panel.loinc, panel.name)
        entry = requests.fhir_order(
            m.community, r, centre=centre, number=number, code=code, imaging=False, authored=at
        )
        m.post(Transaction(at, r.key, centre, "order", (entry,), unless_accepted=key))
    else:
        local = clinical.LOCAL_ORDER_CODES.get(centre, {}).get(panel_code)
        code = (*local, "L") if local else (panel.loinc, panel.name, "LN")
        visit = f"{centre[:2]}V{m.next(f'visit-{centre}'):06d}"
        note = "空腹采血" if panel_code in ("GLU", "LIPID4") else ""
        o = Order(centre, number, code, "XJYZX", at, rng.choice(clinical.TOWNSHIP_DOCTORS), visit,
                  note)  # fmt: skip
        m.send(at, r, centre, "ORM^O01", partial(messages.order, r, o), unless_accepted=key)
        if key is None and rng.random() < 0.02:  # the patient left before the blood was taken
            cancel = at + m.minutes(15, 40)
            m.send(cancel, r, centre, "ORM^O01", partial(messages.order, r, o, cancel=True))
            m.count("cancelled", cancel)
            return
    collected = at + m.minutes(60, 150)  # the specimen travels to the county
    m.lab(r, panel, member=centre, placer=number, placer_org=centre, collected=collected,
          unless_accepted=key)  # fmt: skip


def township_exam(m: Month, r: Resident, centre: str, at: datetime) -> None:
    """A centre's imaging order (routed to the imaging centre); the patient goes to the county
    the next day, and the report comes back."""
    exam = clinical.EXAMS[m.choose(clinical.TOWNSHIP_EXAM)]
    number = f"{centre[:2]}-ORD-{m.next(f'order-{centre}'):06d}"
    m.count("township-order", at)
    if centre in FHIR_CENTRES:
        code = (exam.loinc, exam.name)
        entry = requests.fhir_order(
            m.community, r, centre=centre, number=number, code=code, imaging=True, authored=at
        )
        m.post(Transaction(at, r.key, centre, "order", (entry,)))
    else:
        visit = f"{centre[:2]}V{m.next(f'visit-{centre}'):06d}"
        doctor = m.rng.choice(clinical.TOWNSHIP_DOCTORS)
        o = Order(centre, number, (exam.loinc, exam.name, "LN"), "XYXZX", at, doctor, visit)
        m.send(at, r, centre, "ORM^O01", partial(messages.order, r, o))
    done = m.at(at.date() + timedelta(days=1), 8.5, 15)
    m.exam(r, exam, member=centre, placer=number, placer_org=centre, done=done)


def orders(m: Month, day: date) -> None:
    for centre in m.people.centres:
        for _ in range(m.how_many("lab-order", day)):
            r, at = m.pick(centre), m.at(day, 8, 11.5)
            panel = m.choose(clinical.TOWNSHIP_LAB)
            township_order(m, r, centre, at, panel, check_first=m.rng.random() < 0.3)
        for _ in range(m.how_many("exam-order", day)):
            township_exam(m, m.pick(centre), centre, m.at(day, 8, 11.5))


def health_checks(m: Month, day: date) -> None:
    """体检 at the lab centre's clinic: results under the lab centre's own record numbers,
    which the patient index links to the person's other records by resident ID."""
    for _ in range(m.how_many("health-check", day)):
        r, at = m.pick(), m.at(day, 7.5, 10)
        number = f"TJ-{m.next('health-check'):06d}"
        for code in ("CBC", "LIPID4", "GLU"):
            m.lab(r, clinical.PANELS[code], member="XJYZX", placer=f"{number}-{code}",
                  placer_org="XJYZX", collected=at, abnormal=0.25)  # fmt: skip


def malformed(m: Month, count: int) -> None:
    """``count`` broken messages over the window, each kind in turn: a wrong character set,
    a missing PID, an MSH-4 that names no member."""
    days = max(1, (m.end - m.start).days)
    for n in range(count):
        r = m.pick()
        at = m.at(m.start.date() + timedelta(days=n * days // count), 8, 18)
        person = f"malformed-{n}"
        if n % 3 == 0:
            o = Order("BSWSY", f"BS-ORD-X{n:04d}", ("58410-2", "血常规", "LN"), "XJYZX", at,
                      clinical.TOWNSHIP_DOCTORS[0], "BSV-X")  # fmt: skip
            m.send(at, person, "BSWSY", "ORM^O01", partial(messages.wrong_charset, r, o),
                   expect=("AE", "AR"))  # fmt: skip
        else:
            glu = clinical.PANELS["GLU"]
            res = LabResult(glu, r.centre, f"X-{n:05d}", r.centre, f"JYX{n:05d}", at, at,
                            m.measure(glu, False))  # fmt: skip
            build = (
                partial(messages.without_pid, r, res)
                if n % 3 == 1
                else partial(messages.unknown_sender, r, res, facility="JYZX-TEST")
            )
            m.send(at, person, "XJYZX", "ORU^R01", build, expect=("AE", "AR"))
        m.count("malformed", at)
