"""The demo county's residents, and how each member's records know them (pure).

Every resident lives in the catchment of one primary-care centre (a township or community
centre of ``profiles/community/community.json``; the catchment table of
``profiles/feedback/catchment.json`` maps the first 9 digits of their address's 行政区划代码
to it) and has a health-archive record there (居民健康档案).  Most hold a valid resident ID;
about two in three have signed a family-doctor contract (家庭医生签约) with their centre.  A few
records carry the mistakes a county's records really hold (a mistyped ID digit, a homophone in
the name, a missing ID, a day off in the birth date), so the patient index has work to do.

``build_population(community, n, seed)`` is deterministic: the same arguments give the same
people, numbers and mistakes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path

from adapters.feeds.config import Community, Member, profiles_dir
from hub.demo import names

PRIMARY_CARE = ("township-centre", "community-centre")
# The demo county (GB/T 2260 330521); its seat is 城关, where the community centres are.
PROVINCE, CITY, COUNTY = "浙江省", "湖州市", "德清县"
ROADS = "解放 人民 建设 中山 文化 新华 北街 南门 环城 育才 兴业 公园".split()
# How a record of a resident may be wrong.  ``id``: one digit of the resident ID mistyped on
# the hospital's record (the patient index links it on the other details); ``name``: a
# homophone in the hospital's record of the name; ``no-id``: the centre's record has no
# resident ID and an old phone number (close, not sure: the office reviews the match);
# ``birth``: the hospital's record has the birth day one off.
TYPOS = ("id", "name", "no-id", "birth")


@dataclass(frozen=True)
class Resident:
    """One person of the county, as the truth has them."""

    index: int
    family: str
    given: str
    sex: str  # male | female
    born: date
    resident_id: str | None  # valid 18-character ID; None for a baby not yet given one
    phone: str
    centre: str  # the primary-care member whose catchment they live in
    division: str  # 12-digit 行政区划代码 of their village or neighbourhood committee
    street: str  # 青山镇石桥村3组12号
    contracted: bool  # a family-doctor contract with ``centre``
    ehealth_card: str | None
    typo: str | None  # one of TYPOS, or None

    @property
    def key(self) -> str:
        return f"R{self.index:05d}"

    @property
    def name(self) -> str:
        return self.family + self.given

    def age_on(self, day: date) -> int:
        years = day.year - self.born.year
        return years - ((day.month, day.day) < (self.born.month, self.born.day))

    def mrn(self, member: str) -> str:
        """Their record number at ``member`` (each member numbers its own records)."""
        if member == "XRMYY":
            return f"ZY{self.index + 100_000:07d}"
        if member == "XZYY":
            return f"ZYY{self.index + 30_000:06d}"
        if member == "XJYZX":
            return f"JY{self.index + 500_000:07d}"
        return f"{member[:2]}-{self.index + 1:06d}"

    @property
    def address_text(self) -> str:
        return f"{PROVINCE}{CITY}{COUNTY}{self.street}"


@dataclass(frozen=True)
class Population:
    residents: tuple[Resident, ...]
    centres: tuple[str, ...]  # primary-care member codes, in community.json's order

    @cached_property
    def by_centre(self) -> dict[str, tuple[Resident, ...]]:
        out: dict[str, list[Resident]] = {c: [] for c in self.centres}
        for r in self.residents:
            out[r.centre].append(r)
        return {c: tuple(rs) for c, rs in out.items()}

    def resident(self, key: str) -> Resident:
        return self.residents[int(key[1:])]


def primary_care(community: Community) -> list[Member]:
    return [m for m in community.members.values() if m.kind in PRIMARY_CARE]


def place_name(member: Member) -> str:
    """The town or subdistrict a centre serves: 青山镇卫生院 → 青山镇, 马岭乡卫生院 → 马岭乡,
    城东社区卫生服务中心 → 城东街道."""
    if member.kind == "community-centre":
        return member.name.removesuffix("社区卫生服务中心") + "街道"
    return member.name.removesuffix("卫生院")


def catchment_prefixes(profiles: Path | None = None) -> dict[str, str]:
    """centre code → the 9-digit town prefix of its catchment (profiles/feedback)."""
    path = (profiles or profiles_dir()) / "feedback" / "catchment.json"
    table: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))["catchment"]
    out: dict[str, str] = {}
    for prefix, centre in sorted(table.items()):
        out.setdefault(centre, prefix[:9])
    return out


def _birth(rng: random.Random, reference: date) -> date:
    # A county's people: many middle-aged and old (the young work in the cities), few babies.
    age = min(96, max(0, round(rng.gauss(50, 20))))
    return reference - timedelta(days=age * 365 + rng.randrange(365))


def _home(
    member: Member, town: str, rng: random.Random, prefixes: dict[str, str]
) -> tuple[str, str]:
    """(12-digit division code, street address) in the centre's catchment."""
    prefix = prefixes.get(member.code) or member.division[:9]
    if member.kind == "community-centre":
        n = rng.randrange(len(ROADS))
        # Neighbourhood committees (居委会) are numbered 001-199 within a subdistrict.
        return f"{prefix}{n + 1:03d}", f"{town}{ROADS[n]}路{rng.randrange(1, 300)}号"
    n = rng.randrange(len(names.VILLAGES))
    # Village committees (村委会) are numbered from 200.
    street = f"{town}{names.VILLAGES[n]}村{rng.randrange(1, 12)}组{rng.randrange(1, 80)}号"
    return f"{prefix}{n + 200:03d}", street


