"""上转: centres refer patients up to the lead hospital (some by the green channel, 绿色通道).

The centre writes the referral over FHIR; the hospital's referral desk receives and accepts it
(now and then rejects it, saying why; now and then the centre cancels); the patient is admitted
(the hub links the admission and moves the Task on), treated and discharged (the hub completes
it).  Half the patients bring the centre's blood count of the same morning, which the admitting
doctor checks with ``$recognize`` before ordering another.
"""

from __future__ import annotations

from datetime import date

from hub.demo import centres, clinical, hospital, requests
from hub.demo.events import Move, Transaction
from hub.demo.month import Month

LEAD = "XRMYY"


def refer_up(m: Month, day: date) -> None:
    rng = m.rng
    for _ in range(m.how_many("refer-up", day)):
        centre = rng.choice(m.people.centres)
        r = m.pick(centre, clean=True)
        brings_cbc = rng.random() < 0.5
        # With a blood count taken at the centre in the morning, referred in the afternoon.
        authored = m.at(day, 12, 17) if brings_cbc else m.at(day, 8, 17)
        if not m.free(r, authored) or r.age_on(day) < 18:
            continue
        first = "referral-up" not in m.expected
        reasons = [
            x for x in clinical.REFERRAL_REASONS if not first or x[0] in clinical.URGENT_REASONS
        ]
        code, text, service = rng.choice(reasons)
        # Every month shows the green channel: the first referral up takes it.
        green = first or (code in clinical.URGENT_REASONS and rng.random() < 0.6)
        if brings_cbc:
            centres.township_order(m, r, centre, m.at(day, 7.5, 8.5), "CBC")
        number = f"{centre[:2]}-RF-{m.next(f'referral-{centre}'):05d}"
        key = f"referral-{number}"
        entry = requests.referral(
            m.community, r, number=number, requester=centre, performer=LEAD,
            subject_member=centre, authored=authored,
            priority=rng.choice(("urgent", "asap")) if green else "routine",
            reason=(code, text), note="基层首诊，病情需上级医院进一步诊治",
        )  # fmt: skip
        m.post(Transaction(authored, r.key, centre, "referral", (entry,), (key,)))
        m.count("referral-up", authored)
        if green:
            m.count("green-channel", authored)
        if not first and rng.random() < 0.03:  # the patient went elsewhere
            m.post(Move(authored + m.minutes(20, 40), r.key, centre, key, "cancelled"))
            continue
        received = authored + m.minutes(5, 15 if green else 60)
        m.post(Move(received, r.key, LEAD, key, "received"))
        decided = received + m.minutes(5, 15 if green else 45)
        if not first and rng.random() < 0.05:
            m.post(Move(decided, r.key, LEAD, key, "rejected", rng.choice(clinical.REJECT_REASONS)))
            continue
        m.post(Move(decided, r.key, LEAD, key, "accepted"))
        admitted = decided + m.minutes(30, 90 if green else 480)
        ward = next(w for w in clinical.WARDS if w.service == service)
        check_key = None
        if brings_cbc:  # the admitting doctor asks before ordering a blood count again
            check_key, _ = centres.check(m, r, LEAD, admitted + m.minutes(20, 30),
                                         ("58410-2", "血常规"), accept=0.85)  # fmt: skip
        s = hospital.stay(m, r, LEAD, admitted, ward, emergency=green, reason=(code, text),
                          skip_cbc=check_key)  # fmt: skip
        if s is not None:
            hospital.after_discharge(m, r, s)
