"""A month of the lead hospital's inpatient traffic, fed over MLLP into the real store."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from adapters.feeds.config import demo_community
from adapters.feeds.resident_id import check_character
from hub.feeds.bootstrap import load_community_resources
from hub.feeds.service import FeedService
from hub.queue.worker import drain
from tests.feeds.helpers import ack_code, send_all
from tests.services.feedback.messages import Person, Stay, adt, oru, transfer

MONTH = "2026-10"
WBC_HIGH = ("WBC", "白细胞计数", "15.2", "10*9/L", "3.5-9.5", "H")
HGB_OK = ("HGB", "血红蛋白", "135", "g/L", "130-175", "N")


def resident(birth: str, serial: str) -> str:
    first = f"330521{birth}{serial}"
    return first + check_character(first)


Feed = Callable[..., None]


@pytest.fixture
def feed(engine: sa.Engine, clean_db: None) -> Feed:
    """Send messages over MLLP (each must be accepted) and apply them."""
    load_community_resources(engine, demo_community())
    service = FeedService(engine, demo_community(), mllp_port=0, run_worker=False)
    service.start()

    def send(*messages: bytes) -> None:
        assert service.port is not None
        for answer in send_all(service.port, list(messages)):
            assert ack_code(answer) in ("AA", "CA"), answer
        drain(engine)

    yield send  # type: ignore[misc]
    service.stop()


ZHANG = Person("ZY0001", "张三", "19800101", "M", resident("19800101", "001"), gp="QSWSY")
LI = Person("ZY0002", "李娟", "19750606", "F", resident("19750606", "002"), gp="BSWSY")
WANG = Person("ZY0003", "王大爷", "19400303", "M", resident("19400303", "003"), gp="HXWSY")
ZHAO = Person("ZY0004", "赵流浪", "19700404", "M", resident("19700404", "004"))
SUN = Person(
    "ZY0005", "孙梅", "19850505", "F", resident("19850505", "005"), division="330521102201"
)
ZHOU = Person("ZY0006", "周午夜", "19900606", "M", resident("19900606", "006"), gp="QSWSY")
WU = Person("ZY0007", "吴凌晨", "19910707", "F", resident("19910707", "007"), gp="QSWSY")


@pytest.fixture
def month(feed: Feed) -> dict[str, Stay]:
    """Every case of issue 6's month, through the real feed."""
    # Admitted in September, moved to the ICU and back on the ward, discharged in October;
    # the lab centre's results come under its own record of the same person.
    zhang = Stay("V-ZHANG", "20260928080000", "20261005100000",
                 admission_dx=[("I20.0", "不稳定型心绞痛")],
                 discharge_dx=[("I21.0", "急性前壁心肌梗死"), ("I10", "高血压")],
                 procedures=[("00.66", "经皮冠状动脉腔内成形术", "20261002110000")])  # fmt: skip
    feed(adt("A01", ZHANG, zhang, "20260928080000"))
    feed(transfer(ZHANG, zhang, "20261001090000", "ICU^1^3"))
    feed(transfer(ZHANG, zhang, "20261003090000", "心内科^301^12"))
    feed(oru(ZHANG, None, "ORD-Z1", "20260920090000", [WBC_HIGH], lab_mrn="JY-Z"))  # before
    feed(oru(ZHANG, None, "ORD-Z2", "20261001093000", [HGB_OK], lab_mrn="JY-Z"))
    feed(oru(ZHANG, "V-ZHANG", "ORD-Z3", "20261002093000", [WBC_HIGH, HGB_OK]))
    feed(adt("A03", ZHANG, zhang, "20261005100000"))
    # A readmission: two stays in the month, two documents.
    li1 = Stay("V-LI-1", "20261003080000", "20261008100000")
    li2 = Stay("V-LI-2", "20261015080000", "20261020100000")
    for stay in (li1, li2):
        feed(adt("A01", LI, stay, stay.admitted), adt("A03", LI, stay, stay.discharged or ""))
    # A death.
    wang = Stay("V-WANG", "20261010080000", "20261012031500", disposition="5")
    feed(adt("A01", WANG, wang, wang.admitted))
    dead = Person(**{**WANG.__dict__, "died": "20261012031500"})
    feed(adt("A03", dead, wang, "20261012031500"))
    # No primary-care centre anywhere: listed for the office.
    zhao = Stay("V-ZHAO", "20261011080000", "20261016100000")
    feed(adt("A01", ZHAO, zhao, zhao.admitted), adt("A03", ZHAO, zhao, "20261016100000"))
    # No GP, but an address in 白沙镇: the catchment table finds BSWSY.
    sun = Stay("V-SUN", "20261012080000", "20261018100000")
    feed(adt("A01", SUN, sun, sun.admitted), adt("A03", SUN, sun, "20261018100000"))
    # Midnight at the month's end, +08:00: 23:59:59 is October's, 00:00:00 November's.
    zhou = Stay("V-ZHOU", "20261030080000", "20261031235959")
    wu = Stay("V-WU", "20261030080000", "20261101000000")
    feed(adt("A01", ZHOU, zhou, zhou.admitted), adt("A03", ZHOU, zhou, "20261031235959"))
    feed(adt("A01", WU, wu, wu.admitted), adt("A03", WU, wu, "20261101000000"))
    # Still in hospital at the month's end: no document yet.
    feed(adt("A01", LI, Stay("V-LI-3", "20261029080000"), "20261029080000"))
    return {"zhang": zhang, "li1": li1, "li2": li2, "wang": wang, "zhao": zhao, "sun": sun,
            "zhou": zhou, "wu": wu}  # fmt: skip