def build_population(
    community: Community, n: int, seed: int = 2026, *, reference: date | None = None
) -> Population:
    """``n`` residents spread over the community's primary-care centres."""
    rng = random.Random(f"population-{seed}")
    centres = primary_care(community)
    if not centres:
        raise ValueError("the community has no township or community centre")
    prefixes = catchment_prefixes()
    towns = {c.code: place_name(c) for c in centres}
    # The subdistricts of the county seat are more populous than the townships.
    weights = [1.6 if c.kind == "community-centre" else 1.0 for c in centres]
    today = reference or date(2026, 10, 1)
    residents = []
    issued: set[str] = set()  # resident IDs are unique: draw again on a clash
    for i in range(n):
        centre = rng.choices(centres, weights=weights)[0]
        sex = rng.choice(("male", "female"))
        born = _birth(rng, today)
        # Most were born in the county; some married in or moved from elsewhere.
        region = "330521" if rng.random() < 0.88 else rng.choices(
            names.REGIONS[1:], weights=names.REGION_WEIGHTS[1:]
        )[0][0]  # fmt: skip
        rid = None
        if born <= today - timedelta(days=120):  # a baby is not yet given a resident ID
            while rid is None or rid in issued:
                rid = names.resident_id(region, born, sex, rng)
            issued.add(rid)
        division, street = _home(centre, towns[centre.code], rng, prefixes)
        family, given = names.surname(rng), names.given(sex, rng)
        roll = rng.random()
        typo = None
        if rid is not None and roll < 0.03:
            typo = TYPOS[int(roll / 0.0075) % len(TYPOS)]
            if typo == "name" and not any(c in names.HOMOPHONES for c in family + given):
                typo = None  # no character an input method would confuse
        residents.append(
            Resident(
                index=i,
                family=family,
                given=given,
                sex=sex,
                born=born,
                resident_id=rid,
                phone=names.phone(rng),
                centre=centre.code,
                division=division,
                street=street,
                contracted=rng.random() < 0.65,
                ehealth_card=f"{rng.getrandbits(64):016X}" if rng.random() < 0.3 else None,
                typo=typo,
            )
        )
    return Population(tuple(residents), tuple(c.code for c in centres))


@dataclass(frozen=True)
class RecordView:
    """How one member's record shows a resident (mistakes included)."""

    name: str
    born: date
    resident_id: str | None
    resident_id_valid: bool
    phone: str


def record_view(resident: Resident, member: str, rng_seed: int = 0) -> RecordView:
    """The resident as ``member``'s record has them.  The centre's own archive is right but
    for ``no-id``; the hospitals' records carry the other mistakes."""
    rng = random.Random(f"typo-{resident.index}-{rng_seed}")
    name, born, rid, valid = resident.name, resident.born, resident.resident_id, True
    phone = resident.phone
    hospital = member in ("XRMYY", "XZYY")
    if resident.typo == "no-id" and member == resident.centre:
        rid, phone = None, names.phone(rng)
    elif resident.typo == "id" and hospital and rid:
        rid, valid = names.mistype(rid, rng), False
    elif resident.typo == "name" and hospital:
        name = resident.family + names.homophone(resident.given, rng)
        if name == resident.name:
            name = names.homophone(resident.family, rng) + resident.given
    elif resident.typo == "birth" and hospital:
        day = born.day % 28 + 1
        born = born.replace(day=day)
    return RecordView(name, born, rid, valid, phone)
