"""HL7 v2 as the members' systems send it: a township HIS's orders, a centre's results."""

from __future__ import annotations

PATIENT = "PID|1||{mrn}^^^{org}^MR||欧阳^娜娜||19920315|F|||||||||||330521199203150022\r"


def order(
    control_id: str,
    placer: str,
    *,
    test: str = "XCG^血常规^L",
    org: str = "QSWSY",
    mrn: str = "QS9",
    receiving: str = "YGT",
    control: str = "NW",
    structure: str = "ORM^O01^ORM_O01",
    obr20: str = "",
    when: str = "20261022090000",
    priority: str = "R",
    note: str = "空腹采血",
) -> bytes:
    """A township centre's order (ORM^O01 or OML^O21), in UTF-8."""
    return (
        f"MSH|^~\\&|HIS|{org}|YGT_HUB|{receiving}|{when}+0800||{structure}|{control_id}|P|2.5"
        "||||||UNICODE UTF-8\r"
        + PATIENT.format(mrn=mrn, org=org)
        + f"PV1|1|O|全科门诊^^^{org}||||Q2001^陈^芳||||||||||||{org}V{placer}\r"
        f"ORC|{control}|{placer}^{org}|||||^^^^^{priority}||{when}+0800|||Q2001^陈^芳\r"
        f"OBR|1|{placer}^{org}||{test}|||{when}+0800|||||||||Q2001^陈^芳||||{obr20}\r"
        f"NTE|1||{note}\r"
    ).encode()


def result(
    control_id: str,
    placer: str,
    filler: str,
    *,
    org: str = "QSWSY",
    mrn: str = "QS9",
    centre: str = "XJYZX",
    test: str = "CBC^血常规^L",
    value: str = "6.5",
    status: str = "F",
    when: str = "20261022110000",
    namespace: bool = True,
) -> bytes:
    """The centre's ORU^R01 for the order, echoing its placer number (as LIS do; some drop
    the number's namespace: ``namespace`` False)."""
    placed = f"{placer}^{org}" if namespace else placer
    return (
        f"MSH|^~\\&|LIS|{centre}|YGT_HUB|YGT|{when}+0800||ORU^R01^ORU_R01|{control_id}|P|2.5"
        "||||||UNICODE UTF-8\r"
        + PATIENT.format(mrn=mrn, org=org)
        + f"ORC|RE|{placed}|{filler}^{centre}\r"
        f"OBR|1|{placed}|{filler}^{centre}|{test}|||{when}+0800"
        + "|"
        * 15
        + f"{when}+0800|||{status}\r"
        f"OBX|1|NM|WBC^白细胞^L||{value}|10*9/L^10*9/L^UCUM|3.5-9.5|N|||{status}|||{when}+0800\r"
        f"OBX|2|NM|HGB^血红蛋白^L||135|g/L^g/L^UCUM|115-150|N|||{status}|||{when}+0800\r"
    ).encode()
