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

from adapters.feeds.resident_id import check_character, parse_resident_id

SID = "https://ygt.example.org/fhir/sid"
RESIDENT_ID = f"{SID}/resident-id"
EHEALTH_CARD = f"{SID}/ehealth-card"
INSURANCE_CARD = f"{SID}/insurance-card"
FIRST_BIRTH, LAST_BIRTH = date(1930, 1, 1), date(2026, 6, 30)

# (surname, relative frequency): the most common Chinese surnames, roughly by population.
SURNAMES = [
    ("王", 72), ("李", 71), ("张", 67), ("刘", 54), ("陈", 47), ("杨", 33), ("黄", 25),
    ("赵", 22), ("吴", 21), ("周", 20), ("徐", 17), ("孙", 16), ("马", 15), ("朱", 14),
    ("胡", 13), ("郭", 12), ("何", 12), ("林", 11), ("高", 11), ("罗", 10), ("郑", 10),
    ("梁", 9), ("谢", 8), ("宋", 7), ("唐", 7), ("许", 7), ("韩", 6), ("冯", 6), ("邓", 6),
    ("曹", 6), ("彭", 5), ("曾", 5), ("肖", 5), ("田", 5), ("董", 5), ("潘", 4), ("袁", 4),
    ("蔡", 4), ("蒋", 4), ("余", 4), ("于", 4), ("杜", 4), ("叶", 4), ("程", 4), ("沈", 3),
    ("姚", 3), ("钱", 3), ("施", 2), ("单", 1), ("查", 1), ("仇", 1), ("欧阳", 1),
]  # fmt: skip
GIVEN_MALE = "伟强磊军勇杰涛明超刚平辉斌鹏华飞建国峰志文龙海波宇浩俊晨毅振东林"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀英兰玲婷燕红梅琳雪慧颖倩洁萍晶佳欣怡悦月蓉"
# A character and characters an input method offers for the same pinyin.
HOMOPHONES = {
    "张": "章", "王": "汪", "李": "黎", "刘": "柳", "徐": "许", "杨": "阳", "吴": "伍",
    "伟": "玮炜", "明": "鸣铭", "静": "婧", "丽": "莉俐", "军": "君", "娟": "鹃", "芳": "方",
    "红": "虹鸿", "英": "瑛", "霞": "侠", "峰": "锋丰", "涛": "韬", "勇": "永", "艳": "燕",
    "辉": "晖", "斌": "彬", "林": "琳霖", "玲": "铃", "婷": "亭", "梅": "玫", "兰": "岚",
    "华": "骅", "杰": "洁", "敏": "珉", "平": "萍", "建": "健", "宇": "雨", "晨": "辰",
}  # fmt: skip
# Real county-level divisions (GB/T 2260): code, province, prefecture, county.  Most people
# live in the demo county (德清县) and its neighbours.
REGIONS = [
    ("330521", "浙江省", "湖州市", "德清县"), ("330522", "浙江省", "湖州市", "长兴县"),
    ("330523", "浙江省", "湖州市", "安吉县"), ("330502", "浙江省", "湖州市", "吴兴区"),
    ("330503", "浙江省", "湖州市", "南浔区"), ("330106", "浙江省", "杭州市", "西湖区"),
    ("330110", "浙江省", "杭州市", "余杭区"), ("330122", "浙江省", "杭州市", "桐庐县"),
    ("330127", "浙江省", "杭州市", "淳安县"), ("330182", "浙江省", "杭州市", "建德市"),
    ("330282", "浙江省", "宁波市", "慈溪市"), ("330381", "浙江省", "温州市", "瑞安市"),
    ("330421", "浙江省", "嘉兴市", "嘉善县"), ("330481", "浙江省", "嘉兴市", "海宁市"),
    ("330483", "浙江省", "嘉兴市", "桐乡市"), ("330681", "浙江省", "绍兴市", "诸暨市"),
    ("330782", "浙江省", "金华市", "义乌市"), ("331002", "浙江省", "台州市", "椒江区"),
    ("320583", "江苏省", "苏州市", "昆山市"), ("320582", "江苏省", "苏州市", "张家港市"),
    ("320481", "江苏省", "常州市", "溧阳市"), ("340103", "安徽省", "合肥市", "庐阳区"),
    ("341502", "安徽省", "六安市", "金安区"), ("341802", "安徽省", "宣城市", "宣州区"),
    ("360121", "江西省", "南昌市", "南昌县"), ("410102", "河南省", "郑州市", "中原区"),
    ("411722", "河南省", "驻马店市", "上蔡县"), ("420106", "湖北省", "武汉市", "武昌区"),
    ("430104", "湖南省", "长沙市", "岳麓区"), ("510107", "四川省", "成都市", "武侯区"),
    ("511321", "四川省", "南充市", "南部县"), ("370102", "山东省", "济南市", "历下区"),
    ("440106", "广东省", "广州市", "天河区"), ("450102", "广西壮族自治区", "南宁市", "兴宁区"),
]  # fmt: skip
REGION_WEIGHTS = [40, 8, 8, 6, 5] + [1] * (len(REGIONS) - 5)
TOWNSHIPS = ["青山镇", "白沙镇", "河西镇", "柳塘镇", "石口镇", "东桥镇", "城东街道", "城西街道"]
VILLAGES = "石桥 柳树 新联 红旗 东风 前进 杨家 王家 沙湾 塘头 大庄 新民 三合 永安 和平 桥东".split()
# (country, family, given, sex) of foreigners seen in a county hospital.
FOREIGNERS = [
    ("USA", "Smith", "John", "male"), ("USA", "Johnson", "Emily", "female"),
    ("GBR", "Brown", "Oliver", "male"), ("DEU", "Müller", "Anna", "female"),
    ("KOR", "Kim", "Minjun", "male"), ("KOR", "Park", "Jiyeon", "female"),
    ("JPN", "Tanaka", "Yuki", "female"), ("VNM", "Nguyen", "Van An", "male"),
    ("RUS", "Ivanov", "Sergei", "male"), ("FRA", "Martin", "Louise", "female"),
]  # fmt: skip


