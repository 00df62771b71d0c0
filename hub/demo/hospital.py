"""The hospitals' part of the month: stays from admission to discharge, outpatients, and what
follows a discharge (the down-referral with its document, the family doctor's follow-up)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from functools import partial

from hub.demo import centres, clinical, messages, requests
from hub.demo.clinical import Ward
from hub.demo.events import Move, Transaction
from hub.demo.messages import Place, Stay
from hub.demo.month import RATES, Month
from hub.demo.population import Resident


def stay(
    m: Month,
    r: Resident,
    hospital: str,
    admitted: datetime,
    ward: Ward,
    *,
    emergency: bool = False,
    reason: tuple[str, str] | None = None,
    skip_cbc: str | None = None,
    still_in: datetime | None = None,
) -> Stay | None:
    """One stay: admission (A01), results, maybe a ward transfer (A02), discharge (A03) with
    the discharge advice.  None when the discharge falls after the window (or, with
    ``still_in``, before that moment: nothing is sent then).  ``skip_cbc``: a check whose
    acceptance means the admission blood count was not ordered."""
    rng = m.rng
    length = rng.randint(*ward.stay_days)
    discharged = m.at(admitted.date() + timedelta(days=length), 9, 11.5)
    if still_in is not None and discharged < still_in:
        return None
    m.busy[r.key] = discharged + timedelta(days=1)
    age = r.age_on(admitted.date())
    primary = reason or rng.choice(ward.diagnoses)
    extra = [d for d in clinical.COMORBIDITIES if age >= 50 and rng.random() < 0.25]
    procedures = []
    if ward.procedures and rng.random() < 0.45:
        code, text = rng.choice(ward.procedures)
        procedures.append((code, text, m.at(admitted.date() + timedelta(days=1), 9, 16)))
    disposition = m.choose(clinical.DISPOSITIONS)
    if disposition == "5" and age < 60:
        disposition = "1"
    place = Place(ward, rng.randint(*ward.rooms), rng.randint(1, 4))
    visit = f"V{admitted:%Y%m%d}{m.next(f'visit-{hospital}'):04d}"
    s = Stay(hospital, visit, place, rng.choice(ward.doctors), admitted, (primary,),
             (primary, *extra), tuple(procedures), disposition, emergency)  # fmt: skip
    name = m.centre_name(r)
    at = admitted + m.minutes(2, 15)
    m.send(at, r, hospital, "ADT^A01", partial(messages.adt, "A01", r, s, at, centre_name=name))
    m.count("admission", at)
    _results(m, r, s, length, skip_cbc)
    if length >= 4 and rng.random() < 0.2:
        s = replace(s, moved_to=Place(ward, rng.randint(*ward.rooms), rng.randint(1, 4)))
        moved = m.at(admitted.date() + timedelta(days=rng.randint(1, 2)), 8, 18)
        m.send(moved, r, hospital, "ADT^A02",
               partial(messages.adt, "A02", r, s, moved, centre_name=name))  # fmt: skip
    s = replace(s, discharged=discharged)
    if not m.in_window(discharged):
        return None
    m.send(discharged, r, hospital, "ADT^A03",
           partial(messages.adt, "A03", r, s, discharged, centre_name=name))  # fmt: skip
    if m.start <= discharged < m.month_end:
        m.count("discharge")
    if disposition != "5" and rng.random() < 0.85:
        advice = clinical.CARE_ADVICE.get(ward.service, clinical.CARE_ADVICE["CAR"])
        written = discharged + timedelta(minutes=5)
        entry = requests.discharge_advice(
            m.community, r, hospital=hospital, visit=visit, at=written, advice=advice
        )
        when = discharged + m.minutes(10, 40)
        m.post(Transaction(when, r.key, hospital, "care-plan", (entry,)))
    return s


def _results(m: Month, r: Resident, s: Stay, length: int, skip_cbc: str | None) -> None:
    """The stay's blood counts (on admission, and again before discharge), the ward's panels
    and an exam, from the lab and imaging centres, filed against the visit."""
    rng, hospital, day0 = m.rng, s.hospital, s.admitted.date()
    sick = 0.45 if s.emergency else 0.3
    prefix = "XR" if hospital == "XRMYY" else "ZY"

    def order() -> dict[str, str]:
        number = f"{prefix}-ORD-{m.next('order-' + hospital):06d}"
        return {"member": hospital, "placer": number, "placer_org": hospital, "visit": s.visit}

    cbc = clinical.PANELS["CBC"]
    m.lab(r, cbc, collected=s.admitted + m.minutes(30, 150), abnormal=sick,
          unless_accepted=skip_cbc, **order())  # fmt: skip
    for code in clinical.WARD_PANELS.get(s.place.ward.service, ()):
        if rng.random() < 0.7:
            morning = m.at(day0 + timedelta(days=1), 6, 8)
            m.lab(r, clinical.PANELS[code], collected=morning, abnormal=sick, **order())
    if length >= 3 and rng.random() < 0.85:  # 出院前复查
        morning = m.at(day0 + timedelta(days=length - 1), 6, 8)
        m.lab(r, cbc, collected=morning, abnormal=0.1, **order())
    exam = clinical.WARD_EXAMS.get(s.place.ward.service)
    if exam and rng.random() < 0.5:
        m.exam(r, clinical.EXAMS[exam], done=m.at(day0 + timedelta(days=1), 9, 16), **order())


def after_discharge(m: Month, r: Resident, s: Stay) -> None:
    """下转 with the discharge document, and the family doctor's follow-up visit."""
    rng, discharged = m.rng, s.discharged
    assert discharged is not None
    if s.disposition == "3" and r.typo is None and rng.random() < 0.85:
        refer_down(m, r, s)
    if s.disposition in ("1", "3") and r.typo is None and rng.random() < 0.4:
        # The blood count taken before discharge is still valid (7 days): the family doctor
        # asks before ordering one, and mostly takes the hospital's.
        visit = m.at(discharged.date() + timedelta(days=rng.randint(2, 5)), 8.5, 11)
        centres.township_order(m, r, r.centre, visit, "CBC", check_first=True, accept=0.7)


