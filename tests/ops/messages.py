"""HL7 v2 messages for the operations tests, with clinical content the logs must never show."""

from __future__ import annotations

from adapters.feeds.resident_id import check_character

# Values that must never reach a log line: a patient's name, resident ID number, record number
# and a result value (odd enough that nothing else in a log could contain them by chance).
PATIENT_NAME = "欧阳测试"
PATIENT_FAMILY, PATIENT_GIVEN = "欧阳", "测试"
RESIDENT_ID = "33052119600315271" + check_character("33052119600315271")
MRN = "ZYSECRET4711"
RESULT_VALUE = "4321.987"
SECRETS = (PATIENT_NAME, PATIENT_FAMILY + "^" + PATIENT_GIVEN, RESIDENT_ID, MRN, RESULT_VALUE)


def oru(
    control_id: str,
    *,
    mrn: str = MRN,
    family: str = PATIENT_FAMILY,
    given: str = PATIENT_GIVEN,
    resident_id: str = RESIDENT_ID,
    value: str = RESULT_VALUE,
    order: str | None = None,
) -> bytes:
    """A lab result from the lab centre (XJYZX) about an inpatient of the county hospital."""
    order = order or f"L{control_id}"
    segments = [
        f"MSH|^~\\&|LIS|XJYZX|YGT_HUB|YGT|20261021100000||ORU^R01^ORU_R01|{control_id}|P|2.5.1"
        "|||||||UNICODE UTF-8",
        f"PID|1||{mrn}^^^XRMYY^MR~{resident_id}^^^CHN^NNCHN||{family}^{given}||19600315|M",
        "PV1|1|I|NFM^05^02^XRMYY||||||||||||||||V20261020001^^^XRMYY^VN",
        f"ORC|RE|X{order}^XRMYY|{order}^XJYZX",
        f"OBR|1|X{order}^XRMYY|{order}^XJYZX|CBC^血常规^L|||20261021080000"
        "|||||||||||||||20261021095000|||F",
        f"OBX|1|NM|WBC^白细胞计数^L||{value}|10*9/L^^UCUM|3.5-9.5|H|||F|||20261021080000",
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")