def resident_id(region: str, born: date, sex: str, rng: random.Random) -> str:
    seq = rng.randrange(0, 500) * 2 + (1 if sex == "male" else 0)
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    return body + check_character(body)


def legacy_15(value: str) -> str:
    return value[:6] + value[8:17]


def mistype(value: str, rng: random.Random) -> str:
    """One character changed so that the check fails (every single error is caught)."""
    while True:
        i = rng.randrange(18)
        typo = value[:i] + rng.choice("0123456789".replace(value[i], "")) + value[i + 1 :]
        try:
            parse_resident_id(typo, today=LAST_BIRTH)
        except ValueError:
            return typo


def _mrn(member: str, rng: random.Random) -> str:
    n = rng.randrange(1, 10_000_000)
    if sum(map(ord, member)) % 2:
        return f"{member[:2]}{n:07d}"  # ZY0099123
    return f"{member[:2]}-{n % 1_000_000:06d}"  # QS-004512


def _birth(rng: random.Random) -> date:
    return FIRST_BIRTH + timedelta(days=rng.randrange((LAST_BIRTH - FIRST_BIRTH).days))


def _surname(rng: random.Random) -> str:
    return rng.choices([s for s, _ in SURNAMES], weights=[w for _, w in SURNAMES])[0]


def _given(sex: str, rng: random.Random) -> str:
    chars = GIVEN_MALE if sex == "male" else GIVEN_FEMALE
    return "".join(rng.choice(chars) for _ in range(rng.choice((1, 2, 2))))


def _homophone(text: str, rng: random.Random) -> str:
    positions = [i for i, c in enumerate(text) if c in HOMOPHONES]
    if not positions:
        return text
    i = rng.choice(positions)
    return text[:i] + rng.choice(HOMOPHONES[text[i]]) + text[i + 1 :]


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


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
