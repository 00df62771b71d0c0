"""A synthetic, labelled population of Patient records for the master patient index.

    .venv/bin/python -m tests.bench.identity_data [n_people]

``population(n_people, members)`` yields ``(person_key, Patient)``: each person has 1-4
records at different members, and the truth is the person key.  Deterministic for a seed.

Records look like the county's feeds: hanzi names (surnames weighted by frequency), valid GB
11643 resident IDs on most records (some legacy 15-digit ones, ~2% mistyped and so invalid),
mobile phones written several ways, addresses as text or parts.  Hard cases at a few percent:
twins (same birth date, address, phone and surname; different given names, or the same name
with their own IDs), homophone names (章伟 for 张伟) and pinyin-written names in other
members' records, foreigners with passports only, newborns named after a parent without IDs.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from pypinyin import Style, lazy_pinyin

# The name, ID and phone generators live in hub.demo.names (hub demo draws its residents with
# them too); the draws are the same as when they lived here, so the population is unchanged.
from hub.demo.names import (
    REGION_WEIGHTS,
    REGIONS,
    VILLAGES,
    mistype,
    resident_id,
)
from hub.demo.names import given as _given
from hub.demo.names import homophone as _homophone
from hub.demo.names import phone as _phone
from hub.demo.names import surname as _surname

SID = "https://ygt.example.org/fhir/sid"
RESIDENT_ID = f"{SID}/resident-id"
EHEALTH_CARD = f"{SID}/ehealth-card"
INSURANCE_CARD = f"{SID}/insurance-card"
FIRST_BIRTH, LAST_BIRTH = date(1930, 1, 1), date(2026, 6, 30)
TOWNSHIPS = ["青山镇", "白沙镇", "河西镇", "柳塘镇", "石口镇", "东桥镇", "城东街道", "城西街道"]
# (country, family, given, sex) of foreigners seen in a county hospital.
FOREIGNERS = [
    ("USA", "Smith", "John", "male"), ("USA", "Johnson", "Emily", "female"),
    ("GBR", "Brown", "Oliver", "male"), ("DEU", "Müller", "Anna", "female"),
    ("KOR", "Kim", "Minjun", "male"), ("KOR", "Park", "Jiyeon", "female"),
    ("JPN", "Tanaka", "Yuki", "female"), ("VNM", "Nguyen", "Van An", "male"),
    ("RUS", "Ivanov", "Sergei", "male"), ("FRA", "Martin", "Louise", "female"),
]  # fmt: skip


def legacy_15(value: str) -> str:
    return value[:6] + value[8:17]


def _mrn(member: str, rng: random.Random) -> str:
    n = rng.randrange(1, 10_000_000)
    if sum(map(ord, member)) % 2:
        return f"{member[:2]}{n:07d}"  # ZY0099123
    return f"{member[:2]}-{n % 1_000_000:06d}"  # QS-004512


def _birth(rng: random.Random) -> date:
    return FIRST_BIRTH + timedelta(days=rng.randrange((LAST_BIRTH - FIRST_BIRTH).days))


def _address(region: tuple[str, str, str, str], rng: random.Random) -> dict[str, str]:
    _, province, city, county = region
    township = (
        rng.choice(TOWNSHIPS) if region[0] == "330521" else rng.choice(["城关镇", "新城街道"])
    )
    street = f"{township}{rng.choice(VILLAGES)}村{rng.randrange(1, 12)}组{rng.randrange(1, 80)}号"
    return {"province": province, "city": city, "county": county, "street": street}


class _Person:
    """The truth about one person; ``record`` writes it down as one member would."""

    def __init__(self, rng: random.Random, **fields: Any) -> None:
        self.rng = rng
        self.sex: str = fields.get("sex") or rng.choice(("male", "female"))
        self.born: date = fields.get("born") or _birth(rng)
        self.region = fields.get("region") or rng.choices(REGIONS, weights=REGION_WEIGHTS)[0]
        self.surname: str = fields.get("surname") or _surname(rng)
        self.given: str = fields.get("given") or _given(self.sex, rng)
        self.phone: str = fields.get("phone") or _phone(rng)
        self.address: dict[str, str] = fields.get("address") or _address(self.region, rng)
        self.rid: str | None = fields.get("rid", "new")
        if self.rid == "new":
            self.rid = resident_id(self.region[0], self.born, self.sex, rng)
        self.foreign: tuple[str, str, str, str] | None = fields.get("foreign")
        self.passport: str | None = fields.get("passport")
        self.ehealth = f"{rng.getrandbits(64):016X}" if rng.random() < 0.3 else None
        self.new_phone = _phone(rng) if rng.random() < 0.1 else None  # a number changed

    def name(self, first: bool) -> dict[str, Any]:
        rng = self.rng
        if self.foreign:
            _, family, given = self.foreign[:3]
            if rng.random() < 0.5:
                return {"use": "official", "family": family.upper(), "given": given.split()}
            return {"use": "official", "text": f"{given} {family}"}
        surname, given = self.surname, self.given
        roll = rng.random()
        if not first and roll < 0.05:
            surname, given = _homophone(surname, rng), _homophone(given, rng)
        elif not first and roll < 0.08:
            family = "".join(lazy_pinyin(surname, style=Style.NORMAL)).upper()
            written = "".join(lazy_pinyin(given, style=Style.NORMAL)).capitalize()
            return {"use": "official", "family": family, "given": [written]}
        return {"use": "official", "family": surname, "given": [given], "text": surname + given}

    def _birth_date(self) -> str:
        text = self.born.isoformat()
        if self.rng.random() < 0.01:  # a mistyped day: one digit off
            day = int(text[8:]) % 28 + 1
            text = f"{text[:8]}{day:02d}"
        return text

    def record(self, member: str, first: bool) -> dict[str, Any]:
        rng = self.rng
        mrn = _mrn(member, rng)
        identifiers: list[dict[str, Any]] = [
            {"system": f"{SID}/{member}/mrn", "value": mrn, "type": {"text": "MR"}}
        ]
        if self.rid and rng.random() < 0.85:
            value = self.rid
            if rng.random() < 0.02:
                value = mistype(value, rng)
            elif self.born.year < 1985 and rng.random() < 0.15:
                value = legacy_15(value)
            identifiers.append({"system": RESIDENT_ID, "value": value, "use": "official"})
        if self.passport and self.foreign:
            system = f"{SID}/passport/{self.foreign[0]}"
            identifiers.append({"system": system, "value": self.passport})
        if self.ehealth and rng.random() < 0.5:
            identifiers.append({"system": EHEALTH_CARD, "value": self.ehealth})
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": f"{member}-{mrn}".replace("_", "-")[:64],
            "identifier": identifiers,
            "name": [self.name(first)],
            "gender": self.sex,
            "birthDate": self._birth_date(),
            "managingOrganization": {"reference": f"Organization/{member}"},
        }
        if rng.random() < 0.85:
            style = rng.random()
            phone = self.new_phone if self.new_phone and rng.random() < 0.5 else self.phone
            if style < 0.1:
                phone = f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}"
            elif style < 0.2:
                phone = f"{phone[:3]} {phone[3:7]} {phone[7:]}"
            patient["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
        if rng.random() < 0.8:
            a = self.address
            if rng.random() < 0.5:
                head = a["province"] + a["city"] if rng.random() < 0.6 else ""
                patient["address"] = [{"use": "home", "text": head + a["county"] + a["street"]}]
            else:
                patient["address"] = [
                    {
                        "use": "home",
                        "line": [a["street"]],
                        "district": a["county"],
                        "city": a["city"],
                        "state": a["province"],
                    }
                ]
        return patient


def _people(rng: random.Random, key: str) -> list[tuple[str, _Person]]:
    """One person, or a hard case of several (twins, a newborn pair)."""
    roll = rng.random()
    if roll < 0.02:  # twins: the same everything but the given name (or even the same name)
        first = _Person(rng)
        same_name = rng.random() < 0.2
        second = _Person(
            rng,
            sex=first.sex if same_name else None,
            born=first.born,
            region=first.region,
            surname=first.surname,
            given=first.given if same_name else None,
            phone=first.phone,
            address=first.address,
        )
        while second.rid == first.rid:
            second.rid = resident_id(second.region[0], second.born, second.sex, rng)
        return [(f"{key}a", first), (f"{key}b", second)]
    if roll < 0.04:  # newborn twins named after the mother; no resident IDs yet
        mother = _surname(rng) + _given("female", rng)
        born = LAST_BIRTH - timedelta(days=rng.randrange(0, 200))
        shared = {"born": born, "phone": _phone(rng), "rid": None, "surname": mother}
        son = _Person(rng, sex="male", given="之子", **shared)
        daughter = _Person(rng, sex="female", given="之女", address=son.address, **shared)
        return [(f"{key}a", son), (f"{key}b", daughter)]
    if roll < 0.05:  # a newborn alone
        mother = _surname(rng) + _given("female", rng)
        born = LAST_BIRTH - timedelta(days=rng.randrange(0, 300))
        sex = rng.choice(("male", "female"))
        given = "之子" if sex == "male" else "之女"
        return [(key, _Person(rng, sex=sex, born=born, surname=mother, given=given, rid=None))]
    if roll < 0.06:  # a foreigner with a passport only
        foreign = rng.choice(FOREIGNERS)
        passport = f"{rng.choice('EGKMP')}{rng.randrange(10**8):08d}"
        person = _Person(rng, sex=foreign[3], rid=None, foreign=foreign, passport=passport)
        return [(key, person)]
    return [(key, _Person(rng))]


def population(n_people: int, members: list[str], seed: int = 7) -> Iterator[tuple[str, dict]]:
    """(person key, Patient) for ``n_people`` people (twins count as two), 1-4 records each."""
    rng = random.Random(seed)
    made = 0
    while made < n_people:
        for key, person in _people(rng, f"P{made:07d}"):
            count = min(len(members), rng.choices((1, 2, 3, 4), weights=(35, 35, 20, 10))[0])
            for i, member in enumerate(rng.sample(members, count)):
                yield key, person.record(member, first=i == 0)
            made += 1


def main(argv: list[str]) -> None:
    import json

    from adapters.feeds.config import demo_community

    members = [m.code for m in demo_community().members.values() if m.feeds]
    n = int(argv[1]) if len(argv) > 1 else 8
    for key, patient in population(n, members):
        print(key, json.dumps(patient, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv)