def refer_down(m: Month, r: Resident, s: Stay) -> None:
    """The hospital refers the patient back to their centre (the hub adds the discharge
    document); the centre's desk receives, accepts, sees and completes it."""
    assert s.discharged is not None
    number = f"XR-RF-{m.next('referral-XRMYY'):05d}"
    key = f"referral-{number}"
    authored = s.discharged + m.minutes(30, 90)
    if not m.start <= authored < m.end:
        return
    entry = requests.referral(
        m.community, r, number=number, requester=s.hospital, performer=r.centre,
        subject_member=s.hospital, authored=authored, priority="routine",
        reason=s.discharge_dx[0], note="出院后转回基层继续康复治疗及随访", encounter_visit=s.visit,
    )  # fmt: skip
    m.post(Transaction(authored, r.key, s.hospital, "referral", (entry,), (key,)))
    m.count("referral-down")
    when = authored
    steps = (
        ("received", 1, 5),
        ("accepted", 1, 6),
        ("in-progress", 16, 26),
        ("completed", 48, 140),
    )
    for status, low, high in steps:
        when = when + m.minutes(low * 60, high * 60)
        m.post(Move(when, r.key, r.centre, key, status))


def _ward_for(m: Month, r: Resident, day: date) -> Ward:
    wards = [w for w in clinical.WARDS if r.age_on(day) >= w.min_age]
    return m.rng.choices(wards, weights=[w.weight for w in wards])[0]


def admissions(m: Month, day: date) -> None:
    for hospital in ("XRMYY", "XZYY"):
        for _ in range(m.how_many(f"admit-{hospital}", day)):
            admitted = m.at(day, 0, 24)
            r = m.pick()
            if not m.free(r, admitted) or r.age_on(day) < 14:
                continue
            s = stay(m, r, hospital, admitted, _ward_for(m, r, day),
                     emergency=m.rng.random() < 0.25)  # fmt: skip
            if s is not None and hospital == "XRMYY":
                after_discharge(m, r, s)


def census(m: Month) -> None:
    """Patients already in the lead hospital when the month starts (admitted before it)."""
    per_day = max(RATES["admit-XRMYY"][0] * m.scale, RATES["admit-XRMYY"][1])
    for back in range(1, 12):
        day = m.start.date() - timedelta(days=back)
        for _ in range(round(per_day * max(0.0, 1 - back / 12))):
            r, admitted = m.pick(), m.at(day, 0, 24)
            if not m.free(r, admitted):
                continue
            s = stay(m, r, "XRMYY", admitted, _ward_for(m, r, day), still_in=m.start)
            if s is not None:
                after_discharge(m, r, s)


def outpatients(m: Month, day: date) -> None:
    """门诊挂号 (ADT^A04) at the hospitals; half go to the lab."""
    for _ in range(m.how_many("outpatient", day)):
        hospital = "XRMYY" if m.rng.random() < 0.8 else "XZYY"
        r, at = m.pick(), m.at(day, 7.5, 16.5)
        clinic = m.rng.choice(clinical.WARDS).name
        visit = f"MZ{at:%Y%m%d}{m.next(f'outpatient-{hospital}'):04d}"
        m.send(at, r, hospital, "ADT^A04",
               partial(messages.registration, r, hospital, clinic, visit, at))  # fmt: skip
        if m.rng.random() < 0.5:
            panel = clinical.PANELS[m.rng.choice(("CBC", "GLU", "LIPID4", "LFT"))]
            placer = f"{'XR' if hospital == 'XRMYY' else 'ZY'}-MZ-{m.next('mz'):06d}"
            m.lab(r, panel, member=hospital, placer=placer, placer_org=hospital,
                  collected=at + m.minutes(20, 60))  # fmt: skip
