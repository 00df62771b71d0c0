"""The words of the monthly inpatient feedback (住院信息每月反馈): codes, systems, ids."""

from __future__ import annotations

from hub.services.months import MONTH, check_month

__all__ = ["MONTH", "check_month"]

LOINC = "http://loinc.org"
DISCHARGE_SUMMARY = {"system": LOINC, "code": "18842-5", "display": "Discharge summary"}
BASE = "https://ygt.example.org/fhir"
ADDRESSEE_EXT = f"{BASE}/StructureDefinition/feedback-addressee"
DOCUMENT_SYSTEM = f"{BASE}/sid/feedback-document"  # one value per inpatient stay
BUNDLE_SYSTEM = f"{BASE}/sid/feedback-document-version"  # one value per document version
PACKAGE_SYSTEM = f"{BASE}/sid/feedback-package"
FEEDBACK_CS = f"{BASE}/CodeSystem/feedback"
PACKAGE_CODE = {"system": FEEDBACK_CS, "code": "monthly-package", "display": "住院信息每月反馈包"}
UNADDRESSED_CODE = {"system": FEEDBACK_CS, "code": "unaddressed", "display": "无接收机构的住院"}
CHANGE_FLAG_CS = f"{BASE}/CodeSystem/feedback-change"
CHANGE_DISPLAY = {"new": "新增", "amended": "更正", "unchanged": "无变化", "withdrawn": "撤回"}
PRIMARY_CARE_KINDS = frozenset({"township-centre", "community-centre"})

# Sections, in document order: (key, code, Chinese title).  LOINC document-section codes where
# one exists; discharge disposition has none, so the community's own code is used.
SECTIONS: tuple[tuple[str, dict[str, str], str], ...] = (
    ("admission", {"system": LOINC, "code": "46241-6", "display": "Hospital admission diagnosis"},
     "入院诊断"),
    ("discharge", {"system": LOINC, "code": "11535-2", "display": "Hospital discharge Dx"},
     "出院诊断"),
    ("procedures", {"system": LOINC, "code": "47519-4", "display": "History of Procedures"},
     "手术及操作"),
    ("results", {"system": LOINC, "code": "30954-2",
                 "display": "Relevant diagnostic tests/laboratory data"},
     "住院期间重要检查检验结果"),
    ("disposition", {"system": FEEDBACK_CS, "code": "discharge-disposition",
                     "display": "Discharge disposition"}, "离院方式"),
    ("advice", {"system": LOINC, "code": "8653-8", "display": "Hospital Discharge instructions"},
     "出院医嘱及随访"),
)  # fmt: skip


def composition_id(encounter_id: str) -> str:
    """Stable per stay, so every version of the stay's document is one resource's history."""
    return f"fb-{encounter_id}"[:64]


def package_id(org_id: str, month: str) -> str:
    return f"fbp-{org_id}-{month}"[:64]


def unaddressed_id(month: str) -> str:
    return f"fbu-{month}"
